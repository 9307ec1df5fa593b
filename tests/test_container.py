import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitstream.container import MAGIC, MAX_PIXELS, Container, FormatError, SectionType, pack, unpack


def sample_container(**changes) -> Container:
    sections = {SectionType.HYPERLATENT: b"\x01\x02\x03\x04", SectionType.LATENT: b"abcdefgh"}
    fields = {"model_id": "hyper", "weights_id": bytes(range(8)), "quality": 2, "width": 37, "height": 21,
              "channels": 3, "sections": sections}
    fields.update(changes)
    return Container(**fields)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_round_trip_preserves_every_field():
    original = sample_container(sections={SectionType.HYPERLATENT: b"z" * 4, SectionType.LATENT: b"y" * 8,
                                          SectionType.ICC: b"icc", SectionType.EXIF: b"Exif\0\0",
                                          SectionType.ALPHA: zlib.compress(b"\xff" * 37 * 21)}, channels=4)
    parsed = unpack(pack(original))
    assert parsed == original


def test_size_is_header_plus_sections_plus_crc():
    container = sample_container()
    header = len(MAGIC) + 3 + len("hyper") + 8 + 12
    sections = sum(5 + len(p) for p in container.sections.values())
    assert len(pack(container)) == header + sections + 4


@pytest.mark.parametrize("data, message", [
    (b"", "bad magic"),
    (b"GIF89a" + b"\0" * 40, "bad magic"),
    (MAGIC + b"\x06" + b"\0" * 40, "unsupported format version 6"),
    (MAGIC + b"\x00" + b"\0" * 40, "unsupported format version 0"),
    (MAGIC + b"\x01", "truncated"),
])
def test_foreign_and_future_files_are_rejected(data, message):
    with pytest.raises(FormatError, match=message):
        unpack(data)


def test_every_truncation_is_rejected():
    data = pack(sample_container())
    for length in range(len(data)):
        with pytest.raises(FormatError):
            unpack(data[:length])


def test_trailing_garbage_is_rejected():
    with pytest.raises(FormatError):
        unpack(pack(sample_container()) + b"\0")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_byte_mutations_never_pass_silently(data):
    original = pack(sample_container())
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    if bytes(mutated) == original:
        assert unpack(bytes(mutated)) == sample_container()
    else:
        with pytest.raises(FormatError):
            unpack(bytes(mutated))


def header_body(width: int, height: int, sections: bytes = b"", count: int = 0, flags: int = 0) -> bytes:
    return (MAGIC + bytes([1, flags, 5]) + b"hyper" + bytes(8)
            + struct.pack("<BIIBBB", 0, width, height, 3, 8, count) + sections)


@pytest.mark.parametrize("width, height", [(0, 10), (10, 0), (70000, 10), (65535, 65535), (MAX_PIXELS, 2)])
def test_absurd_geometry_with_valid_checksum_is_rejected(width, height):
    with pytest.raises(FormatError, match="size|pixel"):
        unpack(with_crc(header_body(width, height)))


def test_section_longer_than_file_is_rejected_without_allocating():
    body = header_body(8, 8, struct.pack("<BI", 1, 0xFFFFFFFF) + b"abc", count=1)
    with pytest.raises(FormatError, match="truncated"):
        unpack(with_crc(body))


def test_unknown_and_duplicate_sections_are_rejected():
    with pytest.raises(FormatError, match="unknown section type 99"):
        unpack(with_crc(header_body(8, 8, struct.pack("<BI", 99, 1) + b"x", count=1)))
    twice = struct.pack("<BI", 1, 1) + b"x"
    with pytest.raises(FormatError, match="duplicate"):
        unpack(with_crc(header_body(8, 8, twice + twice, count=2)))


def test_unknown_flags_are_rejected():
    with pytest.raises(FormatError, match="flags"):
        unpack(with_crc(header_body(8, 8, flags=0x80)))


def test_invalid_containers_cannot_be_written():
    with pytest.raises(FormatError):
        pack(sample_container(model_id="Bad Name"))
    with pytest.raises(FormatError):
        pack(sample_container(channels=4))  # RGBA without an alpha section


def bits_back_container(**changes) -> Container:
    fields = {"model_id": "hyper-bb", "weights_id": bytes(8), "quality": 1, "width": 5, "height": 7, "channels": 4,
              "sections": {SectionType.BITSBACK: b"\x01\0\0\0", SectionType.ALBUM: b"album"}}
    fields.update(changes)
    return Container(**fields)


def test_bits_back_files_are_version_2_and_plain_files_stay_version_1():
    assert pack(sample_container())[len(MAGIC)] == 1
    data = pack(bits_back_container())
    assert data[len(MAGIC)] == 2
    assert unpack(data) == bits_back_container()


def test_version_and_sections_must_agree():
    body = header_body(8, 8, struct.pack("<BI", int(SectionType.BITSBACK), 4) + b"\x01\0\0\0", count=1)
    with pytest.raises(FormatError, match="version 1"):
        unpack(with_crc(body))
    version_2_plain = bytearray(pack(sample_container())[:-4])
    version_2_plain[len(MAGIC)] = 2
    with pytest.raises(FormatError, match="version"):
        unpack(with_crc(bytes(version_2_plain)))


def test_bits_back_files_keep_metadata_inside_the_stream():
    with pytest.raises(FormatError, match="inside the stream"):
        pack(bits_back_container(sections={SectionType.BITSBACK: b"x" * 4, SectionType.ALBUM: b"a",
                                           SectionType.ICC: b"icc"}))
    with pytest.raises(FormatError, match="both"):
        pack(bits_back_container(sections={SectionType.BITSBACK: b"x" * 4}))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_mutations_of_version_2_files_never_pass_silently(data):
    original = pack(bits_back_container())
    mutated = bytearray(original)
    position = data.draw(st.integers(0, len(mutated) - 1))
    mutated[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(FormatError):
        unpack(bytes(mutated))


def progressive_container() -> Container:
    return sample_container(model_id="flow", sections={SectionType.LATENT: b"z0"})


def test_detail_sections_make_a_version_3_file_and_may_be_empty():
    container = progressive_container()
    container.sections.update({SectionType.DETAIL1: b"z1", SectionType.DETAIL2: b""})
    data = pack(container)
    assert data[len(MAGIC)] == 3
    assert unpack(data) == container
    assert pack(sample_container())[len(MAGIC)] == 1  # files without them keep version 1


def test_a_detail_section_in_an_older_version_or_without_its_coarser_level_is_rejected():
    container = progressive_container()
    container.sections[SectionType.DETAIL1] = b"z1"
    data = bytearray(pack(container))
    data[len(MAGIC)] = 1
    with pytest.raises(FormatError, match="detail1 section in a version 1 file"):
        unpack(with_crc(bytes(data[:-4])))
    del container.sections[SectionType.DETAIL1]
    container.sections[SectionType.DETAIL2] = b"z2"
    with pytest.raises(FormatError, match="detail2 section needs a detail1"):
        pack(container)
