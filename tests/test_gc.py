"""Generative compression (gc-cN) logic with tiny random models: quantizer, exact probabilities,
both entropy coders of W, any image size, deterministic decoding, CLI round trip, training."""
import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bitstream.container import FormatError
from bitstream.tables import TOTAL
from lic_cli.cli import main
from models import zoo
from models.core import fixedpoint
from models.gc.coding import static_counts
from models.gc.context import quantize
from models.gc.network import ChannelNorm2d, GcConfig, GenerativeCompression, latent_size
from models.interface import Geometry

from .conftest import png_bytes, png_folder, smooth_image


@pytest.fixture(scope="module")
def tiny_gc_weights(tmp_path_factory):
    torch.manual_seed(99)
    model = zoo.build_trainable("gc-c4", {"width": 32, "residual_blocks": 2, "context_width": 8})
    path = tmp_path_factory.mktemp("weights") / "tiny-gc.pt"
    return zoo.export_weights(model, "gc-c4", path, {"note": "random init, tests only"})


@pytest.fixture(scope="module")
def codec(tiny_gc_weights):
    return zoo.load_codec("gc-c4", tiny_gc_weights).codec


def test_quantizer_is_hard_forward_and_soft_backward():
    w = torch.tensor([-3.2, -1.6, -0.2, 0.49, 0.51, 7.0], requires_grad=True)
    w_hat, symbols = quantize(w)
    assert w_hat.tolist() == [-2.0, -2.0, 0.0, 0.0, 1.0, 2.0]
    assert symbols.tolist() == [0, 0, 2, 2, 3, 4]
    w_hat.sum().backward()
    assert torch.all(torch.isfinite(w.grad)) and w.grad.abs().sum() > 0


def test_integer_softmax_gives_valid_ordered_counts():
    rng = np.random.default_rng(0)
    logits = np.round(rng.normal(0, 8, size=(1000, 5)) * 256) / 256
    logits[0] = [100, -100, 0, 0, 0]
    counts = fixedpoint.integer_softmax(logits)
    assert np.all(counts.sum(axis=1) == TOTAL) and np.all(counts >= 1)
    steps = np.floor(logits * 16)
    smaller_logit = steps[:, :, None] < steps[:, None, :]
    assert not np.any(smaller_logit & (counts[:, :, None] > counts[:, None, :]))


def test_static_counts_are_valid():
    symbols = np.zeros((3, 4, 5), dtype=np.int64)
    symbols[1] = 4
    counts = static_counts(symbols)
    assert np.all(counts.sum(axis=1) == TOTAL) and np.all(counts >= 1)
    assert counts[0, 0] > 60000 and counts[1, 4] > 60000


@pytest.mark.parametrize("height, width", [(1, 1), (17, 50), (64, 64), (100, 37)])
def test_both_coders_round_trip_any_size(codec, height, width):
    image = torch.from_numpy(smooth_image(height, width)).permute(2, 0, 1).float() / 255
    symbols = codec.symbols(image)
    assert symbols.shape[1:] == latent_size(height, width)
    reference = codec.synthesise(symbols, height, width, pixels=True)
    for payload in (codec.latent_coder.encode_static(symbols), codec.latent_coder.encode_context(symbols)):
        decoded = codec.decode({"latent": payload}, Geometry(height, width), 0)
        assert decoded.shape == (3, height, width) and torch.equal(decoded, reference)


def test_decoding_is_identical_across_threads(codec):
    image = torch.from_numpy(smooth_image(48, 80, seed=3)).permute(2, 0, 1).float() / 255
    payload = codec.encode(image, 0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.decode(payload, Geometry(48, 80), 0)
        torch.set_num_threads(2)
        two = codec.decode(payload, Geometry(48, 80), 0)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


@pytest.mark.parametrize("payload, message", [
    (b"", "empty"), (b"\x07abcd", "mode"), (b"\x00" + b"\x00" * 40, "frequency table"),
])
def test_corrupt_latent_payloads_are_clear_errors(codec, payload, message):
    with pytest.raises(FormatError, match=message):
        codec.decode({"latent": payload}, Geometry(32, 32), 0)


def test_cli_round_trip_and_untrained_model_error(tmp_path, tiny_gc_weights, monkeypatch):
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes(smooth_image(40, 56)))
    runner = CliRunner()
    result = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "a.lic"), "--model", "gc-c4",
                                  "--weights", str(tiny_gc_weights)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["decode", str(tmp_path / "a.lic"), "-o", str(tmp_path / "b.png"),
                                  "--weights", f"gc-c4={tiny_gc_weights}"])
    assert result.exit_code == 0, result.output
    # A registered model whose weights are not committed yet says how to train it (on torch: the
    # runtime finds weights by their installed path, which this test cannot take away).
    unshipped = dataclasses.replace(zoo.ZOO["gc-c8"], shipped=False, weight_file="not-committed.pt")
    monkeypatch.setitem(zoo.ZOO, "gc-c8", unshipped)
    result = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "c.lic"), "--model", "gc-c8",
                                  "--engine", "torch"])
    assert result.exit_code == 2 and "not trained yet" in result.output and "lic train" in result.output


class QuietReporter:
    def log(self, message):
        pass

    def step(self, *args):
        pass


@pytest.mark.slow
def test_training_runs_and_resumes(tmp_path):
    from lic_cli.train import TrainOptions, family_options
    from lic_cli.train_gan import train_gan
    data = png_folder(tmp_path / "data", 3, 96, 96)
    options = TrainOptions(model="gc-c4", data=data, out=tmp_path / "run", val=data, minutes=10, max_steps=3,
                           batch_size=2, crop=64, config_overrides={"width": 32, "residual_blocks": 1,
                                                                    "context_width": 8},
                           family=family_options("gc-c4", gan_after=0.0), eval_every=100, precision="fp32")
    checkpoint = train_gan(options, QuietReporter())
    options.resume, options.max_steps = True, 5
    train_gan(options, QuietReporter())
    assert torch.load(checkpoint, weights_only=True)["step"] == 5


def test_a_model_with_another_bottleneck_starts_from_trained_weights(tiny_gc_weights):
    source = zoo.load_codec("gc-c4", tiny_gc_weights).codec.model
    for name, channels in (("gc-c2", 2), ("gc-c8", 8), ("gc-c4-mse", 4)):
        target = zoo.build_trainable(name, {"width": 32, "residual_blocks": 2, "context_width": 8})
        target.load_state_dict(zoo.load_network_state(tiny_gc_weights, name, target))
        kept = min(channels, 4)
        assert torch.equal(target.encoder[-1].weight[:kept], source.encoder[-1].weight[:kept])
        assert torch.equal(target.generator[0].weight[:, :kept], source.generator[0].weight[:, :kept])
        assert torch.equal(target.generator[3].body[0].weight, source.generator[3].body[0].weight)
    wider = zoo.build_trainable("gc-c2", {"width": 64, "residual_blocks": 2, "context_width": 8})
    with pytest.raises(ValueError, match="different width"):
        zoo.load_network_state(tiny_gc_weights, "gc-c2", wider)


@pytest.mark.slow
def test_gan_fine_tune_from_another_model_keeps_its_discriminator_on_resume(tmp_path, tiny_gc_weights):
    from lic_cli.train import TrainOptions, family_options
    from lic_cli.train_gan import train_gan
    data = png_folder(tmp_path / "data", 2, 64, 64)
    options = TrainOptions(model="gc-c2", data=data, out=tmp_path / "run", val=data, minutes=10, max_steps=2,
                           batch_size=1, crop=64, config_overrides={"width": 32, "residual_blocks": 2,
                                                                    "context_width": 8},
                           family=family_options("gc-c2", gan_after=0.0, discriminator_width=8), eval_every=100,
                           precision="fp32", init_weights=tiny_gc_weights)
    checkpoint = train_gan(options, QuietReporter())
    options.resume, options.max_steps = True, 3
    options.family = family_options("gc-c2", gan_after=0.0, discriminator_width=64)
    train_gan(options, QuietReporter())
    state = torch.load(checkpoint, weights_only=True)
    assert state["step"] == 3 and state["discriminator_width"] == 8


def test_channel_norm_lets_global_colour_reach_the_latent_and_instance_norm_does_not():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 0.5
    brighter = x * 1.5 + 0.2
    for norm, invariant in (("channel", False), ("instance", True)):
        model = GenerativeCompression(GcConfig(width=32, residual_blocks=1, context_width=8, norm=norm))
        with torch.no_grad():
            change = (model.encoder(x * 2 - 1) - model.encoder(brighter * 2 - 1)).abs().max()
        assert (change < 1e-3) == invariant, (norm, float(change))


def test_channel_norm_normalises_each_pixel_over_channels():
    norm = ChannelNorm2d(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    mean = x.mean(dim=1, keepdim=True)
    expected = (x - mean) / torch.sqrt(x.var(dim=1, unbiased=False, keepdim=True) + norm.eps) * norm.weight + norm.bias
    assert torch.allclose(norm(x), expected, atol=1e-5)
