import torch
from click.testing import CliRunner

from lic_cli.cli import main
from models import hyper, zoo

from .conftest import png_bytes, png_folder, smooth_image


def test_tiny_training_run_resumes_and_exports_usable_weights(tmp_path):
    data = png_folder(tmp_path / "data", 10, 80, 96)
    out = tmp_path / "run"
    common = ["train", "--data", str(data), "--out", str(out), "--channels", "8", "--latent-channels", "8",
              "--batch-size", "2", "--crop", "64", "--threads", "1", "--eval-every", "2"]
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
    assert loaded.card["steps"] == 3
    encoded = runner.invoke(main, ["encode", str(data / "0.png"), "-o", str(tmp_path / "0.lic"),
                                   "--weights", str(out / "hyper.pt")], catch_exceptions=False)
    assert encoded.exit_code == 0


def test_missing_weights_are_a_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(smooth_image(8, 8)))
    result = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "--weights", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2 and "not found" in result.output


def test_gains_move_to_another_quality_ladder_in_log_lambda():
    state = {"lambdas": torch.tensor([0.001, 0.004]),
             **{key: torch.tensor([[0.0, 1.0], [2.0, 5.0]]) for key in hyper.GAIN_KEYS}}
    moved = hyper.retarget_gains(state, (0.002, 0.004, 0.016))
    for key in hyper.GAIN_KEYS:
        # 0.002 lies halfway (in log) between the trained points, 0.016 one segment beyond the last.
        assert torch.allclose(moved[key], torch.tensor([[1.0, 3.0], [2.0, 5.0], [4.0, 9.0]]))
    assert torch.allclose(moved["lambdas"], torch.tensor([0.002, 0.004, 0.016]))
    assert hyper.retarget_gains(state, (0.001, 0.004)) is state


def test_init_from_weights_of_another_ladder_keeps_the_transforms(tmp_path):
    torch.manual_seed(0)
    old = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12, "lambdas": [0.002, 0.008, 0.032]})
    path = zoo.export_weights(old, "hyper", tmp_path / "old.pt")
    new = zoo.build_trainable("hyper", {"channels": 8, "latent_channels": 12, "lambdas": [0.001, 0.008]})
    new.load_state_dict(zoo.load_network_state(path, "hyper", new))
    assert torch.allclose(new.lambdas, torch.tensor([0.001, 0.008]))
    assert torch.allclose(new.log_gain_y[1], old.log_gain_y[1], atol=1e-3)  # lambda is stored in fp16
    assert torch.equal(new.g_s[0].weight, old.g_s[0].weight.half().float())
