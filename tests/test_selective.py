"""Selective generation (gc-c4-sc): the coded preservation map, coding only the kept latents, the
file format, the CLI, and random-box training, with tiny random models."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bitstream import binarymap
from bitstream.container import FormatError, SectionType, unpack
from lic_cli import codec as lic_codec
from lic_cli.cli import main
from lic_cli.imageio import read_image
from models import zoo
from models.gc.boxes import random_boxes
from models.gc.context import ZERO_SYMBOL, quantize
from models.gc.losses import LAMBDA, LossWeights, generator_losses
from models.gc.state import adapt_state
from models.interface import EncodeOptions, Geometry

from .conftest import png_bytes, smooth_image

TINY = {"width": 32, "residual_blocks": 2, "context_width": 8}


@pytest.fixture(scope="module")
def tiny_sc_weights(tmp_path_factory):
    torch.manual_seed(5)
    model = zoo.build_trainable("gc-c4-sc", TINY)
    with torch.no_grad():  # a random mask input weight, so that the map visibly matters
        model.generator[0].weight[:, -1] = torch.randn_like(model.generator[0].weight[:, -1])
    path = tmp_path_factory.mktemp("weights") / "tiny-sc.pt"
    return zoo.export_weights(model, "gc-c4-sc", path, {"note": "random init, tests only"})


@pytest.fixture(scope="module")
def loaded(tiny_sc_weights):
    return zoo.load_codec("gc-c4-sc", tiny_sc_weights)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (13, 21)])
def test_binary_maps_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    for cells in (rng.random(shape) < 0.3, np.zeros(shape, bool), np.ones(shape, bool)):
        assert np.array_equal(binarymap.decode(binarymap.encode(cells), shape), cells)


def test_a_box_costs_a_few_bytes_and_bad_streams_are_refused():
    cells = np.zeros((32, 48), bool)
    cells[8:24, 12:36] = True
    data = binarymap.encode(cells)
    assert len(data) <= 16
    with pytest.raises(FormatError):
        binarymap.decode(data + b"\x01\x00\x00\x00", cells.shape)
    with pytest.raises(FormatError):
        binarymap.decode(b"\x07\x00", cells.shape)


def test_only_the_kept_latents_are_coded(loaded):
    height, width = 96, 128
    image = torch.from_numpy(smooth_image(height, width, seed=4)).permute(2, 0, 1)
    preserve = np.zeros((height, width), bool)
    preserve[20:60, 30:90] = True
    codec = loaded.codec
    full = codec.encode(image, 0)
    selective = codec.encode(image, 0, EncodeOptions(preserve=preserve))
    assert "preserve" not in full and len(selective["latent"]) < len(full["latent"])
    symbols, kept = codec.decode_symbols(selective, Geometry(height, width), 0)
    expected = np.zeros((6, 8), bool)
    expected[1:4, 1:6] = True  # the 16 x 16 blocks touching the kept pixels
    assert np.array_equal(kept, expected)
    everything = codec.decode_symbols(full, Geometry(height, width), 0)[0]
    assert np.array_equal(symbols[:, expected], everything[:, expected])
    assert np.all(symbols[:, ~expected] == ZERO_SYMBOL)
    for payload in (codec.latent_coder.encode_static(symbols, expected),
                    codec.latent_coder.encode_context(symbols, expected)):
        sections = {"latent": payload, "preserve": selective["preserve"]}
        assert torch.equal(codec.decode(sections, Geometry(height, width), 0),
                           codec.decode(selective, Geometry(height, width), 0))
    assert not torch.equal(codec.decode(selective, Geometry(height, width), 0),
                           codec.decode(full, Geometry(height, width), 0))
    # Everything kept: a plain file.
    assert codec.encode(image, 0, EncodeOptions(preserve=np.ones((height, width), bool))) == full


def test_nothing_kept_still_decodes(loaded):
    image = torch.from_numpy(smooth_image(32, 48)).permute(2, 0, 1)
    sections = loaded.codec.encode(image, 0, EncodeOptions(preserve=np.zeros((32, 48), bool)))
    decoded = loaded.codec.decode(sections, Geometry(32, 48), 0)
    assert decoded.shape == (3, 32, 48)


def test_plain_models_refuse_a_mask(tmp_path):
    torch.manual_seed(0)
    model = zoo.build_trainable("gc-c4", TINY)
    path = zoo.export_weights(model, "gc-c4", tmp_path / "plain.pt")
    codec = zoo.load_codec("gc-c4", path).codec
    image = torch.from_numpy(smooth_image(32, 32)).permute(2, 0, 1)
    with pytest.raises(ValueError, match="selective"):
        codec.encode(image, 0, EncodeOptions(preserve=np.zeros((32, 32), bool)))
    assert zoo.models_with(selective=True) == ["gc-c4-sc"]


def test_cli_preserve_writes_a_version_5_file_that_decodes(tmp_path, tiny_sc_weights):
    source, mask = tmp_path / "a.png", tmp_path / "mask.png"
    source.write_bytes(png_bytes(smooth_image(64, 96)))
    pattern = np.zeros((16, 24, 1), np.uint8)  # any size: resampled to the image
    pattern[4:12, 6:18] = 255
    mask.write_bytes(png_bytes(pattern))
    runner = CliRunner()
    result = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "a.lic"), "--weights",
                                  str(tiny_sc_weights), "--preserve", str(mask)])
    assert result.exit_code == 0, result.output
    container = unpack((tmp_path / "a.lic").read_bytes())
    assert container.version == 5 and SectionType.PRESERVE in container.sections
    result = runner.invoke(main, ["decode", str(tmp_path / "a.lic"), "-o", str(tmp_path / "b.png"),
                                  "--weights", f"gc-c4-sc={tiny_sc_weights}"])
    assert result.exit_code == 0, result.output
    assert read_image((tmp_path / "b.png").read_bytes()).pixels.shape == (64, 96, 3)
    result = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "c.lic"), "--model", "hyper",
                                  "--preserve", str(mask)])
    assert result.exit_code == 2 and "gc-c4-sc" in result.output
    (tmp_path / "bad.png").write_bytes(b"not an image")
    result = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "d.lic"), "--weights",
                                  str(tiny_sc_weights), "--preserve", str(tmp_path / "bad.png")])
    assert result.exit_code != 0 and "--preserve" in result.output


def test_a_preserve_section_is_refused_by_models_without_it(tmp_path, loaded):
    torch.manual_seed(0)
    plain = zoo.build_trainable("gc-c4", TINY)
    path = zoo.export_weights(plain, "gc-c4", tmp_path / "plain.pt")
    session = lic_codec.CodecSession({"gc-c4": path})
    image = torch.from_numpy(smooth_image(32, 32)).permute(2, 0, 1)
    sections = loaded.codec.encode(image, 0, EncodeOptions(preserve=np.eye(32, dtype=bool)))
    container = unpack(lic_codec.pack_image(read_image(png_bytes(smooth_image(32, 32))), session.get("gc-c4"), 0,
                                            sections))
    with pytest.raises(FormatError, match="layout"):
        lic_codec.coded_sections(container, session.get("gc-c4"))


def test_random_boxes_keep_a_box_or_everything():
    torch.manual_seed(0)
    maps = random_boxes(64, 16, 16)
    kept = maps.sum(dim=(1, 2, 3))
    assert ((kept == 256) | ((kept >= 16) & (kept <= 144))).all()
    assert (kept == 256).any() and (kept < 256).any()
    for box in maps[kept < 256, 0]:
        rows, cols = box.any(dim=1).nonzero(), box.any(dim=0).nonzero()
        assert box.sum() == len(rows) * len(cols)  # one solid rectangle


def test_distortion_counts_only_the_kept_region():
    x = torch.rand(2, 3, 32, 32)
    x_hat = x.clone()
    x_hat[:, :, :, 16:] = 0  # wrong only where the map says "synthesise"
    preserve = torch.zeros(2, 1, 2, 2)
    preserve[:, :, :, 0] = 1
    assert generator_losses(x, x_hat, None, None, preserve)["mse"] == 0
    assert generator_losses(x, x_hat, None, None)["mse"] > 0


@pytest.mark.parametrize("source_name, target_name", [("gc-c4", "gc-c4-sc"), ("gc-c4-sc", "gc-c4")])
def test_a_model_started_from_the_other_kind_codes_whole_images_the_same(source_name, target_name):
    """Plain -> selective: the map plane starts at zero weight; selective -> plain: it is folded
    into the bias (the source's plane gets random weights, so that folding matters)."""
    torch.manual_seed(2)
    source = zoo.build_trainable(source_name, TINY).eval()
    if source.config.selective:
        with torch.no_grad():
            source.generator[0].weight[:, -1] = torch.randn_like(source.generator[0].weight[:, -1])
    target = zoo.build_trainable(target_name, TINY).eval()
    target.load_state_dict(adapt_state(source.state_dict(), target))
    w_hat = quantize(torch.randn(1, 4, 3, 5))[0]
    with torch.no_grad():
        torch.testing.assert_close(target.synthesise(w_hat), source.synthesise(w_hat))


def test_python_api_takes_a_mask_in_any_image_form(tiny_sc_weights):
    from lic_cli import api
    pixels = smooth_image(48, 64)
    keep = np.zeros((48, 64), bool)
    keep[:16, :32] = True
    from_array = api.encode(pixels, weights=tiny_sc_weights, preserve=keep)
    from_png = api.encode(pixels, weights=tiny_sc_weights, preserve=png_bytes(keep[:, :, None].astype(np.uint8) * 255))
    assert from_array == from_png != api.encode(pixels, weights=tiny_sc_weights)
    assert api.info(from_array)["sections"]["preserve"] > 0
    assert api.decode(from_array, weights={"gc-c4-sc": tiny_sc_weights}).size == (64, 48)


def test_folding_with_a_zero_step_run_keeps_the_training_record(tmp_path):
    from .conftest import png_folder
    model = zoo.build_trainable("gc-c4-sc", {"width": 32, "context_width": 8})
    source = zoo.export_weights(model, "gc-c4-sc", tmp_path / "sc.pt", {"steps": 7, "train_minutes": 1.5})
    data = png_folder(tmp_path / "data", 2, 64, 64)
    result = CliRunner().invoke(main, ["train", "--model", "gc-c4", "--init", str(source), "--steps", "0",
                                       "--data", str(data), "--val", str(data), "--out", str(tmp_path / "run"),
                                       "--channels", "32", "--latent-channels", "8", "--batch-size", "1",
                                       "--crop", "64", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    card = zoo.load_weight_card(tmp_path / "run" / "gc-c4.pt")
    assert card["steps"] == 7 and card["converted_from"] == "sc.pt (no training of its own)"


def test_ms_ssim_term_ignores_the_synthesised_region():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    x_hat = x.clone()
    x_hat[:, :, :, 32:] = torch.rand(2, 3, 64, 32)  # wrong only where the map says "synthesise"
    preserve = torch.zeros(2, 1, 4, 4)
    preserve[:, :, :, :2] = 1
    losses = generator_losses(x, x_hat, None, None, preserve, LossWeights(ms_ssim=0.5))
    assert losses["ms_ssim"] == pytest.approx(1.0, abs=1e-6) and losses["loss"] == 0
    everywhere = generator_losses(x, x_hat, None, None, None, LossWeights(ms_ssim=0.5))
    assert everywhere["ms_ssim"] < 0.9
    assert everywhere["loss"] == pytest.approx(LAMBDA * (everywhere["mse"] + 0.5 * (1 - everywhere["ms_ssim"])))


def test_synthesised_colour_term_sees_block_colours_not_detail():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    preserve = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    detail = x.clone()
    for top in (0, 16):  # each synthesised 16x16 block turned around: same block means, other pixels
        detail[:, :, top:top + 16, 16:] = x[:, :, top:top + 16, 16:].flip(2).flip(3)
    weights = LossWeights(synthesised_colour=1.0)
    assert generator_losses(x, detail, None, None, preserve, weights)["synthesised_colour"] < 1e-10
    shifted = x.clone()
    shifted[:, :, :, 16:] += 0.1  # a colour cast in the synthesised half
    assert generator_losses(x, shifted, None, None, preserve, weights)["synthesised_colour"] == pytest.approx(
        0.2**2, rel=1e-4)
    assert "synthesised_colour" not in generator_losses(x, shifted, None, None, None, weights)


def test_loss_weight_options_train_and_apply_only_where_they_mean_something(tmp_path):
    from .conftest import png_folder
    data = png_folder(tmp_path / "data", 2, 64, 64)
    common = ["train", "--data", str(data), "--val", str(data), "--channels", "16", "--latent-channels", "8",
              "--batch-size", "2", "--crop", "64", "--precision", "fp32", "--steps", "1", "--gan-after", "0",
              "--discriminator-width", "4", "--ms-ssim-weight", "0.25"]
    runner = CliRunner()
    selective = runner.invoke(main, common + ["--model", "gc-c4-sc", "--synthesised-colour-weight", "0.1",
                                              "--out", str(tmp_path / "sc")], catch_exceptions=False)
    assert selective.exit_code == 0, selective.output
    assert "HaarPSI" in selective.output
    plain = runner.invoke(main, common + ["--model", "gc-c4", "--synthesised-colour-weight", "0.1",
                                          "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 2 and "does not apply to --model gc-c4" in plain.output
