import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lic_cli.cli import main
from models.core.annealing import sga_round, temperature
from models.hyper.sga import refine
from models.interface import Geometry, RefineOptions

from .conftest import png_bytes, smooth_image


def test_temperature_holds_then_anneals():
    assert temperature(0, 2000) == 0.5 and temperature(700, 2000) == 0.5
    assert temperature(1999, 2000) == pytest.approx(0.5 * np.exp(-2.6), rel=0.01)
    assert temperature(1000, 2000) < temperature(800, 2000)


def test_sga_rounding_stays_between_neighbours_and_hardens_when_cold():
    generator = torch.Generator().manual_seed(0)
    values = torch.linspace(-3.3, 4.8, 500)
    warm = sga_round(values, 0.5, generator)
    assert torch.all(warm >= torch.floor(values)) and torch.all(warm <= torch.floor(values) + 1)
    near_integer = torch.tensor([2.02, -0.97, 5.99])
    cold = sga_round(near_integer, 0.01, generator)
    assert torch.allclose(cold, torch.round(near_integer), atol=1e-3)


def test_refinement_is_never_worse_and_its_latents_decode(tiny_codec):
    codec = tiny_codec.codec
    image = torch.from_numpy(smooth_image(40, 56)).permute(2, 0, 1).float() / 255
    result = refine(codec, image, 2, RefineOptions(steps=12, evaluate_every=4))
    assert result.best_loss <= result.initial_loss
    assert [step for step, _ in result.history] == [0, 4, 8, 12]
    sections = codec.encode_latents(result.z_hat, result.residuals, 2)
    decoded = codec.decode(sections, Geometry(40, 56), 2)
    assert decoded.shape == (3, 40, 56)


def test_time_budget_stops_refinement(tiny_codec):
    image = torch.rand(3, 32, 32)
    result = refine(tiny_codec.codec, image, 0, RefineOptions(steps=10_000, seconds=0.0))
    assert result.steps == 0 and result.best_loss == result.initial_loss


def test_cli_refine_sga_writes_a_decodable_file(tmp_path, tiny_weights):
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes(smooth_image(30, 30)))
    runner = CliRunner()
    encoded = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "a.lic"), "--weights", str(tiny_weights),
                                   "--refine", "sga", "--steps", "3"], catch_exceptions=False)
    assert encoded.exit_code == 0, encoded.output
    decoded = runner.invoke(main, ["decode", str(tmp_path / "a.lic"), "-o", str(tmp_path / "b.png"),
                                   "--weights", f"hyper={tiny_weights}"], catch_exceptions=False)
    assert decoded.exit_code == 0
