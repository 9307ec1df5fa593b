import csv
import json
from concurrent.futures import Future

import numpy as np
import pytest
from click.testing import CliRunner

from lic_cli.bench import codecs as bench_codecs
from lic_cli.bench import runner
from lic_cli.cli import main
from lic_cli.metrics import haarpsi

from .conftest import png_folder, smooth_image


@pytest.fixture
def folder(tmp_path):
    return png_folder(tmp_path / "images", 2, 48, 64)


def run_bench(folder, out, tiny_weights, *extra):
    args = ["bench", str(folder), "--models", "hyper", "--weights", f"hyper={tiny_weights}", "--codecs", "jpeg,webp",
            "--anchor", "jpeg", "--out", str(out), "--threads", "1", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_bench_writes_real_points_and_resumes_from_cache(folder, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = run_bench(folder, out, tiny_weights)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["curves"]) == {"jpeg", "webp", "lic-hyper"}
    assert summary["bd_rate"]["jpeg"]["psnr"] == pytest.approx(0.0, abs=1e-9)
    with (out / "points.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    settings = len(bench_codecs.QUALITIES) + len(bench_codecs.WEBP_QUALITIES) + 6  # jpeg, webp, lic-hyper
    assert len(rows) == 2 * settings
    lic_row = next(r for r in rows if r["codec"] == "lic-hyper")
    assert int(lic_row["bytes"]) > 35  # a whole container, header included
    cached = sorted(out.glob("cache/*/*/*.json"))
    assert len(cached) == len(rows)
    marker = json.loads(cached[0].read_text())
    marker["bpp"] = 123.0  # a cached point must be reused, not recomputed
    cached[0].write_text(json.dumps(marker))
    again = run_bench(folder, out, tiny_weights)
    assert again.exit_code == 0
    assert "123.0" in (out / "points.csv").read_text()


def test_missing_codec_package_is_skipped_with_a_note(folder, tmp_path, tiny_weights, monkeypatch):
    factory, _ = bench_codecs.CLASSICAL["heic"]
    monkeypatch.setitem(bench_codecs.CLASSICAL, "heic", (factory, lambda: "python package 'pillow_heif' not installed"))
    args = ["bench", str(folder), "--models", "none", "--codecs", "jpeg,heic", "--anchor", "heic",
            "--out", str(tmp_path / "o"), "--quick"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert "skipping heic" in result.output and "no BD-rates" in result.output


def test_haarpsi_is_one_for_identical_images_and_drops_with_distortion():
    image = smooth_image(64, 80)
    rng = np.random.default_rng(0)
    mild = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    strong = np.clip(image + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8)
    assert haarpsi(image, image) == pytest.approx(1.0, abs=1e-5)
    assert 1.0 > haarpsi(image, mild) > haarpsi(image, strong) > 0.0


def test_lic_jobs_run_one_at_a_time_after_the_parallel_classical_ones(folder, tmp_path, tiny_weights, monkeypatch):
    pooled = []

    class InlinePool:  # records what would have gone to the worker processes, and runs it here
        def __init__(self, workers, initializer, initargs):
            assert initargs[0]["threads"] == 1
            initializer(*initargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, function, job):
            pooled.append(job.codec)
            future = Future()
            future.set_result(function(job))
            return future

    monkeypatch.setattr(runner, "ProcessPoolExecutor", InlinePool)
    monkeypatch.setattr(runner, "as_completed", lambda futures: list(futures))
    result = run_bench(folder, tmp_path / "out", tiny_weights, "--jobs", "2", "--threads", "2")
    assert result.exit_code == 0, result.output
    assert pooled and set(pooled) == {"jpeg", "webp"}
    with (tmp_path / "out" / "points.csv").open() as handle:
        lic_rows = [row for row in csv.DictReader(handle) if row["codec"] == "lic-hyper"]
    assert len(lic_rows) == 2 * 6 and {row["threads"] for row in lic_rows} == {"2"}
