import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lic_cli import train
from lic_cli.cli import main
from models import zoo
from models.hyper.loss import rate_distortion_loss
from models.hyper.network import ENCODER_PREFIXES, GAIN_KEYS
from models.hyper.state import grow_latents, retarget_gains

from .conftest import png_bytes, png_folder, smooth_image


@pytest.mark.slow
def test_tiny_training_run_resumes_and_exports_usable_weights(tmp_path):
    data = png_folder(tmp_path / "data", 10, 80, 96)
    out = tmp_path / "run"
    common = ["train", "--model", "hyper", "--data", str(data), "--out", str(out), "--channels", "8",
              "--latent-channels", "8", "--batch-size", "2", "--crop", "64", "--threads", "1", "--eval-every", "2"]
    runner = CliRunner()
    first = runner.invoke(main, common + ["--steps", "2"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    again = runner.invoke(main, common + ["--steps", "3"], catch_exceptions=False)
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(main, common + ["--steps", "3", "--resume"], catch_exceptions=False)
    assert resumed.exit_code == 0 and "resumed" in resumed.output
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 3
    loaded = zoo.load_codec("hyper", out / "hyper.pt")
    assert loaded.card["steps"] == 3 and loaded.card["data"] == str(data)
    exported = runner.invoke(main, ["export", str(out / "last.pt"), "-o", str(tmp_path / "again.pt")],
                             catch_exceptions=False)
    assert exported.exit_code == 0, exported.output
    assert zoo.load_codec("hyper", tmp_path / "again.pt").card["data"] == str(data)  # recorded in last.pt
    encoded = runner.invoke(main, ["encode", str(data / "0.png"), "-o", str(tmp_path / "0.lic"),
                                   "--weights", str(out / "hyper.pt")], catch_exceptions=False)
    assert encoded.exit_code == 0


def test_missing_weights_are_a_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(smooth_image(8, 8)))
    result = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "--weights", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2 and "not found" in result.output


def test_gains_move_to_another_quality_ladder_in_log_lambda():
    state = {"lambdas": torch.tensor([0.001, 0.004]),
             **{key: torch.tensor([[0.0, 1.0], [2.0, 5.0]]) for key in GAIN_KEYS}}
    moved = retarget_gains(state, (0.002, 0.004, 0.016))
    for key in GAIN_KEYS:
        # 0.002 lies halfway (in log) between the trained points, 0.016 one segment beyond the last.
        assert torch.allclose(moved[key], torch.tensor([[1.0, 3.0], [2.0, 5.0], [4.0, 9.0]]))
    assert torch.allclose(moved["lambdas"], torch.tensor([0.002, 0.004, 0.016]))
    assert retarget_gains(state, (0.001, 0.004)) is state


def test_init_from_weights_of_another_ladder_keeps_the_transforms(tmp_path):
    torch.manual_seed(0)
    old = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12, "lambdas": [0.002, 0.008, 0.032]})
    path = zoo.export_weights(old, "hyper", tmp_path / "old.pt")
    new = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12, "lambdas": [0.001, 0.008]})
    new.load_state_dict(zoo.load_network_state(path, "hyper", new))
    assert torch.allclose(new.lambdas, torch.tensor([0.001, 0.008]))
    assert torch.allclose(new.log_gain_y[1], old.log_gain_y[1], atol=1e-3)  # lambda is stored in fp16
    assert torch.equal(new.g_s[0].weight, old.g_s[0].weight.half().float())


def test_grown_latent_reconstructs_exactly_as_before(tmp_path):
    torch.manual_seed(0)
    narrow = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 8})
    path = zoo.export_weights(narrow, "hyper", tmp_path / "narrow.pt")
    narrow.load_state_dict(zoo.load_network_state(path, "hyper", narrow))  # the fp16-rounded weights
    wide = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12, "hyper_width": 8})
    wide.load_state_dict(zoo.load_network_state(path, "hyper", wide))
    x = torch.from_numpy(smooth_image(64, 64)).permute(2, 0, 1)[None].float() / 255
    quality = torch.tensor([5])
    with torch.no_grad():
        before, after = narrow.eval()(x, quality), wide.eval()(x, quality)
    assert torch.allclose(after["x_hat"], before["x_hat"], atol=1e-5)
    assert torch.allclose(after["z_likelihoods"], before["z_likelihoods"])
    assert torch.allclose(after["y_likelihoods"][:, :8], before["y_likelihoods"], atol=1e-6)
    # The new channels are active (they carry values like the trained ones), so training gets
    # gradients for them.
    with torch.no_grad():
        y = wide.g_a(x).abs().mean(dim=(0, 2, 3))
    assert y[8:].mean() > 0.2 * y[:8].mean()
    with pytest.raises(ValueError, match="shrink"):
        grow_latents(wide.state_dict(), narrow)
    with pytest.raises(ValueError, match="hyper-width"):  # the default width follows M: 12, not 8
        zoo.load_network_state(path, "hyper", zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12}))


def test_grown_channels_pay_rate_only_after_the_warmup():
    weights = [train.grown_channel_rate_weights(4, 3, 10, step) for step in (0, 10, 15, 20, 30)]
    assert weights[0].tolist() == [1, 1, 1, 0] and weights[1].tolist() == [1, 1, 1, 0]
    assert weights[2].tolist() == [1, 1, 1, 0.5]
    assert weights[3] is None and weights[4] is None


def test_channel_rate_weights_change_the_loss_not_the_reported_rate():
    torch.manual_seed(0)
    model = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12}).train()
    x, quality = torch.rand(2, 3, 64, 64), torch.tensor([0, 5])
    out = {**model(x, quality), "x_hat": x}  # no distortion: the loss is the rate alone
    full = rate_distortion_loss(model, x, quality, out)
    spared = rate_distortion_loss(model, x, quality, out, torch.tensor([1.0] * 8 + [0.0] * 4))
    assert torch.equal(spared["bpp"], full["bpp"])
    new_channel_bpp = -torch.log2(out["y_likelihoods"][:, 8:]).sum(dim=(1, 2, 3)).mean() / (64 * 64)
    assert torch.allclose(full["loss"] - spared["loss"], new_channel_bpp, rtol=1e-4)


def tiny_init_and_train_args(tmp_path) -> tuple:
    """Random 8-channel hyper weights and the `lic train` arguments of a tiny run on random PNGs."""
    torch.manual_seed(0)
    init = zoo.export_weights(zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 8}), "hyper",
                              tmp_path / "narrow.pt")
    data = png_folder(tmp_path / "data", 10, 80, 96)
    return init, ["train", "--model", "hyper", "--data", str(data), "--out", str(tmp_path / "run"), "--batch-size", "2",
                  "--crop", "64", "--threads", "1"]


@pytest.mark.slow
def test_training_grows_a_narrower_init_into_a_wider_latent(tmp_path):
    init, args = tiny_init_and_train_args(tmp_path)
    common = args + ["--steps", "2", "--grow-warmup", "1"]
    runner = CliRunner()
    no_init = runner.invoke(main, common + ["--latent-channels", "12"])
    assert no_init.exit_code == 2 and "--init" in no_init.output
    same_width = runner.invoke(main, common + ["--latent-channels", "8", "--init", str(init)])
    assert same_width.exit_code == 2 and "wider" in same_width.output
    # The sizes come from --init (N = 8, hyper-synthesis width 8) unless given: only M is widened.
    grown = runner.invoke(main, common + ["--latent-channels", "12", "--init", str(init)], catch_exceptions=False)
    assert grown.exit_code == 0, grown.output
    config = zoo.weight_file_config(tmp_path / "run" / "hyper.pt", "hyper")
    assert (config["channels"], config["latent_channels"], config["hyper_width"]) == (8, 12, 8)
    resumed = runner.invoke(main, common[:-4] + ["--steps", "3", "--resume"], catch_exceptions=False)
    assert resumed.exit_code == 0 and "resumed" in resumed.output  # the checkpoint's sizes, no options
    conflict = runner.invoke(main, common[:-4] + ["--steps", "4", "--resume", "--latent-channels", "16"])
    assert conflict.exit_code == 2 and "drop --latent-channels" in conflict.output


@pytest.mark.slow
def test_training_some_qualities_leaves_the_others_gains_alone(tmp_path):
    init, args = tiny_init_and_train_args(tmp_path)
    common = args + ["--steps", "3", "--lr", "0.05", "--init", str(init)]
    runner = CliRunner()
    outside = runner.invoke(main, common + ["--qualities", "2,7"])
    assert outside.exit_code == 2 and "quality 7" in outside.output
    trained = runner.invoke(main, common + ["--qualities", "6"], catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    before = torch.load(init, weights_only=True)["network"]
    after = torch.load(tmp_path / "run" / "hyper.pt", weights_only=True)["network"]
    for key in GAIN_KEYS:
        assert torch.equal(after[key][:5], before[key][:5])
        assert not torch.equal(after[key][5], before[key][5])


@pytest.mark.slow
def test_frozen_encoder_trains_the_decoder_side_on_exactly_quantized_latents(tmp_path):
    init, args = tiny_init_and_train_args(tmp_path)
    common = args + ["--steps", "3", "--lr", "0.05", "--init", str(init)]
    runner = CliRunner()
    wrong_model = runner.invoke(main, common + ["--freeze-encoder", "--model", "hyper-bb"])
    assert wrong_model.exit_code == 2 and "--freeze-encoder" in wrong_model.output
    trained = runner.invoke(main, common + ["--freeze-encoder"], catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    before = torch.load(init, weights_only=True)["network"]
    after = torch.load(tmp_path / "run" / "hyper.pt", weights_only=True)["network"]
    changed = {key for key in before if not torch.equal(after[key], before[key])}
    assert {"g_s.0.weight", "log_inv_gain_y"} <= changed
    assert not any(key.startswith(ENCODER_PREFIXES) for key in changed)


def test_exact_quantization_trains_on_what_evaluation_measures():
    torch.manual_seed(0)
    model = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 8})
    with torch.no_grad():
        model.h_s[-1].bias[8:] = 2.0  # scales above their lower bound, which would stop their gradient
    x, quality = torch.rand(1, 3, 64, 64), torch.tensor([1])
    model.eval()
    with torch.no_grad():
        evaluated = rate_distortion_loss(model, x, quality, model(x, quality))
    model.train()
    model.exact_quantization = True
    trained = rate_distortion_loss(model, x, quality, model(x, quality))
    assert torch.allclose(trained["loss"], evaluated["loss"])
    trained["loss"].backward()
    means_bias, scales_bias = model.h_s[-1].bias.grad.chunk(2)  # the rounding grid is not learnt
    assert not means_bias.any() and scales_bias.abs().sum() > 0
    assert not model.g_a[0].weight.grad.any()


def test_a_quality_listed_twice_is_drawn_twice_as_often(tmp_path):
    options = train.TrainOptions(model="hyper", data=tmp_path, out=tmp_path,
                                 family=train.family_options("hyper", qualities=(5, 0, 5)))
    assert train.qualities_to_train(options, 6) == [0, 5, 5]


@pytest.mark.slow
def test_cpm_trains_with_mixed_data_reports_ms_ssim_and_resumes(tmp_path):
    photos = png_folder(tmp_path / "photos", 10, 80, 96)
    graphics = png_folder(tmp_path / "graphics", 3, 64, 64)
    out = tmp_path / "run"
    common = ["train", "--model", "cpm", "--data", str(photos), "--mix", str(graphics), "--mix-share", "0.5",
              "--out", str(out), "--channels", "8", "--latent-channels", "6", "--batch-size", "2", "--crop", "64",
              "--threads", "1", "--eval-every", "2"]
    runner = CliRunner()
    first = runner.invoke(main, common + ["--steps", "2"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "mixing in 3 images" in first.output
    assert re.search(r"validation @ step 2: q1: [\d.]+ bpp [\d.]+ dB 0\.\d{4}", first.output)  # MS-SSIM too
    resumed = runner.invoke(main, common + ["--steps", "3", "--resume"], catch_exceptions=False)
    assert resumed.exit_code == 0 and "resumed" in resumed.output
    assert zoo.load_codec("cpm", out / "cpm.pt").card["steps"] == 3
    wrong = runner.invoke(main, common + ["--steps", "3", "--hyper-width", "8", "--out", str(tmp_path / "x")])
    assert wrong.exit_code == 2 and "does not apply to --model cpm" in wrong.output


@pytest.mark.slow
def test_flow_trains_through_the_common_driver_and_resumes(tmp_path):
    photos = png_folder(tmp_path / "photos", 10, 80, 96)
    out = tmp_path / "run"
    common = ["train", "--model", "flow", "--data", str(photos), "--out", str(out), "--batch-size", "2", "--crop",
              "64", "--threads", "1", "--eval-every", "2"]
    runner = CliRunner()
    first = runner.invoke(main, common + ["--steps", "2"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert re.search(r"validation @ step 2: q1: [\d.]+ bpp [\d.]+ dB .* q12: [\d.]+ bpp", first.output)
    resumed = runner.invoke(main, common + ["--steps", "3", "--resume"], catch_exceptions=False)
    assert resumed.exit_code == 0 and "resumed" in resumed.output
    assert zoo.load_codec("flow", out / "flow.pt").card["steps"] == 3
    wrong = runner.invoke(main, common + ["--steps", "3", "--channels", "8", "--out", str(tmp_path / "x")])
    assert wrong.exit_code == 2 and "does not apply to --model flow" in wrong.output


def test_steps_set_the_schedule_and_long_runs_compile():
    options = train.TrainOptions(model="hyper", data=Path("."), out=Path("."), minutes=60, max_steps=400)
    assert train.budget_progress(options, 100, elapsed=3000) == 0.25  # steps, not the clock
    assert not train.wants_compile(options)
    timed = train.TrainOptions(model="hyper", data=Path("."), out=Path("."), minutes=60)
    assert train.budget_progress(timed, 100, elapsed=900) == 0.25
    assert train.wants_compile(timed)
    assert not train.wants_compile(train.TrainOptions(model="hyper", data=Path("."), out=Path("."), minutes=60,
                                                      compile="off"))


def test_a_failing_compiler_falls_back_to_the_eager_pass(monkeypatch):
    def broken_compiler(module):
        def run(*args):
            raise RuntimeError("no C++ compiler\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken_compiler)
    lines = []
    options = train.TrainOptions(model="hyper", data=Path("."), out=Path("."), compile="on")
    run = train.compiled(lambda value: value * 2, options, lines.append)
    assert run(3) == 6 and run(4) == 8
    assert lines == ["torch.compile failed (RuntimeError: no C++ compiler); training without it"]


def test_weight_files_of_both_versions_load_and_unknown_ones_are_refused(tmp_path):
    path = zoo.export_weights(zoo.build_trainable("hyper", zoo.entry("hyper").tiny_config), "hyper", tmp_path / "w.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["version"] == 2 and payload["coding"]["y_tables.counts"].dtype == torch.int16
    new = zoo.load_codec("hyper", path).codec
    old_payload = {**payload, "version": 1,
                   "coding": {k: v.numpy().view(np.uint16).astype(np.int32) if v.dtype == torch.int16 else v
                              for k, v in payload["coding"].items()}}
    old_payload["coding"] = {k: torch.as_tensor(v) for k, v in old_payload["coding"].items()}
    torch.save(old_payload, tmp_path / "old.pt")
    old = zoo.load_codec("hyper", tmp_path / "old.pt").codec
    assert np.array_equal(old.exact.y_coder.tables.counts, new.exact.y_coder.tables.counts)
    torch.save({**payload, "version": 4}, tmp_path / "future.pt")
    with pytest.raises(zoo.WeightsError, match="reads versions 1, 2, 3"):
        zoo.load_codec("hyper", tmp_path / "future.pt")
