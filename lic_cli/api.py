"""lic from Python: the codec behind `lic encode` and `lic decode`, for scripts and services.

    from PIL import Image
    import lic_cli

    data = lic_cli.encode(Image.open("photo.png"), quality=4)   # the bytes of a .lic file
    picture = lic_cli.decode(data)                               # a PIL.Image.Image
    lic_cli.info(data)                                           # header fields, as `lic info --json`

    lic_cli.register_lic_opener()                                # then Pillow reads and writes .lic:
    Image.open("photo.lic").save("photo.png")
    picture.save("copy.lic", quality=4, model="hyper")

Models load once per process (per weight file, device and precision) and are shared by threads.
Errors are ValueErrors with a one-line message: bitstream.container.FormatError for a damaged,
foreign or oversized .lic file, lic_cli.imageio.ImageReadError for an image lic cannot code.
Importing this module does not load torch; the first encode or decode does.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from bitstream.album import unpack_table
from bitstream.container import MAX_PIXELS, QUALITY_STEPS, Container, SectionType, quality_of_steps, unpack
from models.defaults import AUTO_MODEL, DEFAULT_MODEL
from models.interface import EncodeOptions

from .imageio import ImageData, ImageReadError, image_data, mask_pixels, pil_image, read_image
from .limits import check_declared_size

ImageInput = Image.Image | np.ndarray | bytes | str | os.PathLike

_sessions: dict[tuple, object] = {}
_sessions_lock = threading.Lock()


def encode(image: ImageInput, model: str | None = None, quality: float | None = None, *,
           target_size: int | None = None, target_bpp: float | None = None, target_psnr: float | None = None,
           target_ms_ssim: float | None = None, weights: str | os.PathLike | None = None, device: str = "cpu",
           precision: str = "auto", preserve: ImageInput | None = None) -> bytes:
    """Compress one image into the bytes of a .lic file.

    image: a PIL image, a uint8 array (H, W) or (H, W, C) with C in 1, 3, 4, the bytes of an image
    file, or its path. Grey and RGBA stay so; a PIL image's ICC profile and EXIF are carried.
    model: a zoo name (`lic models`); None: the model of `weights` if given, else lic's default;
    "auto": per image, the cheaper file of the default model and its variants (`lic encode --model auto`).
    quality: the operating point, 1 (smallest files) .. N as in `lic models` (any value between for
    models with continuous qualities); None: the model's default. target_*: rate control instead
    of a quality, as `lic encode --target-*` (bytes at most, bits per pixel at most, PSNR or MS-SSIM
    at least); rate_control.TargetError where no quality meets it. weights: a weight file to use
    instead of the shipped one. preserve: for models with selective generation (`lic encode
    --preserve`), a mask in any form `image` takes, any size: white (nonzero) is kept, black may be
    synthesised.
    """
    from . import codec, rate_control

    targets = [rate_control.Target(kind, value) for kind, value in (
        ("size", target_size), ("bpp", target_bpp), ("psnr", target_psnr), ("ms-ssim", target_ms_ssim))
        if value is not None]
    if len(targets) > 1 or (targets and quality is not None):
        raise ValueError("give a quality or one target_*, not several")
    if model is None:
        from models import zoo
        model = zoo.weight_file_model(Path(weights)) if weights is not None else DEFAULT_MODEL
    pixels = _image_data(image)
    if model == AUTO_MODEL:
        return _encode_auto(pixels, quality, targets, weights, device, precision, preserve)
    session = _session(device, precision, model, weights)
    loaded = session.get(model)
    if targets:
        if preserve is not None:
            raise ValueError("preserve and target_* cannot be combined")
        return rate_control.encode_to_target(pixels, loaded, targets[0], session).data
    options = EncodeOptions(preserve=None if preserve is None else _mask(preserve, pixels.width, pixels.height))
    return codec.encode_image(pixels, loaded, quality_index(loaded.codec.qualities, quality, model), options)


def _encode_auto(pixels, quality, targets, weights, device: str, precision: str, preserve) -> bytes:
    from . import model_choice

    if weights is not None or preserve is not None:
        raise ValueError("model='auto' chooses among the shipped models; not with weights or preserve")
    session = _session(device, precision, "auto", None)
    choices = model_choice.candidates(session)
    if targets:
        return model_choice.encode_to_target_cheapest(pixels, choices, targets[0], session)[0].data
    index = quality_index(choices[0].codec.qualities, quality, choices[0].name)
    return model_choice.encode_cheapest(pixels, choices, index, session).data


def decode(data: bytes, *, weights: dict[str, str | os.PathLike] | None = None, device: str = "cpu",
           precision: str = "auto", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image of a .lic file as a PIL image (mode L, RGB or RGBA; ICC profile, EXIF and comment
    in its info). A file that holds several images (an album) is refused: use decode_all."""
    images = decode_all(data, weights=weights, device=device, precision=precision, max_pixels=max_pixels)
    if len(images) > 1:
        raise ValueError(f"holds {len(images)} images (an album): use decode_all")
    return images[0]


def decode_all(data: bytes, *, weights: dict[str, str | os.PathLike] | None = None, device: str = "cpu",
               precision: str = "auto", max_pixels: int = MAX_PIXELS) -> list[Image.Image]:
    """Every image of a .lic file, in order, as PIL images."""
    return [pil_image(image) for image in decode_pixels(data, weights, device, precision, max_pixels)]


def decode_pixels(data: bytes, weights: dict[str, str | os.PathLike] | None = None, device: str = "cpu",
                  precision: str = "auto", max_pixels: int = MAX_PIXELS) -> list[ImageData]:
    """decode_all's images as ImageData (pixels and metadata); the header is checked before torch loads."""
    container = unpack(bytes(data))
    check_declared_size(container, max_pixels)
    from . import codec

    session = _session(device, precision, container.model_id, None, weights)
    return codec.decode_container(container, session).images


def info(data: bytes) -> dict:
    """The header of a .lic file (model, weights, quality, geometry, sections, bit rate; an album's
    images), without decoding it: the fields of `lic info --json`."""
    return header_record(unpack(bytes(data)), len(data))


def header_record(container: Container, size: int) -> dict:
    record = {
        "bytes": size, "model": container.model_id, "weights": container.weights_id.hex(),
        "quality": container.quality_value + 1, "width": container.width, "height": container.height,
        "channels": container.channels, "bit_depth": container.bit_depth,
        "bpp": 8 * size / (container.width * container.height),
        "sections": {kind.name.lower(): len(payload) for kind, payload in sorted(container.sections.items())},
        "format_version": container.version,
    }
    if container.bits_back:
        table = unpack_table(container.sections[SectionType.ALBUM], len(container.sections[SectionType.BITSBACK]))
        record["images"] = [{"width": e.width, "height": e.height, "channels": e.channels, "quality": e.quality + 1,
                             "bbvi_steps": e.bbvi_steps} for e in table.entries]
        record["bpp"] = 8 * size / sum(e.width * e.height for e in table.entries)
        record["carried_bytes"] = table.carried_bytes
        record["padding_bytes"] = 4 * table.padding_words
    return record


def _image_data(image: ImageInput) -> ImageData:
    if isinstance(image, Image.Image):
        image.load()
        return image_data(image)
    if isinstance(image, np.ndarray):
        return _array_data(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return read_image(bytes(image))
    if isinstance(image, (str, os.PathLike)):
        return read_image(Path(image).read_bytes())
    raise TypeError(f"cannot encode a {type(image).__name__}: pass a PIL image, a uint8 array, image bytes or a path")


def _mask(preserve: ImageInput, width: int, height: int) -> np.ndarray:
    """A preservation mask in any form _image_data takes (a bool array too), at the image's size."""
    if isinstance(preserve, np.ndarray) and preserve.dtype == bool:
        preserve = preserve.astype(np.uint8) * 255
    return mask_pixels(_image_data(preserve), width, height)


def _array_data(array: np.ndarray) -> ImageData:
    pixels = array[:, :, None] if array.ndim == 2 else array
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise ImageReadError(f"an array of {array.dtype} {array.shape} is not an image: lic codes uint8 arrays "
                             "(H, W) or (H, W, C) with C = 1, 3 or 4")
    return ImageData(np.ascontiguousarray(pixels))


def quality_index(qualities, quality: float | None, model: str) -> int | float:
    """The 0-based operating point of a 1-based quality (None: the model's default); for a model
    with continuous qualities, a value between two is rounded to the nearest 1/256."""
    if quality is None:
        return qualities.default
    if qualities.count == 1 and quality != 1:
        raise ValueError(f"model {model} has a single operating point (1)")
    if not 1 <= quality <= qualities.count:
        raise ValueError(f"must be between 1 and {qualities.count} for model {model}")
    if float(quality).is_integer():
        return int(quality) - 1
    if not qualities.continuous:
        raise ValueError(f"model {model} has the operating points 1..{qualities.count} only (whole numbers)")
    return quality_of_steps(round((quality - 1) * QUALITY_STEPS))


def _session(device: str, precision: str, model: str, weights: str | os.PathLike | None,
             mapping: dict[str, str | os.PathLike] | None = None):
    """One CodecSession per device, precision and choice of weight files, kept for the process."""
    from .codec import CodecSession

    files = {name: Path(path) for name, path in (mapping or {}).items()}
    if weights is not None:
        files[model] = Path(weights)
    key = (device, precision, tuple(sorted((name, str(path)) for name, path in files.items())))
    with _sessions_lock:
        if key not in _sessions:
            _sessions[key] = CodecSession(files, device, precision)
        return _sessions[key]

