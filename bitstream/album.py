"""Payloads of the bits-back sections (format version 2): the image table and the carried records.

The `album` section lists the images of one bits-back stream; the carried records (metadata,
comment, side information, names) are not stored raw anywhere -- they are the bottom of the ANS
stack, recovered by decoding. Both parsers validate every count and length before using it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from .container import FormatError, check_geometry

MAX_IMAGES = 64
MAX_TOTAL_PIXELS = 1 << 27
MAX_BBVI_STEPS = 100  # what an encoder may write and a decoder will run: the decoder repeats every step
_HEAD = struct.Struct("<BII")  # image count, carried bytes, padding words
_ENTRY = struct.Struct("<IIBBHI")  # width, height, channels, quality, bbvi steps, posterior checksum
_RECORD = struct.Struct("<BBI")  # kind, image index (255 = whole file), length
WHOLE_FILE = 255


@dataclass(frozen=True)
class AlbumEntry:
    width: int
    height: int
    channels: int
    quality: int  # 0-based
    bbvi_steps: int
    checksum: int  # CRC-32 of the snapped posterior parameters (reproducible_bbvi)


@dataclass(frozen=True)
class AlbumTable:
    entries: list[AlbumEntry]
    carried_bytes: int
    padding_words: int


def pack_table(table: AlbumTable) -> bytes:
    _check_table(table)
    parts = [_HEAD.pack(len(table.entries), table.carried_bytes, table.padding_words)]
    parts += [_ENTRY.pack(e.width, e.height, e.channels, e.quality, e.bbvi_steps, e.checksum) for e in table.entries]
    return b"".join(parts)


def unpack_table(payload: bytes, stream_bytes: int) -> AlbumTable:
    if len(payload) < _HEAD.size:
        raise FormatError("album section truncated")
    count, carried, padding = _HEAD.unpack_from(payload)
    if not 1 <= count <= MAX_IMAGES:
        raise FormatError(f"album holds {count} images (1..{MAX_IMAGES} allowed)")
    if len(payload) != _HEAD.size + count * _ENTRY.size:
        raise FormatError("album section has the wrong length")
    entries = [AlbumEntry(*_ENTRY.unpack_from(payload, _HEAD.size + i * _ENTRY.size)) for i in range(count)]
    table = AlbumTable(entries, carried, padding)
    _check_table(table)
    # Everything carried comes back out of the stream, so it cannot be much larger than it.
    if padding > stream_bytes // 4 + 64 or carried > stream_bytes + 4096:
        raise FormatError("album declares more carried data than its stream can hold")
    return table


def _check_table(table: AlbumTable) -> None:
    total = 0
    for entry in table.entries:
        check_geometry(entry.width, entry.height)
        if entry.channels not in (1, 3, 4):
            raise FormatError(f"unsupported channel count {entry.channels}")
        if entry.bbvi_steps > MAX_BBVI_STEPS:
            raise FormatError(f"album asks for {entry.bbvi_steps} BBVI steps (at most {MAX_BBVI_STEPS})")
        total += entry.width * entry.height
    if total > MAX_TOTAL_PIXELS:
        raise FormatError(f"album exceeds {MAX_TOTAL_PIXELS} pixels in total")


class RecordKind(IntEnum):
    ICC = 1
    EXIF = 2
    ALPHA = 3  # zlib-compressed alpha plane
    NAME = 4  # UTF-8 file stem of the source image
    COMMENT = 5  # UTF-8 text (--comment)
    SIDE_INFO = 6  # arbitrary bytes (--side-info FILE)


@dataclass(frozen=True)
class Record:
    kind: RecordKind
    image: int  # index into the album, or WHOLE_FILE
    data: bytes


def pack_records(records: list[Record]) -> bytes:
    return b"".join(_RECORD.pack(int(r.kind), r.image, len(r.data)) + r.data for r in records)


def unpack_records(data: bytes, image_count: int) -> list[Record]:
    records, position = [], 0
    while position < len(data):
        if len(data) - position < _RECORD.size:
            raise FormatError("carried data truncated in a record header")
        kind, image, length = _RECORD.unpack_from(data, position)
        position += _RECORD.size
        if length > len(data) - position:
            raise FormatError("carried record runs past the end of the carried data")
        try:
            kind = RecordKind(kind)
        except ValueError:
            raise FormatError(f"unknown carried record kind {kind}") from None
        if image != WHOLE_FILE and image >= image_count:
            raise FormatError(f"carried record for image {image} of {image_count}")
        records.append(Record(kind, image, data[position : position + length]))
        position += length
    return records
