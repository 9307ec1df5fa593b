"""Continuous qualities (interpolated gains, the quality_step section) and rate control."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bitstream.container import Container, FormatError, SectionType, pack, unpack
from lic_cli.cli import main
from lic_cli.codec import CodecSession, decode_file, encode_image
from lic_cli.imageio import ImageData
from models import zoo
from models.core.fixedpoint import geometric_interpolation
from models.interface import PLAIN, Geometry

from .conftest import png_bytes, smooth_image


def test_the_quality_step_section_round_trips_and_is_checked():
    sections = {SectionType.HYPERLATENT: b"z", SectionType.LATENT: b"y", SectionType.QUALITY_STEP: b"\x80"}
    container = unpack(pack(Container("hyper", b"\0" * 8, 2, 16, 16, 3, sections)))
    assert container.version == 4 and container.quality_value == 2.5
    assert unpack(pack(Container("hyper", b"\0" * 8, 2, 16, 16, 3, {SectionType.LATENT: b"y"}))).quality_value == 2
    for payload in (b"\x00", b"\x01\x02", b""):
        with pytest.raises(FormatError, match="quality_step"):
            pack(Container("hyper", b"\0" * 8, 2, 16, 16, 3, {**sections, SectionType.QUALITY_STEP: payload}))


def test_interpolated_gains_are_exact_integers_between_the_trained_ones():
    low, high = np.array([4096, 1000, 7]), np.array([8192, 4000, 7])
    assert np.array_equal(geometric_interpolation(low, high, 0, 256), low)
    assert np.array_equal(geometric_interpolation(low, high, 256, 256), high)
    assert np.array_equal(geometric_interpolation(low, high, 128, 256), [5793, 2000, 7])  # sqrt(2) * 4096 = 5792.6


def test_a_quality_between_two_uses_the_gains_between_them(tiny_weights):
    session = CodecSession({"hyper": tiny_weights})
    loaded = session.get("hyper")
    codec = loaded.codec
    features = torch.ones(1, codec.model.config.latent_channels, 1, 1)
    gains = {q: codec.gained_latents(features, codec.quality_tensor(q)).flatten() for q in (2, 2.5, 3)}
    assert torch.allclose(gains[2.5], (gains[2] * gains[3]).sqrt())
    inverse = {q: codec.exact.inv_gain_z_at(q) for q in (2, 2.25, 3)}
    assert np.allclose(inverse[2.25], inverse[2] ** 0.75 * inverse[3] ** 0.25, rtol=1e-3)
    image = ImageData(smooth_image(64, 96, seed=6))
    data = encode_image(image, loaded, 2.5)
    assert unpack(data).quality_value == 2.5
    first, second = decode_file(data, session).image.pixels, decode_file(data, session).image.pixels
    assert np.array_equal(first, second)
    with pytest.raises(ValueError, match="1/256"):
        loaded.codec.encode(torch.zeros(3, 64, 64, dtype=torch.uint8), 2.001, PLAIN)


@pytest.mark.parametrize("quality", [0, 3, 1.25, 4.5])
def test_prepared_images_code_what_encode_codes(tiny_weights, quality):
    codec = zoo.load_codec("hyper", tiny_weights).codec
    pixels = torch.from_numpy(smooth_image(64, 80, seed=7)).permute(2, 0, 1).contiguous()
    assert codec.prepare(pixels).encode(quality) == codec.encode(pixels, quality, PLAIN)
    decoded = codec.decode(codec.encode(pixels, quality, PLAIN), Geometry(64, 80), quality)
    assert decoded.shape == (3, 64, 80)


def test_models_without_continuous_qualities_refuse_fractions(tiny_bb_weights):
    codec = zoo.load_codec("hyper-bb", tiny_bb_weights).codec
    assert not codec.qualities.continuous
    with pytest.raises(ValueError, match="whole number"):
        codec.qualities.check(2.5)


def test_the_command_line_takes_a_fractional_quality(tiny_weights, tiny_bb_weights, tmp_path):
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes(smooth_image(48, 64, seed=8)))
    runner = CliRunner()
    result = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "a.lic"), "-q", "3.4",
                                  "--weights", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    assert unpack((tmp_path / "a.lic").read_bytes()).quality_steps == 2 * 256 + 102  # 0.4 -> 102/256
    info = runner.invoke(main, ["info", str(tmp_path / "a.lic")])
    assert "hyper q3.39844" in info.output
    result = runner.invoke(main, ["decode", str(tmp_path / "a.lic"), "-o", str(tmp_path / "decoded.png"),
                                  "--weights", f"hyper={tiny_weights}"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "b.lic"), "-q", "2.5", "--model",
                                  "hyper-bb", "--weights", str(tiny_bb_weights)])
    assert result.exit_code == 2 and "whole numbers" in result.output


def test_sizes_parse_in_the_usual_units():
    from lic_cli.rate_control import parse_size

    assert [parse_size(text) for text in ("40000", "40k", "40KiB", "1.5M", "2 kB")] == [40000, 40000, 40960,
                                                                                        1500000, 2000]
    for bad in ("", "k", "40 parsecs", "0", "-3k"):
        with pytest.raises(ValueError):
            parse_size(bad)


def monotone_codec(tmp_path):
    """A tiny hyper whose size and PSNR grow with the quality, as trained models' do: random
    transforms with the gain ladder stretched (a gain grows 4x per quality)."""
    torch.manual_seed(5)
    model = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12})
    with torch.no_grad():
        steps = torch.arange(6, dtype=torch.float32)[:, None] * np.log(4.0) - 4
        model.log_gain_y.copy_(steps.repeat(1, 12))
        model.log_inv_gain_y.copy_(-steps.repeat(1, 12))
    return zoo.export_weights(model, "hyper", tmp_path / "ladder.pt")


@pytest.mark.parametrize("kind, shipped", [("size", False), ("bpp", False),
                                           pytest.param("size", True, marks=pytest.mark.slow),
                                           pytest.param("psnr", True, marks=pytest.mark.slow)])
def test_rate_control_meets_its_target_and_comes_close(tmp_path, kind, shipped):
    """With a tiny model whose sizes grow with the quality, and with the shipped hyper (PSNR needs
    it: a random synthesis has no PSNR ladder)."""
    from PIL import Image

    from lic_cli.metrics import psnr
    from lic_cli.rate_control import Target, TargetError, encode_to_target

    from .conftest import SAMPLE

    session = CodecSession({} if shipped else {"hyper": monotone_codec(tmp_path)})
    loaded = session.get("hyper")
    image = ImageData(np.ascontiguousarray(np.asarray(Image.open(SAMPLE).convert("RGB"))[96:192, 160:288]))
    low, high = (encode_image(image, loaded, q) for q in (0, 5))

    def measure(data: bytes) -> float:
        return {"size": len(data), "bpp": 8 * len(data) / (96 * 128),
                "psnr": psnr(image.pixels, decode_file(data, session).image.pixels)}[kind]

    value = (measure(low) + measure(high)) / 2
    achieved = encode_to_target(image, loaded, Target(kind, value), session)
    assert achieved.measure == pytest.approx(measure(achieved.data))
    assert 0 < achieved.quality < 5 and achieved.encodes <= 13
    if kind == "psnr":
        assert achieved.measure >= value
        below = encode_image(image, loaded, achieved.quality - 1 / 256)
        assert measure(below) < value or len(below) >= len(achieved.data)  # one step less misses it
    else:
        assert achieved.measure <= value
        assert achieved.measure >= (0.97 if shipped else 0.9) * value  # within a few percent of the budget
    unreachable = measure(low) / 2 if kind != "psnr" else measure(high) + 5
    with pytest.raises(TargetError, match="cannot meet"):
        encode_to_target(image, loaded, Target(kind, unreachable), session)


def test_encode_with_a_target_reports_what_it_achieved(tiny_weights, tmp_path):
    sources = []
    for index in range(2):
        sources.append(tmp_path / f"{index}.png")
        sources[-1].write_bytes(png_bytes(smooth_image(64, 96, seed=index)))
    runner = CliRunner()
    result = runner.invoke(main, ["encode", *map(str, sources), "-o", str(tmp_path / "out"), "--target-size", "300",
                                  "--weights", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    assert result.output.count("(at most 300 bytes;") == 2
    assert all(len(path.read_bytes()) <= 300 for path in (tmp_path / "out").iterdir())
    result = runner.invoke(main, ["encode", str(sources[0]), "-o", str(tmp_path / "x.lic"), "--target-size", "10",
                                  "--weights", str(tiny_weights)])
    assert result.exit_code == 2 and "cannot meet at most 10 bytes: the smallest file" in result.output
    for extra in (["-q", "3"], ["--target-psnr", "30"], ["--refine", "sga"]):
        result = runner.invoke(main, ["encode", str(sources[0]), "--target-size", "1k", *extra])
        assert result.exit_code == 2 and result.output.startswith("lic: error:"), result.output


def test_rate_control_works_for_a_model_with_operating_points_only(tiny_bb_weights):
    from lic_cli.rate_control import Target, encode_to_target

    session = CodecSession({"hyper-bb": tiny_bb_weights})
    loaded = session.get("hyper-bb")
    assert loaded.codec.qualities.grid() == [0, 1, 2, 3, 4, 5]
    image = ImageData(smooth_image(48, 64, seed=3))
    achieved = encode_to_target(image, loaded, Target("size", 1e6), session)
    assert achieved.quality == 5 and isinstance(achieved.quality, int)
    assert decode_file(achieved.data, session).image.pixels.shape == (48, 64, 3)
