"""Pillow reads and writes .lic files, in the style of pillow-heif's register_heif_opener():

    from PIL import Image
    import lic_cli

    lic_cli.register_lic_opener()
    with Image.open("photo.lic") as picture:        # recognised by its magic bytes, whatever its name
        picture.save("photo.png")
    Image.open("photo.png").save("photo.lic", quality=4, model="hyper")   # or format="LIC"

Opening reads the header only (size, mode, model and quality in `info`); the pixels are decoded
on first access. A file that is not a valid .lic raises Pillow's usual UnidentifiedImageError
from Image.open; one whose header is valid but whose coded data is damaged raises OSError when
its pixels load. Save options: quality (1..N, default the model's), model, weights.
register_lic_opener(weights={"hyper": "my-hyper.pt"}) decodes and encodes with other weight files.
"""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageFile

from bitstream.container import MAGIC, MAX_PIXELS, FormatError, unpack

from . import api
from .imageio import MODES, pil_image
from .limits import check_declared_size

FORMAT = "LIC"
SAVE_OPTIONS = ("quality", "model", "weights", "preserve")
DEFAULT_SETTINGS = {"weights": {}, "device": "cpu", "precision": "auto"}
_settings = dict(DEFAULT_SETTINGS)


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class LicImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "lic learned image codec"

    def _open(self) -> None:
        data = self.fp.read()
        try:
            container = unpack(data)
            check_declared_size(container, MAX_PIXELS)
        except FormatError as error:
            raise SyntaxError(f"not a valid .lic file: {error}") from None
        self._lic_data = data
        self._size = (container.width, container.height)
        self._set_mode(MODES[container.channels])
        self.info.update(lic_model=container.model_id, lic_quality=container.quality_value + 1)
        self.tile = []  # no Pillow decoder: load() decodes the whole file

    def _set_mode(self, mode: str) -> None:
        if isinstance(getattr(type(self), "mode", None), property):  # Pillow >= 10.1
            self._mode = mode
        else:
            self.mode = mode

    def load(self):
        data = getattr(self, "_lic_data", None)
        if data is not None:
            try:
                decoded = api.decode_pixels(data, _settings["weights"], _settings["device"],
                                            _settings["precision"])[0]
            except (FormatError, ValueError) as error:
                raise OSError(f"cannot decode .lic file: {error}") from None
            picture = pil_image(decoded)
            self.load_prepare()
            self.frombytes(picture.tobytes())
            self.info.update(picture.info)
            self._lic_data = None
        return super().load()


def _save(image: Image.Image, fp, filename) -> None:
    options = {key: image.encoderinfo[key] for key in SAVE_OPTIONS if image.encoderinfo.get(key) is not None}
    model = options.setdefault("model", api.DEFAULT_MODEL if "weights" not in options else None)
    if "weights" not in options and model in _settings["weights"]:
        options["weights"] = _settings["weights"][model]
    fp.write(api.encode(image, device=_settings["device"], precision=_settings["precision"], **options))


def register_lic_opener(weights: dict[str, str | os.PathLike] | None = None, device: str = "cpu",
                        precision: str = "auto") -> None:
    """Teach Pillow the .lic format: Image.open reads it, Image.save writes it. weights: model name ->
    weight file, for files made with other weights than the shipped ones; device, precision: as
    lic's --device and --precision."""
    _settings.update(weights={name: Path(path) for name, path in (weights or {}).items()}, device=device,
                     precision=precision)
    Image.register_open(FORMAT, LicImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".lic")
    Image.register_mime(FORMAT, "image/x-lic")
