"""Wires image files, zoo models and the container together (pixels <-> .lic bytes)."""
from __future__ import annotations

import importlib.util
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bitstream import album
from bitstream.album import Record, RecordKind
from bitstream.container import (
    CODED_SECTIONS,
    MAX_PIXELS,
    QUALITY_STEPS,
    Container,
    FormatError,
    SectionType,
    check_geometry,
    pack,
    section_type,
    unpack,
)
from models.interface import PLAIN, AlbumImage, EncodedAlbum, EncodeOptions, Geometry, LoadedCodec

from .imageio import ImageData
from .limits import check_declared_size

if TYPE_CHECKING:
    import torch


ENGINES = ("auto", "onnx", "torch")
# Above this many pixels `--engine auto` decodes with torch where it is installed: one Kodak photo
# (0.4 MP) decodes faster without it (no import), a 2.9 MP one already faster with it, and an 8 MP
# one in 0.6x of the runtime's time (docs/results.md, "Speed: whole commands").
AUTO_TORCH_PIXELS = 2_000_000


class CodecSession:
    """Loads each model's weights once per process and hands out codecs by zoo name; for a file
    that names other weights, the kept decoder of a replaced weight file (models/weights/archive/).

    Decoding prefers the torch-free runtime (models/runtime: numpy and ONNX Runtime) where the
    file's model has one and nothing asks otherwise (engine "torch", a device or precision other
    than CPU fp32, a --weights file its graphs do not take); torch is imported only when a codec needs it,
    after load_torch() (the CLI's one-line error where torch cannot work)."""

    def __init__(self, weights: dict[str, Path] | None = None, device: str = "cpu", compute: str = "auto",
                 engine: str = "auto", threads: int | None = None, load_torch=None):
        self.weights = weights or {}
        self.device = device
        self.compute = compute
        self.engine = engine
        self.threads = threads
        self.load_torch = load_torch
        self._loaded: dict[str, LoadedCodec] = {}
        self._archived: dict[tuple[str, bytes], LoadedCodec | None] = {}

    def get(self, name: str) -> LoadedCodec:
        if name not in self._loaded:
            if self.load_torch is not None:
                self.load_torch()
            from models import zoo

            self._loaded[name] = zoo.load_codec(name, self.weights.get(name), self.device, self.compute)
        return self._loaded[name]

    def encoder(self, name: str) -> LoadedCodec:
        """The codec for a plain encode (no refinement, no rate control): the torch-free one where
        it applies (see the class docstring), else the torch one."""
        if self.may_use_runtime(name):
            from models.runtime import registry

            runtime = registry.encoder_for(name, self.threads, self.weights.get(name))
            if runtime is not None:
                return runtime
        return self.get(name)

    def runtime_decoder(self, name: str, weights_id: bytes) -> LoadedCodec | None:
        """The torch-free decoder of these weights, where it applies (see the class docstring)."""
        if not self.may_use_runtime(name):
            return None
        from models.runtime import registry

        return registry.decoder_for(name, weights_id, self.threads, self.weights.get(name))

    def may_use_runtime(self, name: str) -> bool:
        """Nothing asks for torch: not the engine, the device or a bf16 precision (the runtime
        computes in fp32 on the CPU). A --weights file is coded there too where the model's graphs
        take its tensors (imported models' graphs take any width)."""
        return self.engine != "torch" and self.device in ("cpu", "auto") and self.compute != "bf16"

    def decoder_for(self, name: str, weights_id: bytes, pixels: int = 0) -> LoadedCodec | None:
        """The codec that decodes files naming these weights: the torch-free one where it applies,
        the installed (or --weights) one, or a kept one; None if this lic has neither. pixels: the
        image's size; with engine "auto", an image over AUTO_TORCH_PIXELS goes to torch where it is
        installed (it decodes large images faster)."""
        large = self.engine == "auto" and pixels > AUTO_TORCH_PIXELS and importlib.util.find_spec("torch") is not None
        runtime = None if large else self.runtime_decoder(name, weights_id)
        if runtime is not None:
            return runtime
        loaded = self.get(name)
        if loaded.decodes(weights_id):
            return loaded
        key = (name, weights_id)
        if key not in self._archived:
            from models import zoo

            self._archived[key] = zoo.load_archived_codec(name, weights_id, self.device, self.compute)
        return self._archived[key]


@dataclass
class DecodedFile:
    images: list[ImageData]  # one, or every image of a bits-back album in order
    container: Container
    names: list[str | None] = field(default_factory=list)  # source file stems carried by a bits-back file
    side_info: bytes | None = None
    comment: str | None = None

    @property
    def image(self) -> ImageData:
        return self.images[0]


def rgb_array(image: ImageData) -> np.ndarray:
    """(3, H, W) uint8 array, what codecs take; grey is repeated to RGB, alpha is left out (it is
    coded separately)."""
    rgb = image.pixels[:, :, :3] if image.channels != 1 else np.repeat(image.pixels, 3, axis=2)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def rgb_tensor(image: ImageData) -> torch.Tensor:
    """rgb_array as a torch tensor (what torch codecs take)."""
    import torch

    return torch.from_numpy(rgb_array(image))


def to_pixels(x_hat, channels: int) -> np.ndarray:
    """(H, W, channels) uint8 pixels of a (3, H, W) reconstruction (a torch tensor or, from the
    torch-free runtime, a numpy array), uint8 or in [0, 1] (grey: the mean of RGB)."""
    if isinstance(x_hat, np.ndarray):
        pixels = x_hat.transpose(1, 2, 0)
    else:
        from models.core.geometry import to_uint8

        pixels = (x_hat if str(x_hat.dtype) == "torch.uint8" else to_uint8(x_hat)).permute(1, 2, 0).numpy()
    if channels == 1:
        pixels = np.round(pixels.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    return pixels


def encode_image(image: ImageData, loaded: LoadedCodec, quality: float, options: EncodeOptions = PLAIN) -> bytes:
    """One image into one .lic file; quality is the 0-based operating point (a fraction between two
    for a model with continuous qualities)."""
    if loaded.codec.capabilities.carries_data:
        return encode_album([(None, image)], loaded, quality, options=options)[0]
    check_size(image, loaded)
    check_can_encode(loaded)
    pixels = rgb_array(image) if loaded.codec.capabilities.arrays else rgb_tensor(image)
    return pack_image(image, loaded, quality, loaded.codec.encode(pixels, quality, options))


def pack_image(image: ImageData, loaded: LoadedCodec, quality: float, coded: dict[str, bytes]) -> bytes:
    """The .lic file of an image's coded sections: with its quality, ICC profile, EXIF and alpha."""
    sections = {section_type(name): payload for name, payload in coded.items()}
    steps = round(quality * QUALITY_STEPS)
    if steps % QUALITY_STEPS:
        sections[SectionType.QUALITY_STEP] = bytes([steps % QUALITY_STEPS])
    if image.icc_profile:
        sections[SectionType.ICC] = image.icc_profile
    if image.exif:
        sections[SectionType.EXIF] = image.exif
    if image.channels == 4:
        sections[SectionType.ALPHA] = zlib.compress(image.pixels[:, :, 3].tobytes(), 9)
    container = Container(loaded.name, loaded.weights_id, steps // QUALITY_STEPS, image.width, image.height,
                          image.channels, sections)
    return pack(container)


def check_can_encode(loaded: LoadedCodec) -> None:
    if loaded.decoder_only:
        raise ValueError(f"{loaded.path} holds only the decoder of {loaded.name}: it decodes old files and encodes "
                         "nothing")


def check_size(image: ImageData, loaded: LoadedCodec) -> None:
    """The container's limits, and the model's where it codes less."""
    check_geometry(image.width, image.height)
    limit = loaded.codec.capabilities.max_pixels
    if limit is not None and image.width * image.height > limit:
        raise ValueError(f"image of {image.width}x{image.height} = {image.width * image.height} pixels is larger than "
                         f"model {loaded.name} codes ({limit} pixels)")


def decode_file(data: bytes, session: CodecSession, max_pixels: int = MAX_PIXELS,
                levels: int | None = None) -> DecodedFile:
    """Decode a .lic file; images it declares over max_pixels are refused before any model runs."""
    container = unpack(data)
    check_declared_size(container, max_pixels)
    return decode_container(container, session, levels)


def decode_container(container: Container, session: CodecSession, levels: int | None = None) -> DecodedFile:
    """Decode a parsed file whose declared sizes the caller has checked (decode_file does both).

    levels: for a progressive model, decode only its first `levels` coded sections (a preview)."""
    loaded = _codec_for(container, session)
    coded = coded_sections(container, loaded)
    if levels is not None:
        coded = section_prefix(coded, loaded, levels)
    if loaded.codec.capabilities.carries_data:
        return _decode_album(container, loaded, coded)
    x_hat = loaded.codec.decode(coded, Geometry(container.height, container.width), container.quality_value)
    pixels = to_pixels(x_hat, container.channels)
    if container.channels == 4:
        alpha = _inflate_exactly(container.sections[SectionType.ALPHA], container.width * container.height)
        pixels = np.concatenate([pixels, alpha.reshape(container.height, container.width, 1)], axis=2)
    image = ImageData(np.ascontiguousarray(pixels), container.sections.get(SectionType.ICC),
                      container.sections.get(SectionType.EXIF))
    return DecodedFile([image], container)


def decode_symbols(data: bytes, session: CodecSession) -> list[np.ndarray]:
    """The entropy-decoded integers of a file (no pixels): what every machine must agree on."""
    container = unpack(data)
    loaded = _codec_for(container, session)
    return loaded.codec.decode_symbols(coded_sections(container, loaded), Geometry(container.height, container.width),
                                       container.quality_value)


def _codec_for(container: Container, session: CodecSession) -> LoadedCodec:
    try:
        loaded = session.decoder_for(container.model_id, container.weights_id, container.width * container.height)
    except KeyError:
        raise FormatError(f"file needs model {container.model_id!r}, which this lic does not have") from None
    if loaded is None:
        installed = session.get(container.model_id)
        raise FormatError(f"file was made with {container.model_id} weights {container.weights_id.hex()}, which "
                          f"this lic does not have (installed: {installed.weights_id.hex()}, {installed.path}); "
                          f"pass --weights {container.model_id}=FILE")
    limit = loaded.codec.capabilities.max_pixels
    if limit is not None:
        check_declared_size(container, limit, f"model {container.model_id} codes at most")
    try:
        loaded.codec.qualities.check(container.quality_value)
    except ValueError:
        raise FormatError(f"quality index {container.quality_value:g} is not an operating point of "
                          f"{container.model_id}") from None
    return loaded


def coded_sections(container: Container, loaded: LoadedCodec) -> dict[str, bytes]:
    """The model's sections of a file by name: every one it always writes must be there, and no other
    than those and its optional ones."""
    expected = {section_type(name): name for name in loaded.codec.section_names}
    optional = {section_type(name): name for name in loaded.codec.optional_sections}
    present = {kind for kind in container.sections if kind in CODED_SECTIONS.values()}
    if present - expected.keys() - optional.keys():
        raise FormatError(f"file layout does not match model {container.model_id}")
    missing = [name for kind, name in expected.items() if kind not in present]
    if missing:
        raise FormatError(f"file lacks its {', '.join(missing)} section")
    return {name: container.sections[kind] for kind, name in {**expected, **optional}.items() if kind in present}


def section_prefix(coded: dict[str, bytes], loaded: LoadedCodec, levels: int) -> dict[str, bytes]:
    """The first `levels` of a progressive codec's sections (in its declared order)."""
    names = loaded.codec.section_names
    if not loaded.codec.capabilities.progressive:
        raise ValueError(f"--levels: model {loaded.name} is not progressive (its file decodes only whole)")
    if not 1 <= levels <= len(names):
        raise ValueError(f"--levels {levels}: model {loaded.name} has levels 1-{len(names)}")
    return {name: coded[name] for name in names[:levels]}


# ---------------------------------------------------------------------------------------------
# Albums (codecs that carry data): metadata, names, comment and side information ride inside the
# coded stream, and several images can share one file.
# ---------------------------------------------------------------------------------------------
def encode_album(items: list[tuple[str | None, ImageData]], loaded: LoadedCodec, quality: int,
                 comment: str | None = None, side_info: bytes | None = None,
                 options: EncodeOptions = PLAIN) -> tuple[bytes, EncodedAlbum]:
    """One image or an album into one file of a data-carrying codec. items: (source name or None, image)."""
    if not loaded.codec.capabilities.carries_data:
        raise ValueError(f"model {loaded.name} cannot carry data or albums")
    check_can_encode(loaded)
    records: list[Record] = []
    for index, (name, image) in enumerate(items):
        check_size(image, loaded)
        records += _image_records(index, name, image)
    if comment:
        records.append(Record(RecordKind.COMMENT, album.WHOLE_FILE, comment.encode("utf-8")))
    if side_info:
        records.append(Record(RecordKind.SIDE_INFO, album.WHOLE_FILE, side_info))
    images = [AlbumImage(rgb_tensor(image), quality, image.channels) for _, image in items]
    coded = loaded.codec.encode_album(images, album.pack_records(records), options)
    first = items[0][1]
    sections = {section_type(name): payload for name, payload in coded.sections.items()}
    container = Container(loaded.name, loaded.weights_id, quality, first.width, first.height, first.channels,
                          sections)
    return pack(container), coded


def _image_records(index: int, name: str | None, image: ImageData) -> list[Record]:
    records = []
    if name:
        records.append(Record(RecordKind.NAME, index, name.encode("utf-8")[:255]))
    if image.icc_profile:
        records.append(Record(RecordKind.ICC, index, image.icc_profile))
    if image.exif:
        records.append(Record(RecordKind.EXIF, index, image.exif))
    if image.channels == 4:
        records.append(Record(RecordKind.ALPHA, index, zlib.compress(image.pixels[:, :, 3].tobytes(), 9)))
    return records


def _decode_album(container: Container, loaded: LoadedCodec, coded: dict[str, bytes]) -> DecodedFile:
    decoded, carried = loaded.codec.decode_album(coded)
    first = decoded[0]
    if (first.pixels.shape[2], first.pixels.shape[1], first.channels, first.quality) != \
            (container.width, container.height, container.channels, container.quality):
        raise FormatError("header geometry disagrees with the album's first image")
    per_image, whole = _carried_records(carried, len(decoded))
    comment = whole.get(RecordKind.COMMENT)
    comment_text = comment.decode("utf-8", "replace") if comment else None
    images, names = [], []
    for item, extra in zip(decoded, per_image, strict=True):
        height, width = item.pixels.shape[1:]
        pixels = to_pixels(item.pixels, item.channels)
        if item.channels == 4:
            if RecordKind.ALPHA not in extra:
                raise FormatError("RGBA image without its carried alpha plane")
            alpha = _inflate_exactly(extra[RecordKind.ALPHA], width * height)
            pixels = np.concatenate([pixels, alpha.reshape(height, width, 1)], axis=2)
        images.append(ImageData(np.ascontiguousarray(pixels), extra.get(RecordKind.ICC), extra.get(RecordKind.EXIF),
                                comment=comment_text))
        names.append(extra[RecordKind.NAME].decode("utf-8", "replace") if RecordKind.NAME in extra else None)
    return DecodedFile(images, container, names, whole.get(RecordKind.SIDE_INFO), comment_text)


def _carried_records(carried: bytes, image_count: int) -> tuple[list[dict[RecordKind, bytes]], dict[RecordKind, bytes]]:
    """The carried records by image, and those of the whole file."""
    per_image: list[dict[RecordKind, bytes]] = [{} for _ in range(image_count)]
    whole: dict[RecordKind, bytes] = {}
    for record in album.unpack_records(carried, image_count):
        target = whole if record.image == album.WHOLE_FILE else per_image[record.image]
        if record.kind in target:
            raise FormatError(f"duplicate carried {record.kind.name.lower()} record")
        target[record.kind] = record.data
    return per_image, whole


def _inflate_exactly(payload: bytes, size: int) -> np.ndarray:
    inflater = zlib.decompressobj()
    try:
        plane = inflater.decompress(payload, size + 1)
    except zlib.error:
        raise FormatError("alpha section is not valid zlib data") from None
    if len(plane) != size or not inflater.eof or inflater.unconsumed_tail:
        raise FormatError("alpha section does not hold exactly one alpha plane")
    return np.frombuffer(plane, dtype=np.uint8)
