import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from lic_cli.cli import main

from .conftest import REPO, png_bytes, smooth_image


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, (h, w) in enumerate([(40, 50), (17, 9), (64, 70)]):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(png_bytes(smooth_image(h, w, seed=i)))
        paths.append(path)
    return paths


def invoke(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_encode_decode_single_file(runner, images, tiny_weights, tmp_path):
    out = tmp_path / "a.lic"
    assert invoke(runner, "encode", images[0], "-o", out, "--weights", tiny_weights, "-q", "2").exit_code == 0
    assert out.read_bytes().startswith(b"\x89LIC")
    result = invoke(runner, "decode", out, "-o", tmp_path / "a.png", "--weights", f"hyper={tiny_weights}")
    assert result.exit_code == 0
    assert Image.open(tmp_path / "a.png").size == (50, 40)


def test_batch_into_directory_and_info(runner, images, tiny_weights, tmp_path):
    result = invoke(runner, "encode", *images, "-o", tmp_path / "out", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    coded = sorted((tmp_path / "out").glob("*.lic"))
    assert [p.stem for p in coded] == ["img0", "img1", "img2"]
    info = invoke(runner, "info", "--json", *coded)
    assert info.exit_code == 0 and info.output.count('"model": "hyper"') == 3
    result = invoke(runner, "decode", *coded, "-o", tmp_path / "dec", "--format", "tiff",
                    "--weights", f"hyper={tiny_weights}")
    assert result.exit_code == 0
    assert len(list((tmp_path / "dec").glob("*.tiff"))) == 3


def test_existing_output_needs_force(runner, images, tiny_weights, tmp_path):
    out = tmp_path / "x.lic"
    out.write_bytes(b"precious")
    result = invoke(runner, "encode", images[0], "-o", out, "--weights", tiny_weights)
    assert result.exit_code == 2 and "exists" in result.output
    assert out.read_bytes() == b"precious"
    assert invoke(runner, "encode", images[0], "-o", out, "--weights", tiny_weights, "--force").exit_code == 0
    assert out.read_bytes() != b"precious"


def test_bad_inputs_give_one_line_errors_and_no_output(runner, images, tiny_weights, tmp_path):
    junk = tmp_path / "junk.lic"
    junk.write_bytes(b"this is not a lic file at all")
    result = invoke(runner, "decode", junk, "-o", tmp_path / "junk.png", "--weights", f"hyper={tiny_weights}")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "not a lic file" in result.output
    assert not (tmp_path / "junk.png").exists()
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    result = invoke(runner, "encode", not_image, "-o", tmp_path / "n.lic", "--weights", tiny_weights)
    assert result.exit_code == 2 and "cannot read image" in result.output
    assert not (tmp_path / "n.lic").exists()
    assert list(tmp_path.glob(".*.part")) == []


def test_truncated_file_is_rejected(runner, images, tiny_weights, tmp_path):
    out = tmp_path / "t.lic"
    invoke(runner, "encode", images[2], "-o", out, "--weights", tiny_weights)
    out.write_bytes(out.read_bytes()[:-10])
    result = invoke(runner, "decode", out, "-o", tmp_path / "t.png", "--weights", f"hyper={tiny_weights}")
    assert result.exit_code == 2 and "checksum" in result.output


def test_quality_out_of_range(runner, images, tiny_weights, tmp_path):
    result = invoke(runner, "encode", images[0], "-o", tmp_path / "q.lic", "-q", "9", "--weights", tiny_weights)
    assert result.exit_code == 2 and "--quality" in result.output


def test_same_output_twice_is_refused(runner, tmp_path, tiny_weights):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "same.png").write_bytes(png_bytes(smooth_image(8, 8)))
    result = invoke(runner, "encode", tmp_path / "a" / "same.png", tmp_path / "b" / "same.png",
                    "-o", tmp_path / "out", "--weights", tiny_weights)
    assert result.exit_code == 2 and "both" in result.output


def test_shell_pipeline_through_stdin_and_stdout(images, tiny_weights, tmp_path):
    """cat a.png | lic encode - -o - | lic decode - -o - > b.png, as real processes."""
    lic = [sys.executable, "-m", "lic_cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    encoded = subprocess.run(lic + ["encode", "-", "-o", "-", "--weights", str(tiny_weights)],
                             input=images[0].read_bytes(), capture_output=True, check=True, env=env)
    assert encoded.stdout.startswith(b"\x89LIC") and encoded.stderr == b""
    decoded = subprocess.run(lic + ["decode", "-", "-o", "-", "--weights", f"hyper={tiny_weights}"],
                             input=encoded.stdout, capture_output=True, check=True, env=env)
    (tmp_path / "b.png").write_bytes(decoded.stdout)
    assert Image.open(tmp_path / "b.png").size == (50, 40)
    failed = subprocess.run(lic + ["decode", "-", "-o", "-"], input=b"garbage", capture_output=True, env=env,
                            check=False)
    assert failed.returncode == 2 and failed.stdout == b""
    assert failed.stderr.decode().count("\n") == 1 and "Traceback" not in failed.stderr.decode()


def test_a_torch_that_cannot_exchange_arrays_with_numpy_is_one_clear_error(runner, monkeypatch, tmp_path):
    import torch

    def unavailable(array):
        raise RuntimeError("Numpy is not available")  # what torch 2.2 raises under NumPy 2

    monkeypatch.setattr(torch, "from_numpy", unavailable)
    result = invoke(runner, "encode", str(tmp_path / "missing.png"), "--engine", "torch")  # (auto: no torch here)
    assert result.exit_code != 0
    assert "install 'numpy<2' or torch 2.3 or later" in result.output
    assert invoke(runner, "info", str(tmp_path / "missing.lic")).exit_code == 2  # info never loads torch
    assert "Traceback" not in result.output
