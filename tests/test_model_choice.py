"""`lic encode --model auto`: per image, the candidate whose file has the lower rate-distortion
cost (tiny random hyper-ctx networks standing in for the default model and its variant)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lic_cli
from lic_cli import model_choice
from lic_cli.cli import main
from lic_cli.codec import CodecSession, decode_file
from lic_cli.imageio import ImageData
from lic_cli.metrics import psnr
from lic_cli.rate_control import Target
from models import zoo

from .conftest import png_bytes, smooth_image

VARIANT = "hyper-ctx-graphics"


def tiny(name: str, seed: int, folder) -> object:
    torch.manual_seed(seed)
    model = zoo.build_trainable(name, zoo.entry(name).tiny_config)
    with torch.no_grad():  # the two candidates must code differently
        for parameter in model.aggregate.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return zoo.export_weights(model, name, folder / f"{name}.pt", {"note": "random init, tests only"})


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("auto")
    return CodecSession({"hyper-ctx": tiny("hyper-ctx", 1, folder), VARIANT: tiny(VARIANT, 2, folder)},
                        compute="fp32")


@pytest.fixture
def candidates(session, monkeypatch):
    loaded = [session.get("hyper-ctx"), session.get(VARIANT)]
    monkeypatch.setattr(model_choice, "candidates", lambda _session: loaded)
    return loaded


def test_the_graphics_model_is_a_variant_of_the_default():
    assert zoo.entry(VARIANT).variant_of == "hyper-ctx"
    assert zoo.auto_candidates("hyper-ctx")[0] == "hyper-ctx"


def test_auto_keeps_the_file_of_lower_rate_distortion_cost(session, candidates):
    image = ImageData(smooth_image(64, 96))
    choice = model_choice.encode_cheapest(image, candidates, 2, session)
    lam = candidates[0].codec.lambda_at(2)
    for item in candidates:
        from lic_cli.codec import encode_image

        own = model_choice.rate_distortion_cost(image, encode_image(image, item, 2), lam, session)
        assert choice.costs[item.name] == pytest.approx(own)
        assert choice.costs[choice.model] <= own
    assert decode_file(choice.data, session).image.pixels.shape == (64, 96, 3)


def test_auto_within_a_budget_keeps_the_file_of_higher_psnr(session, candidates):
    image = ImageData(smooth_image(64, 96))
    target = Target("size", 2000)
    achieved, chosen = model_choice.encode_to_target_cheapest(image, candidates, target, session)
    quality = {}
    for item in candidates:
        data = model_choice.encode_to_target(image, item, target, session).data
        quality[item.name] = psnr(image.pixels, decode_file(data, session).image.pixels)
    assert len(achieved.data) <= 2000 and quality[chosen] == max(quality.values())


def test_lic_encode_model_auto_names_its_choice_and_info_reads_it(session, candidates, tmp_path, monkeypatch):
    monkeypatch.setattr("lic_cli.codec.CodecSession", lambda *args, **kwargs: session)
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes(smooth_image(64, 96)))
    result = CliRunner().invoke(main, ["encode", str(source), "-o", str(tmp_path / "a.lic"), "--model", "auto",
                                       "-q", "3", "-v"])
    assert result.exit_code == 0, result.output
    chosen = next(name for name in ("hyper-ctx-graphics", "hyper-ctx") if f"bpp, {name} (R-D cost" in result.output)
    info = CliRunner().invoke(main, ["info", str(tmp_path / "a.lic")])
    assert chosen in info.output
    refused = CliRunner().invoke(main, ["encode", str(source), "-o", str(tmp_path / "b.lic"), "--model", "auto",
                                        "--refine", "sga"])
    assert refused.exit_code == 2 and "--model auto" in refused.output


def test_the_python_api_takes_model_auto(session, candidates, monkeypatch):
    monkeypatch.setattr("lic_cli.api._session", lambda *args, **kwargs: session)
    data = lic_cli.encode(smooth_image(64, 96), model="auto", quality=2)
    assert np.asarray(lic_cli.decode(data, weights={name: item.path for name, item in
                                                    (("hyper-ctx", candidates[0]), (VARIANT, candidates[1]))})).shape \
        == (64, 96, 3)


def test_lic_encode_model_auto_takes_a_variant_from_weights(session, tmp_path):
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes(smooth_image(64, 96)))
    default, variant = session.weights["hyper-ctx"], session.weights[VARIANT]
    result = CliRunner().invoke(main, ["encode", str(source), "-o", str(tmp_path / "a.lic"), "--model", "auto",
                                       "--weights", f"hyper-ctx={default}", "--weights", str(variant), "-v"])
    assert result.exit_code == 0, result.output
    assert f"{VARIANT} " in result.output.split("R-D cost")[1] and "hyper-ctx " in result.output.split("R-D cost")[1]
    refused = CliRunner().invoke(main, ["encode", str(source), "-o", str(tmp_path / "b.lic"), "--model", "auto",
                                        "--weights", f"gc-c4={zoo.default_weights_path('gc-c4')}"])
    assert refused.exit_code == 2 and "variants" in refused.output and "gc-c4" in refused.output


def test_auto_takes_the_default_model_and_its_variants_only():
    # lic bench hands auto every --weights file and keeps only these (bench/runner.py)
    assert model_choice.is_candidate("hyper-ctx") and model_choice.is_candidate(VARIANT)
    assert not model_choice.is_candidate("flow") and not model_choice.is_candidate("no-such-model")
