"""Hostile and unusual input: bombs, oversized or multi-frame images, interrupted runs, output
files and the small things that break scripts."""
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from lic_cli import codec, files
from lic_cli.cli import main
from lic_cli.imageio import ImageReadError, read_image

from .conftest import png_bytes, smooth_image

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(smooth_image(40, 56)))
    return path


def lic(runner, *args):
    return runner.invoke(main, [str(a) for a in args])


def regression_corpus() -> dict[Path, str]:
    """File -> a phrase its one-line error must contain: the made bombs (corpus/regenerate.py) and
    what fuzz runs found (corpus/found/, from benchmarks/fuzz.py)."""
    cases = {}
    for folder in (CORPUS, CORPUS / "found"):
        expected = json.loads((folder / "expected.json").read_text())
        cases.update({folder / name: phrase for name, phrase in expected.items()})
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(regression_corpus()), ids=lambda path: path.name)
def test_the_regression_corpus_is_refused_in_one_line(runner, tmp_path, path):
    expected = regression_corpus()[path]
    result = lic(runner, "decode", path, "-o", tmp_path / "out.png")
    assert result.exit_code == 2 and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(runner, photo, tiny_weights, tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        result = lic(runner, "encode", photo, "-o", tmp_path / "a.lic", "--weights", tiny_weights)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.lic").stat().st_mode & 0o777 == mode


def test_a_multi_frame_input_needs_a_chosen_frame(runner, tiny_weights, tmp_path):
    frames = [Image.fromarray(smooth_image(24, 32, seed=s)) for s in range(3)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    refused = lic(runner, "encode", gif, "-o", tmp_path / "a.lic", "--weights", tiny_weights)
    assert refused.exit_code == 2 and "3 frames" in refused.output and "--frame" in refused.output
    chosen = lic(runner, "encode", gif, "-o", tmp_path / "a.lic", "--weights", tiny_weights, "--frame", "2")
    assert chosen.exit_code == 0, chosen.output
    assert lic(runner, "encode", gif, "-o", tmp_path / "b.lic", "--frame", "3").exit_code == 2


def test_an_image_over_the_pixel_limit_is_refused_from_its_header_without_pillow_warnings():
    buffer = io.BytesIO()
    Image.new("1", (6000, 6000)).save(buffer, "PNG")  # 36 Mpx: between Pillow's limit and twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageReadError, match="exceeds the limit"):
            read_image(buffer.getvalue())


def test_max_pixels_refuses_before_coding(runner, photo, tiny_weights, tmp_path):
    refused = lic(runner, "encode", photo, "-o", tmp_path / "a.lic", "--weights", tiny_weights, "--max-pixels", 1000)
    assert refused.exit_code == 2 and "--max-pixels" in refused.output
    assert lic(runner, "encode", photo, "-o", tmp_path / "a.lic", "--weights", tiny_weights).exit_code == 0
    refused = lic(runner, "decode", tmp_path / "a.lic", "-o", tmp_path / "a.png", "--weights",
                  f"hyper={tiny_weights}", "--max-pixels", 1000)
    assert refused.exit_code == 2 and "56x40" in refused.output and "--max-pixels" in refused.output
    assert not (tmp_path / "a.png").exists()


def test_an_output_format_lic_cannot_write_is_refused_before_decoding(runner, photo, tiny_weights, tmp_path,
                                                                       monkeypatch):
    assert lic(runner, "encode", photo, "-o", tmp_path / "a.lic", "--weights", tiny_weights).exit_code == 0

    def must_not_run(*args, **kwargs):
        raise AssertionError("decoded although the output cannot be written")

    monkeypatch.setattr(codec, "decode_file", must_not_run)
    result = lic(runner, "decode", tmp_path / "a.lic", "-o", tmp_path / "out.jpg")
    assert result.exit_code == 2 and "'.jpg'" in result.output


def test_a_refused_batch_leaves_no_output_folder(runner, tiny_weights, tmp_path):
    result = lic(runner, "encode", tmp_path / "missing1.png", tmp_path / "missing2.png", "-o",
                 tmp_path / "coded" / "", "--weights", tiny_weights)
    assert result.exit_code == 2 and not (tmp_path / "coded").exists()


def test_a_write_error_names_the_output_not_a_temporary_file(runner, photo, tiny_weights, tmp_path):
    (tmp_path / "plain-file").write_bytes(b"")
    target = tmp_path / "plain-file" / "a.lic"
    result = lic(runner, "encode", photo, "-o", target, "--weights", tiny_weights)
    assert result.exit_code == 2 and str(target) in result.output and ".part" not in result.output


def test_binary_output_is_not_written_to_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    with pytest.raises(files.PlanError, match="terminal"):
        files.plan_jobs(("a.png",), "-", ".lic", force=False)


def test_version_help_and_info_do_not_load_torch(tmp_path):
    code = ("import sys; from lic_cli.cli import main\n"
            "for args in (['--version'], ['--help'], ['encode', '--help'], ['info', sys.argv[1]]):\n"
            "    try:\n"
            "        main(args, standalone_mode=False)\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('torch' in sys.modules)")
    (tmp_path / "x.lic").write_bytes(b"not a lic file")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.lic")], check=True, capture_output=True,
                            text=True)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_exit_status_130(photo, tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "lic_cli", "encode", str(photo), "-o", str(tmp_path / "a.lic"),
                                "--refine", "sga", "--steps", "100000"], stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=60)
    assert process.returncode == 130
    assert error.strip().startswith("lic: interrupted") and len(error.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.lic")) and not list(tmp_path.glob(".*.part"))
