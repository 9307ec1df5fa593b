import torch
from click.testing import CliRunner

from lic_cli.cli import main
from models import zoo

from .conftest import png_bytes, smooth_image


def test_tiny_training_run_resumes_and_exports_usable_weights(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(10):
        (data / f"{i}.png").write_bytes(png_bytes(smooth_image(80, 96, seed=i)))
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
