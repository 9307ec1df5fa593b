"""Round trips through the real container and coders with a tiny random model."""
import io
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from bitstream.container import FormatError, SectionType, unpack
from lic_cli.codec import CodecSession, decode_file, encode_image
from lic_cli.imageio import read_image
from models.core import fixedpoint

from .conftest import SAMPLE, png_bytes, smooth_image


@pytest.fixture
def session(tiny_weights):
    return CodecSession({"hyper": tiny_weights})


def round_trip(pixels: np.ndarray, session, quality: int = 2, **png_options):
    image = read_image(png_bytes(pixels, **png_options))
    data = encode_image(image, session.get("hyper"), quality)
    return data, decode_file(data, session)


@pytest.mark.parametrize("height, width", [(1, 1), (1, 7), (5, 1), (37, 53), (64, 64), (65, 129)])
def test_any_size_round_trips_to_the_same_geometry(session, height, width):
    pixels = smooth_image(height, width)
    _data, decoded = round_trip(pixels, session)
    assert decoded.image.pixels.shape == (height, width, 3)
    assert decoded.container.width == width and decoded.container.height == height


def test_grey_stays_grey(session):
    pixels = smooth_image(33, 40, channels=1)
    _, decoded = round_trip(pixels, session)
    assert decoded.image.pixels.shape == (33, 40, 1)


def test_alpha_is_lossless(session):
    pixels = smooth_image(30, 45, channels=4)
    pixels[:, :, 3] = np.arange(30 * 45).reshape(30, 45) % 256
    data, decoded = round_trip(pixels, session)
    assert np.array_equal(decoded.image.pixels[:, :, 3], pixels[:, :, 3])
    assert SectionType.ALPHA in unpack(data).sections


def test_icc_and_exif_are_carried_through(session):
    exif = Image.Exif()
    exif[0x010E] = "a lic test"  # ImageDescription
    icc = b"fake-icc-profile-bytes" * 3
    _data, decoded = round_trip(smooth_image(20, 20), session, exif=exif.tobytes(), icc_profile=icc)
    assert decoded.image.icc_profile == icc
    assert Image.Exif().load(decoded.image.exif) or decoded.image.exif  # parseable and present
    assert b"a lic test" in decoded.image.exif


def test_sixteen_bit_input_is_converted_with_a_warning():
    buffer = io.BytesIO()
    Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)).save(buffer, "PNG")
    image = read_image(buffer.getvalue())
    assert image.pixels.dtype == np.uint8 and any("16-bit" in w for w in image.warnings)


def test_48_bit_rgb_png_is_converted_with_a_warning():
    import struct
    values = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in values)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 4, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    image = read_image(png)
    assert image.pixels.shape == (4, 5, 3) and any("16-bit" in w for w in image.warnings)
    assert np.abs(image.pixels.astype(int) - values.astype(int) / 257).max() <= 1


def test_file_size_is_coded_streams_plus_fixed_overhead(session):
    image = read_image(png_bytes(smooth_image(70, 90)))
    loaded = session.get("hyper")
    streams = loaded.codec.encode(torch.from_numpy(image.pixels).permute(2, 0, 1).float() / 255, 1)
    data = encode_image(image, loaded, 1)
    header = 8 + 3 + len("hyper") + 8 + 12
    assert len(data) == header + sum(5 + len(s) for s in streams.values()) + 4


def test_decoding_is_repeatable_and_independent_of_thread_count(session):
    pixels = np.asarray(Image.open(SAMPLE).convert("RGB"))[:128, :192]
    data, first = round_trip(pixels, session)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = decode_file(data, session)
        torch.set_num_threads(2)
        two = decode_file(data, session)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(first.image.pixels, one.image.pixels)
    assert np.array_equal(one.image.pixels, two.image.pixels)


def test_fixed_point_hyper_synthesis_is_exact(tiny_codec):
    """The table-selecting network gives the same bits whatever the summation order."""
    layers = fixedpoint.freeze(tiny_codec.codec.model.h_s)
    z = torch.randint(-20, 21, (1, layers[0].weight.shape[0], 3, 5)).double()
    reference = fixedpoint.run(layers, z)
    # Same arithmetic with the batch split and the channels permuted differently:
    permuted = fixedpoint.run(layers, torch.cat([z, z.flip(3)]))[0:1]
    assert torch.equal(reference, permuted)
    assert torch.equal(reference * 256, torch.round(reference * 256))  # on the 2^-8 grid


def test_scale_table_lookup_is_the_binary_search_it_replaces():
    thresholds = np.exp(np.linspace(np.log(0.11), np.log(256.0), 64))
    grid = np.arange(-300, 256 * 300) / 256.0  # negatives, every grid value, beyond the last scale
    expected = np.minimum(np.searchsorted(thresholds, grid, side="left"), len(thresholds) - 1)
    assert np.array_equal(fixedpoint.TableIndex(thresholds)(grid), expected)


@pytest.mark.parametrize(("lambdas", "expected"), [((0.0004, 0.001, 0.0025, 0.0065, 0.016, 0.04), 3),
                                                    ((0.0018, 0.004, 0.0088, 0.0194, 0.043, 0.094), 2)])
def test_default_quality_is_the_one_nearest_lambda_0_0065(tmp_path, lambdas, expected):
    from models import zoo
    model = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12, "lambdas": lambdas})
    path = zoo.export_weights(model, "hyper", tmp_path / "w.pt")
    assert zoo.load_codec("hyper", path).codec.qualities.default == expected


def test_wrong_weights_are_reported_not_decoded(session, tmp_path):
    from models import zoo
    other = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12})
    other_path = zoo.export_weights(other, "hyper", tmp_path / "other.pt")
    data, _ = round_trip(smooth_image(16, 16), session)
    with pytest.raises(FormatError, match="made with hyper weights .* pass --weights hyper=FILE"):
        decode_file(data, CodecSession({"hyper": other_path}))


def test_corrupt_alpha_section_is_a_format_error(session):
    data, _ = round_trip(smooth_image(10, 10, channels=4), session)
    container = unpack(data)
    container.sections[SectionType.ALPHA] = zlib.compress(b"\0" * 99)
    from bitstream.container import pack
    with pytest.raises(FormatError, match="alpha"):
        decode_file(pack(container), session)


def test_a_latent_wider_than_the_hyper_synthesis_codes_and_decodes(tmp_path):
    from models import zoo
    torch.manual_seed(7)
    model = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 16, "hyper_width": 12})
    assert model.h_s[0].out_channels == 12 and model.h_s[-1].out_channels == 32
    path = zoo.export_weights(model, "hyper", tmp_path / "wide.pt")
    pixels = smooth_image(40, 70)
    data, decoded = round_trip(pixels, CodecSession({"hyper": path}))
    again = decode_file(data, CodecSession({"hyper": path}))
    assert decoded.image.pixels.shape == pixels.shape
    assert np.array_equal(decoded.image.pixels, again.image.pixels)


def test_synthesis_runs_on_a_fixed_thread_count_and_restores_the_callers():
    from models.core import precision

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.raises(RuntimeError), precision.synthesis_threads("cpu"):
            assert torch.get_num_threads() == precision.SYNTHESIS_THREADS
            raise RuntimeError
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
