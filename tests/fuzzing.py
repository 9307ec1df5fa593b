"""Mutations of .lic files for fuzzing the decoders (tests/test_fuzz.py, benchmarks/fuzz.py).

Most mutations recompute the container checksum, so that they reach the section decoders instead
of stopping at the CRC."""
from __future__ import annotations

import random
import struct
import zlib

from bitstream.container import MAGIC, Container

HEADER_FIELDS = 40  # bytes from the start where the header's counts and sizes live


def with_checksum(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation of a file (a few bytes changed, cut, repeated or replaced)."""
    body = bytearray(data[:-4])
    if len(body) <= HEADER_FIELDS:  # already cut short: grow it back with random bytes
        body += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        return with_checksum(bytes(body))
    kind = rng.randrange(7)
    if kind == 0:  # flip bits anywhere
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # overwrite a header byte (sizes, counts, quality, channels)
        position = rng.randrange(len(MAGIC), min(len(body), HEADER_FIELDS + 8))
        body[position] = rng.choice([0, 1, 2, 3, 4, 5, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    elif kind == 2:  # truncate
        body = body[: rng.randrange(len(body))]
    elif kind == 3:  # replace a run with random bytes
        start = rng.randrange(len(body))
        length = rng.randint(1, 64)
        body[start:start + length] = bytes(rng.randrange(256) for _ in range(length))
    elif kind == 4:  # duplicate a run (shifts everything after it)
        start = rng.randrange(len(body))
        body[start:start] = body[start:start + rng.randint(1, 32)]
    elif kind == 5:  # a 32-bit field set to an extreme
        position = rng.randrange(len(MAGIC), len(body) - 4)
        body[position:position + 4] = struct.pack("<I", rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
    else:  # delete a run
        start = rng.randrange(len(body))
        del body[start:start + rng.randint(1, 32)]
    if rng.random() < 0.1:  # leave the checksum stale now and then
        return bytes(body) + data[-4:]
    return with_checksum(bytes(body))


def pack_unchecked(container: Container, version: int | None = None) -> bytes:
    """A container written per docs/format.md without the writer's validation: how a damaged or
    hostile file is made."""
    model_id = container.model_id.encode("ascii")
    flags = 1 if 5 in container.sections else 0
    parts = [MAGIC, bytes([version or container.version, flags, len(model_id)]), model_id, container.weights_id,
             struct.pack("<BIIBBB", container.quality, container.width, container.height, container.channels,
                         container.bit_depth, len(container.sections))]
    for kind in sorted(container.sections):
        parts += [struct.pack("<BI", int(kind), len(container.sections[kind])), container.sections[kind]]
    return with_checksum(b"".join(parts))
