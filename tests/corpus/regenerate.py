"""Write the regression corpus of hostile files (tests/test_hostile.py decodes each and expects a
one-line error): decompression bombs with empty or garbage sections (hyper, gc-c4, cpm, flow), a
bits-back file asking for more posterior-fit steps than any encoder writes, and one declaring more
pixels than its model codes. They name the shipped weights, so run this again after shipping new ones:

    python tests/corpus/regenerate.py
"""
from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path

import numpy as np

from bitstream import album
from bitstream.container import Container, SectionType, unpack
from bitstream.tables import TOTAL
from lic_cli.codec import CodecSession, encode_album
from lic_cli.imageio import ImageData
from models.interface import EncodeOptions

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))
from tests.fuzzing import pack_unchecked


def main() -> None:
    session = CodecSession()
    hashes = {name: session.get(name).weights_id for name in ("hyper", "gc-c4", "hyper-bb", "cpm", "flow")}
    garbage = random.Random(0).randbytes(64)
    counts = np.full((4, 5), TOTAL // 5, dtype="<u2")
    counts[:, 0] += TOTAL - counts.sum(axis=1)
    small = ImageData(np.full((40, 60, 3), 128, dtype=np.uint8))
    real_bb = unpack(encode_album([(None, small)], session.get("hyper-bb"), 1,
                                  options=EncodeOptions(posterior_steps=2))[0])
    table = album.unpack_table(real_bb.sections[SectionType.ALBUM], len(real_bb.sections[SectionType.BITSBACK]))
    entry = table.entries[0]
    greedy = album.AlbumEntry(entry.width, entry.height, entry.channels, entry.quality, 2000, entry.checksum)
    huge = album.AlbumEntry(8192, 4096, entry.channels, entry.quality, entry.bbvi_steps, entry.checksum)
    files = {
        "hyper-empty-8192x4096.lic": (Container("hyper", hashes["hyper"], 3, 8192, 4096, 3, {
            SectionType.HYPERLATENT: b"", SectionType.LATENT: b""}), "empty hyperlatent section"),
        "hyper-garbage-8192x4096.lic": (Container("hyper", hashes["hyper"], 3, 8192, 4096, 3, {
            SectionType.HYPERLATENT: garbage, SectionType.LATENT: garbage}), "corrupted file"),
        "gc-c4-empty-8192x4096.lic": (Container("gc-c4", hashes["gc-c4"], 0, 8192, 4096, 3, {
            SectionType.LATENT: b"\0" + counts.tobytes()}), "empty entropy-coded stream"),
        "cpm-garbage-8192x4096.lic": (Container("cpm", hashes["cpm"], 0, 8192, 4096, 3, {
            SectionType.LATENT: garbage}), "corrupted file"),
        "flow-garbage-8192x4096.lic": (Container("flow", hashes["flow"], 11, 8192, 4096, 3, {
            SectionType.LATENT: garbage, SectionType.DETAIL1: garbage, SectionType.DETAIL2: b""}), "corrupted file"),
        "hyper-bb-2000-steps.lic": (_with_entry(real_bb, greedy, table), "BBVI steps"),
        "hyper-bb-8192x4096.lic": (_with_entry(real_bb, huge, table, 8192, 4096), "model hyper-bb codes at most"),
    }
    expected = {}
    for name, (container, message) in files.items():
        data = pack_unchecked(container)
        (HERE / name).write_bytes(data)
        expected[name] = message
        print(name, len(data), "bytes")
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def _with_entry(container: Container, entry: album.AlbumEntry, table: album.AlbumTable, width: int | None = None,
                height: int | None = None) -> Container:
    """The bits-back file with its one album entry replaced, written per docs/format.md (pack_table
    would refuse the entry)."""
    sections = dict(container.sections)
    sections[SectionType.ALBUM] = struct.pack("<BII", 1, table.carried_bytes, table.padding_words) + struct.pack(
        "<IIBBHI", entry.width, entry.height, entry.channels, entry.quality, entry.bbvi_steps, entry.checksum)
    return Container(container.model_id, container.weights_id, container.quality, width or container.width,
                     height or container.height, container.channels, sections)


if __name__ == "__main__":
    main()
