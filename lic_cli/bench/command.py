"""The `lic bench` command."""
from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..imageio import list_images
from . import report, runner
from .codecs import CLASSICAL, classical_codec

console = Console(stderr=True, highlight=False)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [] if value.strip().lower() in ("", "none") else [v.strip() for v in value.split(",") if v.strip()]


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--models", help="Comma-separated lic models ('none' for none). Default: the shipped models that "
              "make an R-D curve (`lic models`); the others have their own benchmarks (benchmarks/).")
@click.option("--codecs", help=f"Comma-separated classical codecs ('none' for none) from {','.join(CLASSICAL)}. "
              "Default: all that are installed.")
@click.option("--anchor", default="heic", show_default=True, help="Codec the BD-rates are measured against.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-out"),
              show_default=True, help="Results (points.csv, summary.csv/json, rd.png) and the resumable cache.")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Parallel worker processes for the classical codecs. lic models run afterwards, one image at a "
              "time, so that their timings are not those of a shared CPU.")
@click.option("--threads", type=int, default=2, show_default=True, help="Torch threads of the lic jobs.")
@click.option("--weights", multiple=True, help="NAME=FILE: benchmark model NAME with this weight file.")
@click.option("--quick", is_flag=True, help="First 4 images and every other setting, for a fast look.")
def bench(folders, models, codecs, anchor, out, jobs, threads, weights, quick):
    """Rate-distortion and speed of lic models vs JPEG, WebP, JPEG 2000, AVIF, HEIC, JPEG XL.

    Every point is a real encode to bytes (lic: the whole container) and a real decode. Prints
    mean bpp / PSNR / MS-SSIM / HaarPSI / times per setting and BD-rates against --anchor; writes
    per-image and aggregated CSV/JSON and an R-D plot to --out. Interrupted runs resume from the
    cache in --out.

    \b
    lic bench ../shared/data/kodak                     # everything installed, ~1 h on 2 cores
    lic bench ../shared/data/kodak --quick --jobs 2
    lic bench kodak/ --models MODEL --codecs jpeg,webp,heic
    lic bench drawings/ --models hyper-ctx,auto        # auto: lic encode --model auto
    """
    from models import zoo

    from ..cli import load_torch

    torch = load_torch()
    images = [str(p) for folder in folders for p in list_images(folder)]
    if not images:
        _fail("no images found in the given folders")
    weight_map = dict(w.split("=", 1) for w in weights if "=" in w)
    codec_objects, skipped = _classical(_split(codecs))
    model_names = _split(models)
    if model_names is None:
        model_names = [name for name, item in zoo.ZOO.items() if name in weight_map
                       or (item.bench_by_default and zoo.default_weights_path(name).exists())]
    options = {c.name: c.options for c in codec_objects}
    settings = {c.name: c.settings for c in codec_objects}
    for name in model_names:
        try:
            codec = runner.lic_codec(name, runner.model_weights(name, weight_map), threads)
        except KeyError as error:
            _fail(str(error.args[0]))
        except zoo.WeightsError as error:
            _fail(str(error))
        options[codec.name], settings[codec.name] = codec.options, codec.settings
    for name, reason in skipped.items():
        console.print(f"skipping {name}: {reason}", markup=False)
    if quick:
        images = images[:4]
        settings = {name: values[::2] for name, values in settings.items()}
    job_list = [runner.Job(codec, setting, image) for codec, values in settings.items()
                for setting in values for image in images]
    console.print(f"{len(job_list)} encodes of {len(images)} images; {jobs} job(s) for classical codecs, then lic "
                  f"one at a time with {threads} thread(s); "
                  f"results in {out}", markup=False)
    config = {"threads": threads, "weights": weight_map}
    with Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("", total=len(job_list))

        def done(record: dict) -> None:
            progress.update(task, advance=1, description=f"{record['codec']} {record['setting']}")

        try:
            records = runner.execute(job_list, out, options, jobs, config, done)
        except KeyboardInterrupt:
            _fail(f"interrupted; finished points are cached in {out}, run the same command to resume")
    curves = runner.aggregate(records)
    bd = report.bd_rates(curves, anchor)
    if anchor not in curves:
        console.print(f"anchor {anchor!r} was not run: no BD-rates", markup=False)
    report.print_tables(Console(), curves, bd, anchor, options)
    meta = {
        "command": "lic bench " + " ".join(sys.argv[2:]), "images": len(images), "anchor": anchor,
        "machine": f"{platform.machine()} {platform.processor()}".strip(), "cpu_count": _cpu_count(),
        "jobs": jobs, "lic_threads": threads, "torch": torch.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "options": options,
    }
    written = report.write_files(out, records, curves, bd, meta)
    figure = report.plot(out, curves, anchor)
    if figure is None:
        console.print("matplotlib not installed: no plot (pip install lic[bench])", markup=False)
    else:
        written.append(figure)
    console.print("wrote " + ", ".join(str(p) for p in written), markup=False)


def _classical(names: list[str] | None):
    codecs, skipped = [], {}
    for name in (list(CLASSICAL) if names is None else names):
        try:
            codec, reason = classical_codec(name)
        except KeyError as error:
            _fail(str(error.args[0]))
        if codec is None:
            skipped[name] = reason
        else:
            codecs.append(codec)
    return codecs, skipped


def _cpu_count() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _fail(message: str) -> None:
    click.echo(f"lic: error: {message}", err=True)
    sys.exit(2)
