"""hyper-ctx: the channel-conditional checkerboard context model on hyper's latents."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lic_cli.cli import main
from models import zoo
from models.core.tiles import Tiles
from models.hyper import exact
from models.hyper.context import ContextHyperprior, anchor_mask
from models.hyper.exact import cross_context
from models.interface import PLAIN, Geometry

from .conftest import png_folder, smooth_image

TINY = zoo.entry("hyper-ctx").tiny_config


def tiny_model(seed: int = 3, context: bool = True) -> ContextHyperprior:
    """A tiny hyper-ctx whose context model is switched on (random last layers; a fresh one adds 0)."""
    torch.manual_seed(seed)
    model = zoo.build_trainable("hyper-ctx", TINY)
    if context:
        with torch.no_grad():
            for network in model.aggregate:
                network[-1].weight.normal_(0, 0.05)
                network[-1].bias.normal_(0, 0.05)
    return model.eval()


def codec_of(model, tmp_path):
    path = zoo.export_weights(model, "hyper-ctx", tmp_path / "tiny-ctx.pt")
    return zoo.load_codec("hyper-ctx", path).codec


def image(height: int, width: int) -> torch.Tensor:
    return torch.from_numpy(smooth_image(height, width, seed=5)).permute(2, 0, 1).contiguous()


def test_context_passes_round_trip_and_every_pass_is_used(tmp_path):
    codec = codec_of(tiny_model(), tmp_path)
    pixels = image(96, 160)
    sections = codec.encode(pixels, 5, PLAIN)
    geometry = Geometry(96, 160)
    decoded = codec.decode(sections, geometry, 5)
    z_hat, residuals = codec.decode_symbols(sections, geometry, 5)
    y, z = codec.analyse(pixels, 5)
    assert np.array_equal(z_hat, torch.round(z).numpy().astype(np.int64))
    # The decoder's residuals are the encoder's: y rounded around the exact means, pass by pass.
    latents = y.double().flatten(2)[0].numpy()
    _, means = codec.exact.traverse(codec.exact.hyper_features(z_hat, 5)[0],
                                    lambda m, ids, channels, positions: np.round(latents[slice(*channels), positions]
                                                                                 - m).astype(np.int64))
    assert np.array_equal(residuals, np.round(y.double().numpy() - means).astype(np.int64))
    assert decoded.shape == (3, 96, 160) and decoded.dtype == torch.uint8


def test_a_fresh_context_model_codes_exactly_what_hyper_does(tmp_path):
    torch.manual_seed(11)
    hyper_model = zoo.build_trainable("hyper", {k: v for k, v in TINY.items() if k in ("channels", "latent_channels",
                                                                                       "hyper_width")})
    hyper_path = zoo.export_weights(hyper_model, "hyper", tmp_path / "tiny-hyper.pt")
    target = zoo.build_trainable("hyper-ctx", TINY)
    target.load_state_dict(zoo.load_network_state(hyper_path, "hyper-ctx", target))
    context_codec = codec_of(target.eval(), tmp_path)
    hyper_codec = zoo.load_codec("hyper", hyper_path).codec
    pixels = image(70, 90)
    geometry = Geometry(70, 90)
    ours = context_codec.decode_symbols(context_codec.encode(pixels, 2, PLAIN), geometry, 2)
    theirs = hyper_codec.decode_symbols(hyper_codec.encode(pixels, 2, PLAIN), geometry, 2)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_bands_of_latent_rows_code_as_the_whole_image(tmp_path, monkeypatch):
    codec = codec_of(tiny_model(), tmp_path)
    pixels = image(150, 40)  # 10 latent rows
    whole = codec.encode(pixels, 3, PLAIN)
    decoded = codec.decode(whole, Geometry(150, 40), 3)
    monkeypatch.setattr(exact, "NEIGHBOUR_TILES", Tiles(core=3, margin=exact.SPATIAL_REACH))
    monkeypatch.setattr(exact, "POSITION_CHUNK", 7)
    assert codec.encode(pixels, 3, PLAIN) == whole
    assert torch.equal(codec.decode(whole, Geometry(150, 40), 3), decoded)


def test_the_cross_taps_give_the_spatial_convolution_exactly():
    from models.runtime import fixed

    torch.manual_seed(4)
    conv = torch.nn.Conv2d(5, 3, 3, padding=1)
    layer = fixed.layer_from({"c.weight": conv.weight.detach().numpy(), "c.bias": conv.bias.detach().numpy()}, "c",
                             padding=1)
    height, width = 7, 6
    latents = np.round(np.random.default_rng(4).normal(size=(5, height * width)) * 3 * 256) / 256
    anchors = anchor_mask(height, width).flatten().numpy()
    latents[:, ~anchors] = 0  # what a decoder holds before the second pass
    full = fixed.run([layer], latents.reshape(5, height, width)).reshape(3, -1)
    others = np.flatnonzero(~anchors)
    padded = fixed.snap_array(np.pad(latents.reshape(5, height, width), ((0, 0), (1, 1), (1, 1))))
    assert np.array_equal(cross_context(layer, padded, others, width), full[:, others])


def test_the_float_model_predicts_what_the_coder_pays(tmp_path):
    model = tiny_model()
    codec = codec_of(model, tmp_path)
    pixels = image(128, 128)
    bits = 8 * len(codec.encode(pixels, 4, PLAIN)["latent"])
    with torch.no_grad():
        out = model(pixels[None].float() / 255, torch.tensor([4]))
    estimated = float(-torch.log2(out["y_likelihoods"]).sum())
    assert bits == pytest.approx(estimated, rel=0.1, abs=64)


def test_stage_one_trains_the_context_model_alone(tmp_path):
    torch.manual_seed(2)
    hyper_model = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12, "hyper_width": 8})
    init = zoo.export_weights(hyper_model, "hyper", tmp_path / "init.pt")
    data = png_folder(tmp_path / "data", 10, 80, 96)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", "--model", "hyper-ctx", "--init", str(init), "--freeze-transforms", "--data", str(data),
        "--out", str(out), "--batch-size", "2", "--crop", "64", "--steps", "3", "--threads", "1", "--lr", "1e-2"])
    assert result.exit_code == 0, result.output
    trained = zoo.build_trainable("hyper-ctx", zoo.weight_file_config(out / "hyper-ctx.pt", "hyper-ctx"))
    trained.load_state_dict(zoo.load_network_state(out / "hyper-ctx.pt", "hyper-ctx", trained))
    start = hyper_model.state_dict()
    for name, value in trained.state_dict().items():
        if name.startswith(("spatial.", "neighbours.", "aggregate.")):
            continue
        assert torch.allclose(value, start[name].to(value.dtype), atol=1e-3), name  # fp16 in the file
    assert float(trained.aggregate[0][-1].weight.detach().abs().max()) > 0  # the context model learnt


def test_context_lr_gives_the_context_model_its_own_rate(tmp_path):
    from lic_cli.train import RateDistortionStep, TrainOptions, family_options, parameter_groups

    model = zoo.build_trainable("hyper-ctx", TINY)
    options = TrainOptions(model="hyper-ctx", data=tmp_path, out=tmp_path, lr=1e-4,
                           family=family_options("hyper-ctx", context_lr=2e-3))
    trainable = list(model.parameters())
    optimizer = torch.optim.Adam(parameter_groups(options, model, trainable), lr=options.lr)
    RateDistortionStep(model, model, optimizer, trainable).set_learning_rate(5e-5)
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert [rates[id(p)] for p in model.context_parameters()] == pytest.approx([1e-3] * len(model.context_parameters()))
    assert rates[id(model.g_a[0].weight)] == pytest.approx(5e-5)
    assert len(rates) == len(trainable)


def test_context_lr_is_refused_with_frozen_transforms(tmp_path):
    result = CliRunner().invoke(main, [
        "train", "--model", "hyper-ctx", "--freeze-transforms", "--context-lr", "1e-3", "--data", str(tmp_path),
        "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--context-lr" in result.output


def test_sga_through_the_context_model_never_does_worse_and_decodes(tmp_path):
    from models.interface import EncodeOptions, RefineOptions

    codec = codec_of(tiny_model(), tmp_path)
    pixels = image(64, 96)
    progress = []
    options = EncodeOptions(refine=RefineOptions(steps=20, evaluate_every=5),
                            on_progress=lambda step, best: progress.append(best))
    refined = codec.encode(pixels, 2, options)
    plain = codec.encode(pixels, 2, PLAIN)
    decoded = codec.decode(refined, Geometry(64, 96), 2)
    assert decoded.shape == (3, 64, 96)
    assert len(progress) == 4 and progress == sorted(progress, reverse=True)  # the best loss only falls

    def loss(sections) -> float:
        x_hat = codec.decode(sections, Geometry(64, 96), 2).float()
        bits = 8 * sum(len(v) for v in sections.values())
        return bits / (64 * 96) + float(codec.model.lambdas[2]) * float(((x_hat - pixels.float()) ** 2).mean())

    assert loss(refined) <= loss(plain) * 1.02  # ideal code lengths guide the search; real bytes follow


def test_decoding_does_not_depend_on_the_thread_count(tmp_path):
    codec = codec_of(tiny_model(seed=8), tmp_path)
    sections = codec.encode(image(80, 112), 4, PLAIN)
    threads = torch.get_num_threads()
    try:
        decoded = []
        for count in (1, 2):
            torch.set_num_threads(count)
            decoded.append((codec.decode_symbols(sections, Geometry(80, 112), 4), codec.decode(sections,
                                                                                               Geometry(80, 112), 4)))
    finally:
        torch.set_num_threads(threads)
    (symbols_1, pixels_1), (symbols_2, pixels_2) = decoded
    assert all(np.array_equal(a, b) for a, b in zip(symbols_1, symbols_2, strict=True))
    assert torch.equal(pixels_1, pixels_2)


# The instruction-set caps of benchmarks/experiments/cpu_kinds.py: PyTorch, oneDNN and MKL limited to
# what an AVX2-only or an SSE4 CPU offers, each in its own process.
CPU_KINDS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse4": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
DECODE_SYMBOLS = """
import hashlib, sys
from pathlib import Path
import torch
from models import zoo
from models.interface import Geometry
weights, sections = Path(sys.argv[1]), Path(sys.argv[2])
codec = zoo.load_codec("hyper-ctx", weights).codec
coded = {name: (sections / name).read_bytes() for name in ("hyperlatent", "latent")}
digest = hashlib.sha256()
for tensor in codec.entropy_decode(coded, Geometry(80, 112), 4):
    digest.update(tensor.contiguous().numpy().tobytes())
print(digest.hexdigest())
"""


def test_cpu_kinds_select_the_same_tables(tmp_path):
    """Every value that selects a CDF (z_hat, the residuals, the exact means of every pass) decodes
    bit for bit the same when the kernels are limited to AVX2 or to SSE4."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    weights = zoo.export_weights(tiny_model(seed=9), "hyper-ctx", tmp_path / "tiny-ctx.pt")
    codec = zoo.load_codec("hyper-ctx", weights).codec
    for name, data in codec.encode(image(80, 112), 4, PLAIN).items():
        (tmp_path / name).write_bytes(data)
    root = Path(__file__).resolve().parents[1]
    digests = {}
    for kind, caps in CPU_KINDS.items():
        run = subprocess.run([sys.executable, "-c", DECODE_SYMBOLS, str(weights), str(tmp_path)], check=False,
                             cwd=root, env={**os.environ, **caps}, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        digests[kind] = run.stdout.strip()
    assert len(set(digests.values())) == 1, digests
