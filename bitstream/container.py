"""The versioned .lic container (specified in docs/format.md)."""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

MAGIC = b"\x89LIC\r\n\x1a\n"
FORMAT_VERSION = 5  # written only when a file needs it; plain files stay version 1
READABLE_VERSIONS = (1, 2, 3, 4, 5)
MAX_FILE_BYTES = 1 << 30
MAX_DIMENSION = 65535
MAX_PIXELS = 1 << 25
MAX_SECTIONS = 16
MAX_MODEL_ID = 32
WEIGHTS_ID_BYTES = 8
FLAG_ALPHA = 0x01
KNOWN_FLAGS = FLAG_ALPHA
MODEL_ID_PATTERN = re.compile(rb"[a-z0-9.\-]{1,32}")
_GEOMETRY = struct.Struct("<BIIBBB")  # quality, width, height, channels, bit depth, section count
_SECTION_HEADER = struct.Struct("<BI")
MIN_FILE_BYTES = len(MAGIC) + 3 + 1 + WEIGHTS_ID_BYTES + _GEOMETRY.size + 4


class FormatError(ValueError):
    """The bytes are not a valid .lic file this reader can decode; the message is one line."""


class SectionType(IntEnum):
    HYPERLATENT = 1
    LATENT = 2
    ICC = 3
    EXIF = 4
    ALPHA = 5
    BITSBACK = 6  # version 2: one ANS stack holding every image of the file and the carried data
    ALBUM = 7  # version 2: the image table of a bits-back stream
    DETAIL1 = 8  # version 3: the first refinement level of a progressive model (may be empty)
    DETAIL2 = 9  # version 3: the second refinement level (may be empty; needs DETAIL1)
    QUALITY_STEP = 10  # version 4: one byte k in 1..255, the quality is the header's index + k / 256
    PRESERVE = 11  # version 5: the coded map of the latents a selective model codes (the rest is synthesised)


# The sections a model's codec writes, by the names codecs use for them (models/interface.py).
CODED_SECTIONS = {"hyperlatent": SectionType.HYPERLATENT, "latent": SectionType.LATENT,
                  "bitsback": SectionType.BITSBACK, "album": SectionType.ALBUM,
                  "detail1": SectionType.DETAIL1, "detail2": SectionType.DETAIL2, "preserve": SectionType.PRESERVE}
BITS_BACK_SECTIONS = {SectionType.BITSBACK, SectionType.ALBUM}
# A progressive model's refinement levels: an empty one means "every latent of it is predicted".
DETAIL_SECTIONS = {SectionType.DETAIL1, SectionType.DETAIL2}
# The lowest format version that holds each section type (types not listed: version 1).
SECTION_VERSIONS = {SectionType.BITSBACK: 2, SectionType.ALBUM: 2, SectionType.DETAIL1: 3, SectionType.DETAIL2: 3,
                    SectionType.QUALITY_STEP: 4, SectionType.PRESERVE: 5}
RAW_SECTIONS = {SectionType.HYPERLATENT, SectionType.LATENT, SectionType.ICC, SectionType.EXIF, SectionType.ALPHA,
                SectionType.QUALITY_STEP, SectionType.PRESERVE}
QUALITY_STEPS = 256  # a continuous quality lies on a grid of 1/256 between operating points


def quality_of_steps(steps: int) -> int | float:
    """A 0-based quality from its count of 1/256 steps: an int at an operating point (what every
    family indexes with), else the fraction."""
    return steps // QUALITY_STEPS if steps % QUALITY_STEPS == 0 else steps / QUALITY_STEPS


@dataclass
class Container:
    model_id: str
    weights_id: bytes
    quality: int
    width: int
    height: int
    channels: int
    sections: dict[SectionType, bytes] = field(default_factory=dict)
    bit_depth: int = 8

    @property
    def flags(self) -> int:
        return FLAG_ALPHA if SectionType.ALPHA in self.sections else 0

    @property
    def quality_steps(self) -> int:
        """The quality as a count of 1/256 steps: index * 256 + k."""
        step = self.sections.get(SectionType.QUALITY_STEP, b"\x00")
        return self.quality * QUALITY_STEPS + step[0]

    @property
    def quality_value(self) -> int | float:
        """The 0-based quality: the header's index, or index + k / 256 for a continuous quality."""
        return quality_of_steps(self.quality_steps)

    @property
    def bits_back(self) -> bool:
        return bool(BITS_BACK_SECTIONS & self.sections.keys())

    @property
    def version(self) -> int:
        return max((SECTION_VERSIONS.get(kind, 1) for kind in self.sections), default=1)

    def validate(self) -> None:
        if not MODEL_ID_PATTERN.fullmatch(self.model_id.encode("ascii", "replace")):
            raise FormatError(f"invalid model id {self.model_id!r}")
        if len(self.weights_id) != WEIGHTS_ID_BYTES:
            raise FormatError("weight id must be 8 bytes")
        if not 0 <= self.quality <= 255:
            raise FormatError(f"quality index {self.quality} out of range")
        check_geometry(self.width, self.height)
        if self.channels not in (1, 3, 4):
            raise FormatError(f"unsupported channel count {self.channels}")
        if self.bits_back:
            if not BITS_BACK_SECTIONS <= self.sections.keys():
                raise FormatError("a bits-back file needs both its bitsback and album sections")
            if (RAW_SECTIONS | DETAIL_SECTIONS) & self.sections.keys():
                raise FormatError("a bits-back file carries its metadata and alpha inside the stream")
        elif (self.channels == 4) != (SectionType.ALPHA in self.sections):
            raise FormatError("an RGBA image needs exactly one alpha section")
        if self.bit_depth != 8:
            raise FormatError(f"unsupported bit depth {self.bit_depth}")
        step = self.sections.get(SectionType.QUALITY_STEP)
        if step is not None and (len(step) != 1 or step[0] == 0):
            raise FormatError("a quality_step section holds one byte, 1..255")
        if SectionType.DETAIL2 in self.sections and SectionType.DETAIL1 not in self.sections:
            raise FormatError("a detail2 section needs a detail1 section")
        for name, kind in CODED_SECTIONS.items():
            if kind in self.sections and not self.sections[kind] and kind not in DETAIL_SECTIONS:
                raise FormatError(f"empty {name} section (no model writes one)")
        if len(self.sections) > MAX_SECTIONS:
            raise FormatError("too many sections")


def section_type(name: str) -> SectionType:
    """The container section type of a coded section name."""
    if name not in CODED_SECTIONS:
        raise ValueError(f"no container section is named {name!r} (known: {', '.join(CODED_SECTIONS)})")
    return CODED_SECTIONS[name]


def check_geometry(width: int, height: int) -> None:
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
        raise FormatError(f"image size {width}x{height} outside 1..{MAX_DIMENSION}")
    if width * height > MAX_PIXELS:
        raise FormatError(f"image of {width}x{height} pixels exceeds the {MAX_PIXELS}-pixel limit")


def pack(container: Container) -> bytes:
    container.validate()
    model_id = container.model_id.encode("ascii")
    parts = [MAGIC, bytes([container.version, container.flags, len(model_id)]), model_id, container.weights_id,
             _GEOMETRY.pack(container.quality, container.width, container.height, container.channels,
                            container.bit_depth, len(container.sections))]
    for kind in sorted(container.sections):
        payload = container.sections[kind]
        parts.append(_SECTION_HEADER.pack(int(kind), len(payload)))
        parts.append(payload)
    body = b"".join(parts)
    if len(body) + 4 > MAX_FILE_BYTES:
        raise FormatError("coded image exceeds the 1 GiB file limit")
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes) -> Container:
    """Parse and validate a whole file; raises FormatError with a one-line reason."""
    if len(data) > MAX_FILE_BYTES:
        raise FormatError("file exceeds the 1 GiB limit")
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not a lic file (bad magic)")
    if len(data) < len(MAGIC) + 1:
        raise FormatError("file truncated in header")
    version = data[len(MAGIC)]
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unsupported format version {version} (this lic reads versions "
                          f"{READABLE_VERSIONS[0]}-{READABLE_VERSIONS[-1]})")
    if len(data) < MIN_FILE_BYTES:
        raise FormatError("file truncated in header")
    body, stored_crc = data[:-4], struct.unpack("<I", data[-4:])[0]
    if zlib.crc32(body) != stored_crc:
        raise FormatError("checksum mismatch (file corrupted or truncated)")
    return _parse_body(body, version)


def _parse_body(body: bytes, version: int) -> Container:
    reader = _Reader(body, len(MAGIC) + 1)
    flags = reader.byte()
    if flags & ~KNOWN_FLAGS:
        raise FormatError(f"unknown flags 0x{flags:02x}")
    id_length = reader.byte()
    if not 1 <= id_length <= MAX_MODEL_ID:
        raise FormatError("invalid model id length")
    model_id = reader.take(id_length)
    if not MODEL_ID_PATTERN.fullmatch(model_id):
        raise FormatError("invalid model id")
    weights_id = reader.take(WEIGHTS_ID_BYTES)
    quality, width, height, channels, bit_depth, count = _GEOMETRY.unpack(reader.take(_GEOMETRY.size))
    if count > MAX_SECTIONS:
        raise FormatError(f"too many sections ({count})")
    sections: dict[SectionType, bytes] = {}
    for _ in range(count):
        kind, length = _SECTION_HEADER.unpack(reader.take(_SECTION_HEADER.size))
        try:
            kind = SectionType(kind)
        except ValueError:
            raise FormatError(f"unknown section type {kind}") from None
        if kind in sections:
            raise FormatError(f"duplicate {kind.name.lower()} section")
        if SECTION_VERSIONS.get(kind, 1) > version:
            raise FormatError(f"{kind.name.lower()} section in a version {version} file")
        sections[kind] = reader.take(length)
    if reader.remaining():
        raise FormatError("trailing bytes after the last section")
    container = Container(model_id.decode("ascii"), weights_id, quality, width, height, channels,
                          sections, bit_depth)
    if bool(flags & FLAG_ALPHA) != (SectionType.ALPHA in sections):
        raise FormatError("alpha flag and alpha section disagree")
    container.validate()
    if container.version != version:
        raise FormatError(f"version {version} file whose sections are those of version {container.version}")
    return container


class _Reader:
    def __init__(self, data: bytes, position: int):
        self.data, self.position = data, position

    def take(self, count: int) -> bytes:
        if count > len(self.data) - self.position:
            raise FormatError("file truncated (a field runs past the end)")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def remaining(self) -> int:
        return len(self.data) - self.position
