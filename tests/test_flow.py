"""The flow family's own logic: the bijection, exact priors, progressive decoding, stable
re-encoding and the training objective (tiny random networks)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bitstream.container import FormatError
from models import zoo
from models.flow.codec import FlowCodec, freeze_coding_tensors
from models.flow.network import FlowCompression, TranslationNet, build, pixels_to_flow
from models.interface import Geometry

TINY = zoo.entry("flow").tiny_config


def tiny_model(seed: int = 0) -> FlowCompression:
    """A tiny flow whose couplings are not the identity, with a prior that predicts something."""
    torch.manual_seed(seed)
    model = build(TINY)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, TranslationNet):
                module.tail.weight.normal_(0, 0.3)
        for prior in (model.prior1, model.prior2):  # scales of a few grey levels, not ~0
            prior[-1].bias[prior[-1].out_channels // 2:] = 4.0
    return model.eval()


def tiny_codec(seed: int = 0) -> FlowCodec:
    model = tiny_model(seed)
    # What export_weights does: fp16 parameters, coding tables frozen from them.
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    return FlowCodec(model, freeze_coding_tensors(model))


def smooth(height: int, width: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    small = rng.random((3, height // 8 + 2, width // 8 + 2))
    big = torch.nn.functional.interpolate(torch.from_numpy(small)[None], size=(height, width), mode="bilinear")[0]
    noise = torch.from_numpy(rng.normal(0, 0.03, (3, height, width)))
    return torch.round((big + noise).clamp(0, 1) * 255).to(torch.uint8)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def test_the_flow_is_a_bijection_with_the_paper_latent_shapes():
    model = tiny_model()
    x = pixels_to_flow(torch.rand(2, 3, 32, 48))
    z0, z1, z2 = model.flow(x)
    assert (z0.shape, z1.shape, z2.shape) == ((2, 48, 4, 6), (2, 12, 8, 12), (2, 6, 16, 24))
    assert torch.allclose(model.flow.inverse(z0, z1, z2), x, atol=1e-3)
    assert not torch.allclose(z0, torch.nn.functional.pixel_unshuffle(x, 8)[:, :48], atol=1)  # not the identity


@pytest.mark.parametrize("size", [(1, 1), (13, 29), (40, 24)])
def test_round_trip_decodes_the_coded_symbols(size):
    codec = tiny_codec()
    image = smooth(*size) if min(size) >= 8 else torch.full((3, *size), 77, dtype=torch.uint8)
    geometry = Geometry(*size)
    latents = codec.quantise(codec.analyse(image), 5)
    sections = codec.encode_latents(latents, 5)
    decoded = codec.decode_symbols(sections, geometry, 5)
    for coded, back in zip(latents.symbols, decoded, strict=True):
        np.testing.assert_array_equal(coded, back)
    assert codec.decode(sections, geometry, 5).shape == (3, *size)


def test_finer_steps_cost_more_bytes_and_reach_near_lossless():
    codec = tiny_codec()
    image = smooth(32, 40)
    sizes, qualities = [], []
    for quality in (0, 5, codec.qualities.count - 1):
        sections = codec.encode(image, quality)
        sizes.append(sum(map(len, sections.values())))
        qualities.append(psnr(codec.decode(sections, Geometry(32, 40), quality), image))
    assert sizes == sorted(sizes) and qualities == sorted(qualities)
    assert qualities[-1] > 45  # step 1: uniform error of at most half a grey level per latent


def test_a_prefix_of_the_sections_decodes_a_preview():
    codec = tiny_codec()
    image = smooth(32, 32)
    sections = codec.encode(image, 8)
    full = codec.decode(sections, Geometry(32, 32), 8)
    coarse = codec.decode({"latent": sections["latent"]}, Geometry(32, 32), 8)
    middle = codec.decode({k: sections[k] for k in ("latent", "detail1")}, Geometry(32, 32), 8)
    assert coarse.shape == middle.shape == full.shape
    assert psnr(full, image) > psnr(coarse, image)
    symbols = codec.decode_symbols({"latent": sections["latent"]}, Geometry(32, 32), 8)
    assert not symbols[1].any() and not symbols[2].any()
    with pytest.raises(FormatError, match="needs its detail1"):
        codec.decode({k: sections[k] for k in ("latent", "detail2")}, Geometry(32, 32), 8)


def test_latents_the_prior_is_sure_of_are_not_coded():
    codec = tiny_codec()
    latents = codec.quantise(codec.analyse(smooth(32, 32)), 0)
    skipped = codec.predicted_tables[latents.table_ids[0]]
    assert skipped.any() and not latents.symbols[1][skipped].any()


def test_re_encoding_a_decoded_image_gives_back_its_symbols():
    codec = tiny_codec()
    image = smooth(32, 48, seed=3)
    quality = 3
    first = codec.quantise(codec.analyse(image), quality)
    decoded = codec.synthesise(first.values, Geometry(32, 48))
    second = codec.quantise(codec.analyse(decoded), quality)
    changed = sum(int((a != b).sum()) for a, b in zip(first.symbols, second.symbols, strict=True))
    total = sum(a.size for a in first.symbols)
    assert changed <= 0.02 * total


def test_training_objective_reports_rate_and_both_reconstructions():
    model = build(TINY).train()
    x = torch.rand(2, 3, 16, 16)
    quality = torch.tensor([0, 1])
    out = model(x, quality)
    stats = model.rate_distortion(x, quality, out)
    stats["loss"].backward()
    assert out["x_preview"].shape == x.shape and stats["bpp"] > 0
    assert model.flow.levels[0][0].translation.tail.weight.grad is not None
    assert model.prior1[0].weight.grad is not None and model.density.biases[0].grad is not None


def test_lic_tune_fits_the_steps_of_every_operating_point(tmp_path):
    from click.testing import CliRunner

    from lic_cli.cli import main

    from .conftest import png_folder

    torch.manual_seed(0)
    weights = zoo.export_weights(tiny_model(), "flow", tmp_path / "tiny.pt")
    photos = png_folder(tmp_path / "photos", 3, 80, 96)
    runner = CliRunner()
    result = runner.invoke(main, ["tune", str(weights), "--model", "flow", "--data", str(photos), "-o",
                                  str(tmp_path / "tuned.pt"), "--iterations", "3", "--batch-size", "2", "--crop", "64"])
    assert result.exit_code == 0, result.output
    before = zoo.load_codec("flow", weights).codec.steps
    tuned = zoo.load_codec("flow", tmp_path / "tuned.pt")
    assert not torch.equal(tuned.codec.steps, before) and tuned.card["tuned"]["iterations"] == 3
    # Training or tuning again from the tuned file starts from its fitted steps, not the nominal ones.
    network = build(zoo.weight_file_config(tmp_path / "tuned.pt", "flow"))
    state = zoo.load_network_state(tmp_path / "tuned.pt", "flow", network)
    assert torch.allclose(state["log_steps"].double().exp(), tuned.codec.steps, rtol=1e-3)
    reladdered = runner.invoke(main, ["tune", str(weights), "--model", "flow", "--data", str(photos), "-o",
                                      str(tmp_path / "wide.pt"), "--iterations", "1", "--batch-size", "2", "--crop",
                                      "64", "--ladder", "96,48,24,12,6,3,1.5"])
    assert reladdered.exit_code == 0, reladdered.output
    assert zoo.load_codec("flow", tmp_path / "wide.pt").codec.qualities.count == 7
    refused = runner.invoke(main, ["tune", str(weights), "--model", "hyper", "--data", str(photos), "-o",
                                   str(tmp_path / "x.pt")])
    assert refused.exit_code == 2 and "no operating points to fit" in refused.output


def test_lic_decode_levels_writes_previews_and_refuses_what_it_cannot(tmp_path, tiny_weights):
    from click.testing import CliRunner
    from PIL import Image

    from lic_cli.cli import main

    from .conftest import png_bytes, smooth_image

    weights = zoo.export_weights(tiny_model(), "flow", tmp_path / "tiny.pt")
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes(smooth_image(24, 40)))
    runner = CliRunner()

    def lic(*args):
        return runner.invoke(main, [str(a) for a in args])

    coded, flow_weights = tmp_path / "a.lic", f"flow={weights}"
    assert lic("encode", source, "-o", coded, "--model", "flow", "--weights", weights, "-q", 9).exit_code == 0
    for levels in (1, 2, 3):
        result = lic("decode", coded, "-o", tmp_path / f"a{levels}.png", "--levels", levels, "--weights", flow_weights)
        assert result.exit_code == 0, result.output
        assert Image.open(tmp_path / f"a{levels}.png").size == (40, 24)
    too_many = lic("decode", coded, "-o", tmp_path / "b.png", "--levels", 4, "--weights", flow_weights)
    assert too_many.exit_code == 2 and "levels 1-3" in too_many.output
    assert lic("encode", source, "-o", tmp_path / "h.lic", "--weights", tiny_weights).exit_code == 0
    whole = lic("decode", tmp_path / "h.lic", "-o", tmp_path / "h.png", "--levels", 1,
                "--weights", f"hyper={tiny_weights}")
    assert whole.exit_code == 2 and "not progressive" in whole.output
