"""The Python API (lic_cli.encode/decode/info) and the Pillow plugin, with a tiny random model."""
import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, UnidentifiedImageError

import lic_cli
from bitstream.container import FormatError
from lic_cli import pil_plugin
from lic_cli.cli import main
from lic_cli.imageio import ImageReadError

from .conftest import png_bytes, smooth_image


@pytest.fixture
def lic_opener(tiny_weights):
    pil_plugin.register_lic_opener(weights={"hyper": tiny_weights})
    yield
    pil_plugin.register_lic_opener()


def test_encode_decode_info_agree_with_the_command_line(tiny_weights, tmp_path):
    pixels = smooth_image(48, 80, seed=3)
    source = tmp_path / "in.png"
    source.write_bytes(png_bytes(pixels))
    data = lic_cli.encode(Image.open(source), quality=2, weights=tiny_weights)
    result = CliRunner().invoke(main, ["encode", str(source), "-o", str(tmp_path / "cli.lic"), "-q", "2",
                                       "--weights", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    assert data == (tmp_path / "cli.lic").read_bytes()
    for same in (pixels, source, str(source), source.read_bytes()):
        assert lic_cli.encode(same, quality=2, weights=tiny_weights) == data
    picture = lic_cli.decode(data, weights={"hyper": tiny_weights})
    assert picture.mode == "RGB" and picture.size == (80, 48)
    record = lic_cli.info(data)
    assert (record["model"], record["quality"], record["width"], record["height"]) == ("hyper", 2, 80, 48)
    assert record["bytes"] == len(data)


def test_grey_rgba_and_metadata_come_back(tiny_weights):
    grey = Image.fromarray(smooth_image(32, 40, channels=1, seed=1)[:, :, 0], "L")
    assert lic_cli.decode(lic_cli.encode(grey, weights=tiny_weights), weights={"hyper": tiny_weights}).mode == "L"
    rgba = Image.fromarray(smooth_image(32, 40, channels=4, seed=2), "RGBA")
    rgba.info["icc_profile"] = b"an ICC profile, carried verbatim"
    decoded = lic_cli.decode(lic_cli.encode(rgba, weights=tiny_weights), weights={"hyper": tiny_weights})
    assert decoded.mode == "RGBA"
    assert np.array_equal(np.asarray(decoded)[:, :, 3], np.asarray(rgba)[:, :, 3])  # alpha is lossless
    assert decoded.info["icc_profile"] == b"an ICC profile, carried verbatim"


def test_api_errors_are_value_errors_with_one_line(tiny_weights):
    with pytest.raises(FormatError, match="not a lic file"):
        lic_cli.info(b"\x89PNG not a lic file at all")
    with pytest.raises(ImageReadError, match="uint8"):
        lic_cli.encode(np.zeros((8, 8, 3), dtype=np.float32), weights=tiny_weights)
    with pytest.raises(ValueError, match="must be between 1 and 6"):
        lic_cli.encode(smooth_image(16, 16), quality=9, weights=tiny_weights)
    with pytest.raises(TypeError, match="PIL image"):
        lic_cli.encode(12, weights=tiny_weights)
    data = lic_cli.encode(smooth_image(16, 16), weights=tiny_weights)
    with pytest.raises(FormatError):
        lic_cli.decode(data[: len(data) // 2], weights={"hyper": tiny_weights})


def test_pillow_opens_and_saves_lic(lic_opener, tiny_weights, tmp_path):
    pixels = smooth_image(40, 56, seed=4)
    Image.fromarray(pixels).save(tmp_path / "a.lic", quality=3, model="hyper")
    data = (tmp_path / "a.lic").read_bytes()
    assert data == lic_cli.encode(pixels, quality=3, weights=tiny_weights)
    (tmp_path / "named.png").write_bytes(data)  # recognised by its magic bytes, not its name
    with Image.open(tmp_path / "named.png") as picture:
        assert (picture.format, picture.size, picture.mode) == ("LIC", (56, 40), "RGB")
        assert picture.info["lic_model"] == "hyper" and picture.info["lic_quality"] == 3
        decoded = np.asarray(picture)
    assert np.array_equal(decoded, np.asarray(lic_cli.decode(data, weights={"hyper": tiny_weights})))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="LIC", model="hyper")
    assert lic_cli.info(buffer.getvalue())["quality"] == 4  # the model's default
    Image.fromarray(pixels).save(tmp_path / "between.lic", quality=2.5, model="hyper")
    with Image.open(tmp_path / "between.lic") as picture:
        assert picture.info["lic_quality"] == 2.5


def test_pillow_errors_on_damaged_files(lic_opener, tiny_weights, tmp_path):
    (tmp_path / "foreign.lic").write_bytes(b"\x89LIC\r\n\x1a\n" + b"\xff" * 40)
    data = bytearray(lic_cli.encode(smooth_image(32, 48), weights=tiny_weights))
    (tmp_path / "good.lic").write_bytes(bytes(data))
    data[len(data) // 2] ^= 0x10
    (tmp_path / "damaged.lic").write_bytes(bytes(data))
    for name in ("foreign.lic", "damaged.lic"):
        with pytest.raises(UnidentifiedImageError):
            Image.open(tmp_path / name)
    pil_plugin.register_lic_opener()  # the shipped weights, not the file's: a valid header, undecodable data
    with Image.open(tmp_path / "good.lic") as picture, pytest.raises(OSError, match="weights"):
        picture.load()


def test_an_album_decodes_with_decode_all(tiny_bb_weights, tmp_path):
    sources = []
    for index in range(2):
        sources.append(tmp_path / f"{index}.png")
        sources[-1].write_bytes(png_bytes(smooth_image(32, 48, seed=index)))
    album = tmp_path / "album.lic"
    result = CliRunner().invoke(main, ["encode", *map(str, sources), "-o", str(album), "--model", "hyper-bb",
                                       "--weights", str(tiny_bb_weights)])
    assert result.exit_code == 0, result.output
    weights = {"hyper-bb": tiny_bb_weights}
    with pytest.raises(ValueError, match="holds 2 images"):
        lic_cli.decode(album.read_bytes(), weights=weights)
    pictures = lic_cli.decode_all(album.read_bytes(), weights=weights)
    assert [picture.size for picture in pictures] == [(48, 32), (48, 32)]
    assert len(lic_cli.info(album.read_bytes())["images"]) == 2


def test_encode_with_a_target_from_python(tiny_weights):
    data = lic_cli.encode(smooth_image(64, 96, seed=5), target_size=300, weights=tiny_weights)
    assert len(data) <= 300
    with pytest.raises(ValueError, match="not several"):
        lic_cli.encode(smooth_image(64, 96), quality=2, target_size=300, weights=tiny_weights)
