"""Wires image files, zoo models and the container together (pixels <-> .lic bytes)."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bitstream import album
from bitstream.album import Record, RecordKind
from bitstream.container import Container, FormatError, SectionType, check_geometry, pack, unpack
from models import sga, zoo
from models.hyper_bb import DEFAULT_BBVI_STEPS, BitsBackCodec, BitsBackStream, CodedImage, refine_latents
from models.sga import SgaOptions

from .imageio import ImageData

MODEL_SECTIONS = {"hyperlatent": SectionType.HYPERLATENT, "latent": SectionType.LATENT}


class CodecSession:
    """Loads each model's weights once per process and hands out codecs by zoo name."""

    def __init__(self, weights: dict[str, Path] | None = None, device: str = "cpu", compute: str = "auto"):
        self.weights = weights or {}
        self.device = device
        self.compute = compute
        self._loaded: dict[str, zoo.LoadedCodec] = {}

    def get(self, name: str) -> zoo.LoadedCodec:
        if name not in self._loaded:
            self._loaded[name] = zoo.load_codec(name, self.weights.get(name), self.device, self.compute)
        return self._loaded[name]


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


def rgb_tensor(image: ImageData) -> torch.Tensor:
    """(3, H, W) float tensor in [0, 1]; grey is repeated to RGB, alpha is left out (it is coded separately)."""
    rgb = image.pixels[:, :, :3] if image.channels != 1 else np.repeat(image.pixels, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255)


def _to_pixels(x_hat: torch.Tensor, channels: int) -> np.ndarray:
    pixels = torch.round(x_hat * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    if channels == 1:
        pixels = np.round(pixels.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    return pixels


def encode_image(image: ImageData, loaded: zoo.LoadedCodec, quality: int,
                 refine: SgaOptions | None = None, on_progress=None) -> bytes:
    """quality is the 0-based operating point; refine runs SGA before coding (hyperprior models)."""
    check_geometry(image.width, image.height)
    if isinstance(loaded.codec, BitsBackCodec):
        return encode_bits_back([(None, image)], loaded, quality, refine=refine, on_progress=on_progress)[0]
    tensor = rgb_tensor(image)
    if refine is None:
        coded = loaded.codec.encode(tensor, quality)
    else:
        if not hasattr(loaded.codec, "encode_latents"):
            raise ValueError(f"--refine sga needs a hyperprior model; {loaded.name} is not one")
        result = sga.refine(loaded.codec, tensor, quality, refine, on_progress)
        coded = loaded.codec.encode_latents(result.z_hat, result.residuals, quality)
    sections = {MODEL_SECTIONS[name]: payload for name, payload in coded.items()}
    if image.icc_profile:
        sections[SectionType.ICC] = image.icc_profile
    if image.exif:
        sections[SectionType.EXIF] = image.exif
    if image.channels == 4:
        sections[SectionType.ALPHA] = zlib.compress(image.pixels[:, :, 3].tobytes(), 9)
    container = Container(loaded.name, loaded.weights_hash, quality, image.width, image.height,
                          image.channels, sections)
    return pack(container)


def decode_file(data: bytes, session: CodecSession) -> DecodedFile:
    container = unpack(data)
    loaded = _codec_for(container, session)
    if container.bits_back:
        return _decode_bits_back(container, loaded)
    names = {MODEL_SECTIONS[name]: name for name in loaded.codec.section_names}
    missing = [name for section, name in names.items() if section not in container.sections]
    if missing:
        raise FormatError(f"file lacks its {', '.join(missing)} section")
    coded = {names[s]: payload for s, payload in container.sections.items() if s in names}
    x_hat = loaded.codec.decode(coded, container.height, container.width, container.quality)
    pixels = _to_pixels(x_hat, container.channels)
    if container.channels == 4:
        alpha = _inflate_exactly(container.sections[SectionType.ALPHA], container.width * container.height)
        pixels = np.concatenate([pixels, alpha.reshape(container.height, container.width, 1)], axis=2)
    image = ImageData(np.ascontiguousarray(pixels), container.sections.get(SectionType.ICC),
                      container.sections.get(SectionType.EXIF))
    return DecodedFile([image], container)


def _codec_for(container: Container, session: CodecSession) -> zoo.LoadedCodec:
    try:
        loaded = session.get(container.model_id)
    except KeyError:
        raise FormatError(f"file needs model {container.model_id!r}, which this lic does not have") from None
    if container.weights_hash != loaded.weights_hash:
        raise FormatError(f"file was made with {container.model_id} weights {container.weights_hash.hex()}, "
                          f"installed weights are {loaded.weights_hash.hex()} ({loaded.path}); "
                          f"pass --weights {container.model_id}=FILE (docs/models.md lists every shipped weight file)")
    if container.bits_back != isinstance(loaded.codec, BitsBackCodec):
        raise FormatError(f"file layout does not match model {container.model_id}")
    if container.quality >= loaded.codec.num_qualities:
        raise FormatError(f"quality index {container.quality} is not an operating point of {container.model_id}")
    return loaded


# ---------------------------------------------------------------------------------------------
# Bits-back files: metadata, names, comment and side information ride inside the hyperlatents.
# ---------------------------------------------------------------------------------------------
def encode_bits_back(items: list[tuple[str | None, ImageData]], loaded: zoo.LoadedCodec, quality: int,
                     comment: str | None = None, side_info: bytes | None = None,
                     bbvi_steps: int = DEFAULT_BBVI_STEPS, refine: SgaOptions | None = None,
                     on_progress=None) -> tuple[bytes, BitsBackStream]:
    """Code one image or an album into one bits-back file. items: (source name or None, image)."""
    bb: BitsBackCodec = loaded.codec
    if not 1 <= len(items) <= album.MAX_IMAGES:
        raise ValueError(f"a bits-back file holds 1..{album.MAX_IMAGES} images, not {len(items)}")
    if not 0 <= bbvi_steps <= album.MAX_BBVI_STEPS:
        raise ValueError(f"BBVI steps must be within 0..{album.MAX_BBVI_STEPS}")
    records: list[Record] = []
    latents = []
    for index, (name, image) in enumerate(items):
        check_geometry(image.width, image.height)
        records += _image_records(index, name, image)
        tensor = rgb_tensor(image)
        if refine is None:
            y_hat = bb.amortized_latents(tensor, quality)
        else:
            y_hat = refine_latents(bb, tensor, quality, refine, on_progress)
        latents.append((y_hat, quality, image.height, image.width))
    if comment:
        records.append(Record(RecordKind.COMMENT, album.WHOLE_FILE, comment.encode("utf-8")))
    if side_info:
        records.append(Record(RecordKind.SIDE_INFO, album.WHOLE_FILE, side_info))
    carried = album.pack_records(records)
    stream = bb.encode_stream(latents, carried, bbvi_steps)
    entries = [album.AlbumEntry(image.width, image.height, image.channels, coded.quality, coded.bbvi_steps,
                                coded.checksum) for (_, image), coded in zip(items, stream.images, strict=True)]
    table = album.AlbumTable(entries, stream.carried_bytes, stream.padding_words)
    first = items[0][1]
    container = Container(loaded.name, loaded.weights_hash, quality, first.width, first.height, first.channels,
                          {SectionType.BITSBACK: stream.data, SectionType.ALBUM: album.pack_table(table)})
    return pack(container), stream


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


def _decode_bits_back(container: Container, loaded: zoo.LoadedCodec) -> DecodedFile:
    stream = container.sections[SectionType.BITSBACK]
    table = album.unpack_table(container.sections[SectionType.ALBUM], len(stream))
    first = table.entries[0]
    if (first.width, first.height, first.channels, first.quality) != \
            (container.width, container.height, container.channels, container.quality):
        raise FormatError("header geometry disagrees with the album's first image")
    bb: BitsBackCodec = loaded.codec
    for entry in table.entries:
        if entry.quality >= bb.num_qualities:
            raise FormatError(f"quality index {entry.quality} is not an operating point of {container.model_id}")
    coded = [CodedImage(e.height, e.width, e.quality, e.bbvi_steps, e.checksum) for e in table.entries]
    latents, carried = bb.decode_stream(stream, coded, table.carried_bytes, table.padding_words)
    records = album.unpack_records(carried, len(table.entries))
    per_image = [{} for _ in table.entries]
    whole: dict[RecordKind, bytes] = {}
    for record in records:
        target = whole if record.image == album.WHOLE_FILE else per_image[record.image]
        if record.kind in target:
            raise FormatError(f"duplicate carried {record.kind.name.lower()} record")
        target[record.kind] = record.data
    images, names = [], []
    for entry, y_hat, extra in zip(table.entries, latents, per_image, strict=True):
        pixels = _to_pixels(bb.reconstruct(y_hat, entry.quality, entry.height, entry.width), entry.channels)
        if entry.channels == 4:
            if RecordKind.ALPHA not in extra:
                raise FormatError("RGBA image without its carried alpha plane")
            alpha = _inflate_exactly(extra[RecordKind.ALPHA], entry.width * entry.height)
            pixels = np.concatenate([pixels, alpha.reshape(entry.height, entry.width, 1)], axis=2)
        comment = whole.get(RecordKind.COMMENT)
        images.append(ImageData(np.ascontiguousarray(pixels), extra.get(RecordKind.ICC), extra.get(RecordKind.EXIF),
                                comment=comment.decode("utf-8", "replace") if comment else None))
        names.append(extra[RecordKind.NAME].decode("utf-8", "replace") if RecordKind.NAME in extra else None)
    comment = whole.get(RecordKind.COMMENT)
    return DecodedFile(images, container, names, whole.get(RecordKind.SIDE_INFO),
                       comment.decode("utf-8", "replace") if comment else None)


def _inflate_exactly(payload: bytes, size: int) -> np.ndarray:
    inflater = zlib.decompressobj()
    try:
        plane = inflater.decompress(payload, size + 1)
    except zlib.error:
        raise FormatError("alpha section is not valid zlib data") from None
    if len(plane) != size or not inflater.eof or inflater.unconsumed_tail:
        raise FormatError("alpha section does not hold exactly one alpha plane")
    return np.frombuffer(plane, dtype=np.uint8)
