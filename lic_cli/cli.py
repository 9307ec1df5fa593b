"""The `lic` command line."""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bitstream.album import MAX_BBVI_STEPS
from bitstream.container import MAX_PIXELS, FormatError, unpack
from models.defaults import AUTO_MODEL, DEFAULT_MODEL, SYNTHESIS_THREADS
from models.interface import EncodeOptions, RefineOptions

from . import files
from .api import header_record, quality_index
from .imageio import ImageReadError

# Torch, the networks and Pillow load only in the commands that code images, so that --help,
# --version and `lic info` start at once.
EXIT_FAILURE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells expect of a program stopped by Ctrl-C
# WeightsError subclasses ValueError; every user-facing failure is one of these.
USER_ERRORS = (FormatError, ImageReadError, files.PlanError, KeyError, ValueError, OSError)
stderr = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    """One unwrapped line on stderr (rich would fold long lines)."""
    click.echo(message, err=True)


def fail(message: str) -> None:
    """One line on stderr, non-zero exit; used for errors that stop the whole command."""
    say(f"lic: error: {message}")
    sys.exit(EXIT_FAILURE)


def describe(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return str(error.args[0]) if error.args else "unknown key"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def parse_weights(values: tuple[str, ...]) -> dict[str, Path]:
    """--weights FILE (for --model) or --weights NAME=FILE, repeatable."""
    mapping = {}
    for value in values:
        name, _, path = value.rpartition("=") if "=" in value else ("", "", value)
        mapping[name or ""] = Path(path)
    return mapping


def interrupted() -> None:
    """Ctrl-C: one line, exit status 130. Outputs are written atomically, so none is left half-written."""
    say("lic: interrupted (no partial output was left behind)")
    sys.exit(EXIT_INTERRUPTED)


def load_torch(threads: int | None = None):
    """Import torch for a command that runs networks, with a one-line error where it cannot work."""
    try:
        import torch
    except ImportError:
        fail("this needs PyTorch, which is not installed (pip install torch); without it lic decodes "
             "and encodes the models that have a torch-free runtime (lic models: 'codes without torch')")

    check_numpy_bridge(torch)
    if threads:
        torch.set_num_threads(threads)
    return torch


def runtime_options(command):
    """Options shared by encode and decode: where and how the networks run, and how chatty we are."""
    options = [
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
                     help="Arithmetic of the neural transforms. auto: bf16 on CPUs/GPUs that do it natively "
                     "(faster), else fp32. Never affects what can be decoded."),
        click.option("--threads", type=int, help="CPU threads for the networks (default: PyTorch's choice). "
                     f"The transform that makes decoded pixels always runs on {SYNTHESIS_THREADS}, so the "
                     "pixels do not depend on it."),
        click.option("--max-pixels", type=click.IntRange(1, MAX_PIXELS), default=MAX_PIXELS, show_default=True,
                     help="Refuse images (and files declaring images) with more pixels than this, before any "
                     "memory is set aside for them."),
        click.option("--quiet", is_flag=True, help="Print nothing but errors."),
        click.option("-v", "--verbose", is_flag=True, help="Always print a summary line per file (also when piped)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


# Commands whose modules are imported only when they run (or --help lists them): a decode does not
# pay for the benchmark's and training's imports (about 35 ms).
LAZY_COMMANDS = {"bench": "lic_cli.bench.command:bench", "import": "lic_cli.import_cli:import_weights",
                 "train": "lic_cli.train_cli:train", "export": "lic_cli.train_cli:export",
                 "tune": "lic_cli.train_cli:tune"}


class CommandLine(click.Group):
    """The `lic` group: Ctrl-C inside any command is one line and exit status 130 (click would print
    "Aborted!" and exit 1); LAZY_COMMANDS are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str):
        if name in LAZY_COMMANDS and name not in self.commands:
            import importlib

            module, attribute = LAZY_COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted()


@click.group(cls=CommandLine, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="lic", prog_name="lic")
def main() -> None:
    """lic: learned image compression.

    \b
    Compress:    lic encode photo.png -o photo.lic -q 4
    Decompress:  lic decode photo.lic -o photo.png
    Pipelines:   cat a.png | lic encode - -o - | lic decode - -o - > b.png
    Inspect:     lic info photo.lic      Compare: lic compare a.png b.png
    """


def check_numpy_bridge(torch) -> None:
    """Fail in one line where torch cannot exchange arrays with the installed NumPy: the torch 2.2
    wheels were built for NumPy 1.x, and nothing in a requirement can pin NumPy for them alone."""
    import numpy as np

    try:
        torch.from_numpy(np.zeros(1))
    except RuntimeError:
        fail(f"torch {torch.__version__} cannot use NumPy {np.__version__} (it was built for NumPy 1.x); "
             "install 'numpy<2' or torch 2.3 or later")


def run_batch(jobs: list[files.Job], work, quiet: bool, label: str, verbose: bool = False) -> None:
    """Run work(job) for each job; report each failure in one line and exit non-zero if any failed.

    work returns the job's one-line summary, or a function that finishes the job (writes its
    output) and returns the summary: that runs on one background thread while the next job works,
    so that writing image i (PNG's compression releases the GIL) overlaps decoding image i + 1.
    Summaries and errors are reported in job order."""
    show_progress = len(jobs) > 1 and not quiet and stderr.is_terminal
    failures = 0
    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=stderr, transient=True) if show_progress else nullcontext()

    def report(job: files.Job, outcome) -> None:
        """Say how a job went; outcome() returns its summary or raises its error."""
        nonlocal failures
        try:
            summary = outcome()
            if verbose or (not quiet and (stderr.is_terminal or len(jobs) > 1)):
                say(summary)
        except KeyboardInterrupt:
            interrupted()
        except USER_ERRORS as error:
            failures += 1
            name = "<stdin>" if job.source == files.STDIO else job.source
            say(f"lic: error: {name}: {describe(error)}")
        if show_progress:
            progress.advance(task)

    from concurrent.futures import Future, ThreadPoolExecutor

    with progress, ThreadPoolExecutor(max_workers=1) as finisher:
        task = progress.add_task(label, total=len(jobs)) if show_progress else None
        pending: list[tuple[files.Job, Future]] = []  # at most one job, finishing in the background
        for job in jobs:
            try:
                result = work(job)
            except KeyboardInterrupt:
                interrupted()
            except USER_ERRORS as error:
                result = failed(error)
            future = finisher.submit(result) if callable(result) else None
            for earlier, earlier_future in pending:
                report(earlier, earlier_future.result)
            pending = [(job, future)] if future is not None else []
            if future is None:
                report(job, lambda summary=result: summary)
        for earlier, earlier_future in pending:
            report(earlier, earlier_future.result)
    if failures:
        sys.exit(EXIT_FAILURE)


def failed(error: BaseException):
    """A job's finishing step that reports `error`."""
    def finish():
        raise error
    return finish


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file (one input), directory (several), or '-' for stdout. "
              "Default: next to each input with the suffix .lic.")
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Zoo model (see `lic models`), or "
              "auto: per image, the cheaper file of the default model and its shipped variants at the same "
              "quality (each candidate encodes and decodes the image).")
@click.option("-q", "--quality", type=float,
              help="Operating point, 1 (smallest files) .. N (best quality); models with continuous qualities "
              "also take any value between (e.g. 3.4, in steps of 1/256); `lic models` lists each model's "
              "points [default: the model's middle point, about 0.5 bpp on photos where it has a ladder].")
@click.option("--target-size", metavar="SIZE", help="Rate control: per image, the best quality whose file is at "
              "most SIZE bytes (40000, 40k, 40KiB, 1.5M).")
@click.option("--target-bpp", type=click.FloatRange(min=0, min_open=True), metavar="BPP",
              help="Rate control: per image, the best quality at most BPP bits per pixel.")
@click.option("--target-psnr", type=float, metavar="DB",
              help="Rate control: per image, the smallest file whose decoded image has at least this PSNR.")
@click.option("--target-ms-ssim", type=click.FloatRange(0, 1), metavar="V",
              help="Rate control: per image, the smallest file whose decoded image has at least this MS-SSIM.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--refine", type=click.Choice(["none", "sga"]), default="none", show_default=True,
              help="sga: optimise the latents of each image for its own R-D objective before coding "
              "(Stochastic Gumbel Annealing; same decoder, smaller files, much slower encoding).")
@click.option("--steps", type=int, default=300, show_default=True, help="SGA iterations per image.")
@click.option("--lr", type=float, default=5e-3, show_default=True, help="SGA Adam learning rate.")
@click.option("--refine-seconds", type=float, help="Stop SGA after this many seconds per image.")
@click.option("--comment", help="Text to carry inside the coded stream (models that carry data, such as "
              "bits-back ones; restored into the decoded PNG).")
@click.option("--side-info", "side_info", type=click.Path(exists=True, dir_okay=False),
              help="A file whose bytes ride inside the coded stream (models that carry data; "
              "`lic decode --side-info-out` writes it back).")
@click.option("--bbvi-steps", type=click.IntRange(0, MAX_BBVI_STEPS),
              help="Models that carry data: iterations of the posterior fit, which the decoder repeats "
              "[default: the model's].")
@click.option("--preserve", type=click.Path(exists=True, dir_okay=False), metavar="MASK",
              help="Selective generation (models that offer it, see `lic models`): an image, any size, white "
              "where the picture must be kept, black where it may be synthesised; only the kept region is "
              "coded (in 16x16 blocks), so the file shrinks with the synthesised area.")
@click.option("--frame", type=click.IntRange(0), help="Which frame of an animation or multi-page input to code "
              "(0 = the first); such inputs are refused without it.")
@click.option("--weights", multiple=True, help="Use this weight file instead of the shipped one (without --model: "
              "for the model it holds; with --model auto: one more candidate, a variant of the default model "
              "such as one trained with lic train).")
@click.option("--engine", type=click.Choice(["auto", "onnx", "torch"]), default="auto", show_default=True,
              help="auto or onnx: a plain encode (a quality or --preserve; no --refine or --target-*) of a model that "
              "has it runs on "
              "numpy and ONNX Runtime, without loading torch; torch: always PyTorch.")
@runtime_options
def encode(inputs, output, model, quality, target_size, target_bpp, target_psnr, target_ms_ssim, force, refine, steps,
           lr, refine_seconds, comment, side_info, bbvi_steps, preserve, frame, weights, engine, device, precision,
           threads, max_pixels, quiet, verbose):
    """Compress images (PNG, JPEG, WebP, TIFF, PPM, BMP) into .lic files.

    \b
    Examples:
      lic encode photo.png                      # writes photo.lic
      lic encode *.png -o out/ -q 5             # a batch into a directory
      lic encode - -o - < in.png > out.lic      # standard input/output
      lic encode photo.png --refine sga --steps 300   # slower encode, smaller file
      lic encode *.png -o out/ --target-size 40k      # each file at most 40,000 bytes
      lic encode photo.png --target-psnr 33           # the smallest file of at least 33 dB
      lic encode photo.png --model gc-c4-sc --preserve mask.png   # code only the mask's white part
      lic encode drawing.png --model auto             # per image, the cheaper of the default and its variants

    Grey and RGBA images are kept as such (alpha is stored losslessly); ICC profiles and EXIF
    are carried through. 16-bit images are converted to 8 bits with a warning.

    \b
    Models that carry data (bits-back coding; `lic models` lists them): metadata, --comment and
    --side-info ride inside the coded stream instead of costing bytes, and several inputs with
    -o FILE make one album:
      lic encode photo.png -o photo.lic --model MODEL --comment "Lake, 2026"
      lic encode a.png b.png c.png -o album.lic --model MODEL
    """
    target = _target(target_size, target_bpp, target_psnr, target_ms_ssim, quality, refine)
    from . import codec
    from .imageio import read_image

    plain = (target is None and refine == "none" and model != AUTO_MODEL
             and not (comment or side_info or bbvi_steps is not None))
    if not plain:
        load_torch(threads)
    try:
        if model == AUTO_MODEL and refine != "none":
            raise ValueError("--model auto chooses among the default model and its variants; not with --refine")
        model, weight_files = _model_and_weights(weights, model)
        session = codec.CodecSession(weight_files, _device(device), precision, engine, threads,
                                     functools.partial(load_torch, threads))
        if model == AUTO_MODEL:
            load_torch(threads)
            from .model_choice import candidates

            choices = candidates(session)
        else:
            choices = None
        loaded = choices[0] if choices else session.encoder(model) if plain else session.get(model)
        capabilities = loaded.codec.capabilities
        if (comment or side_info or bbvi_steps is not None) and not capabilities.carries_data:
            raise ValueError(f"--comment, --side-info and --bbvi-steps need a model that carries data; {model} "
                             "does not (see `lic models`)")
        if refine != "none" and refine not in capabilities.refine:
            raise ValueError(f"--refine {refine} is not available for {model} "
                             f"(it offers: {', '.join(capabilities.refine) or 'none'})")
        if preserve and not capabilities.selective:
            raise ValueError(f"--preserve needs a model with selective generation; {model} has none "
                             f"({_models_with_selective_generation()})")
        mask_bytes = Path(preserve).read_bytes() if preserve else None
        album_target = output if capabilities.carries_data and len(inputs) > 1 and _is_file_target(output) else None
        if album_target and target:
            raise ValueError("rate control (--target-*) codes each image on its own; not with an album (-o FILE)")
        jobs = [] if album_target else files.plan_jobs(inputs, output, ".lic", force)
        extra = Path(side_info).read_bytes() if side_info else None
    except USER_ERRORS as error:
        fail(describe(error))
    quality = _check_quality(loaded.codec.qualities, quality, model)
    if steps < 1 or lr <= 0 or (refine_seconds is not None and refine_seconds <= 0):
        fail("--steps, --lr and --refine-seconds must be positive")
    refine_options = RefineOptions(refine, steps, lr, refine_seconds) if refine != "none" else None
    if album_target:
        _encode_album(inputs, album_target, force, loaded, quality, comment, extra,
                      EncodeOptions(refine_options, bbvi_steps), (frame, max_pixels), quiet, verbose)
        return

    def work(job: files.Job) -> str:
        started = time.perf_counter()
        image = read_image(files.read_input(job.source), frame, max_pixels)
        for warning in image.warnings:
            say(f"lic: warning: {job.source}: {warning}")
        if target:
            return _encode_to_target(job, image, choices or [loaded], target, session, started)
        if choices:
            return _encode_cheapest(job, image, choices, quality, session, started)
        kept = _preservation_mask(mask_bytes, preserve, image)
        with _refine_progress(job.source, steps, quiet or refine_options is None) as on_progress:
            options = EncodeOptions(refine_options, bbvi_steps, on_progress, kept)
            if capabilities.carries_data:
                data, coded = codec.encode_album([(None, image)], loaded, quality, comment, extra, options)
                if coded.padding_bytes and not quiet:
                    say(f"lic: note: {job.source}: {coded.padding_bytes:,} bytes of padding: the stream borrows "
                        f"more bits than the {coded.carried_bytes:,} carried bytes (bits-back pays off with side "
                        "information, metadata or albums)")
            else:
                data = codec.encode_image(image, loaded, quality, options)
        files.write_output(job.target, data)
        seconds = time.perf_counter() - started
        bpp = 8 * len(data) / (image.width * image.height)
        return f"{job.source} -> {job.target}: {len(data):,} bytes, {bpp:.4f} bpp, {seconds:.2f} s"

    run_batch(jobs, work, quiet, "encoding", verbose or (target is not None and not quiet))


def _models_with_selective_generation() -> str:
    try:
        from models import zoo
    except ImportError:  # no torch: the registry cannot load; lic models lists them
        return "lic models lists them"
    return "models with it: " + ", ".join(zoo.models_with(selective=True))


def _preservation_mask(data: bytes | None, path: str | None, image):
    """--preserve's mask at the image's size (None without one)."""
    if data is None:
        return None
    from .imageio import ImageReadError, read_mask

    try:
        return read_mask(data, image.width, image.height)
    except ImageReadError as error:
        raise ImageReadError(f"--preserve {path}: {error}") from None


def _target(size: str | None, bpp: float | None, psnr: float | None, ms_ssim: float | None, quality,
            refine: str):
    """The rate-control target of lic encode's options (None: plain -q)."""
    from .rate_control import Target, parse_size

    given = [(kind, value) for kind, value in (("size", size), ("bpp", bpp), ("psnr", psnr), ("ms-ssim", ms_ssim))
             if value is not None]
    if not given:
        return None
    if len(given) > 1:
        fail("give one of --target-size, --target-bpp, --target-psnr and --target-ms-ssim")
    if quality is not None:
        fail("--quality and --target-* exclude each other: the target chooses the quality")
    if refine != "none":
        fail("--refine cannot be combined with --target-*")
    kind, value = given[0]
    try:
        return Target(kind, parse_size(value) if kind == "size" else value)
    except ValueError as error:
        fail(f"--target-size: {error}")


def _encode_to_target(job: files.Job, image, loaded: list, target, session, started: float) -> str:
    """Rate control with one model, or with each of --model auto's candidates."""
    from .model_choice import encode_to_target_cheapest

    achieved, chosen = encode_to_target_cheapest(image, loaded, target, session)
    files.write_output(job.target, achieved.data)
    measured = {"size": "", "bpp": "", "psnr": f", {achieved.measure:.2f} dB",
                "ms-ssim": f", MS-SSIM {achieved.measure:.4f}"}[target.kind]
    model = f"{chosen}, " if len(loaded) > 1 else ""
    return (f"{job.source} -> {job.target}: {len(achieved.data):,} bytes, {achieved.bpp:.4f} bpp, "
            f"{model}q{achieved.quality + 1:.4g}{measured} ({target.describe()}; {achieved.encodes} encodes), "
            f"{time.perf_counter() - started:.2f} s")


def _encode_cheapest(job: files.Job, image, loaded: list, quality: float, session, started: float) -> str:
    from .model_choice import encode_cheapest

    choice = encode_cheapest(image, loaded, quality, session)
    files.write_output(job.target, choice.data)
    bpp = 8 * len(choice.data) / (image.width * image.height)
    costs = ", ".join(f"{name} {cost:.4f}" for name, cost in choice.costs.items())
    compared = f" (R-D cost {costs})" if costs else " (the only candidate)"
    return (f"{job.source} -> {job.target}: {len(choice.data):,} bytes, {bpp:.4f} bpp, {choice.model}"
            f"{compared}, {time.perf_counter() - started:.2f} s")


def _is_file_target(output: str | None) -> bool:
    return output not in (None, files.STDIO) and not os.path.isdir(output) and not output.endswith(os.sep)


def _check_quality(qualities, quality: float | None, model: str) -> int | float:
    """The 0-based operating point of a 1-based --quality (None: the model's default)."""
    try:
        return quality_index(qualities, quality, model)
    except ValueError as error:
        fail(f"--quality: {error}")


def _encode_album(inputs, target, force, loaded, quality, comment, extra, options, reading, quiet, verbose):
    """Several images into one file of a model that carries data: each image's stream is what the
    next one borrows."""
    from . import codec
    from .imageio import read_image

    started = time.perf_counter()
    if files.STDIO in inputs:
        fail("an album cannot read standard input")
    if not force and os.path.exists(target):
        fail(f"{target} exists (use --force to overwrite)")
    items = []
    try:
        for source in inputs:
            image = read_image(files.read_input(source), *reading)
            for warning in image.warnings:
                say(f"lic: warning: {source}: {warning}")
            items.append((Path(source).stem, image))
        data, coded = codec.encode_album(items, loaded, quality, comment, extra, options)
        files.write_output(target, data)
    except KeyboardInterrupt:
        interrupted()
    except USER_ERRORS as error:
        fail(describe(error))
    pixels = sum(image.width * image.height for _, image in items)
    if verbose or not quiet:
        say(f"{len(items)} images -> {target}: {len(data):,} bytes, {8 * len(data) / pixels:.4f} bpp, "
            f"{coded.carried_bytes:,} bytes carried, {coded.borrowed_bytes_between_images:,.0f} bytes borrowed "
            f"between images, {time.perf_counter() - started:.2f} s")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file (one input), directory (several, or an album), or '-' for "
              "stdout. Default: next to each input with the suffix of --format.")
@click.option("--format", "fmt", type=click.Choice(["png", "tiff", "ppm", "bmp", "webp"]), default="png",
              show_default=True, help="Image format when the output name does not say (stdout, directories).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--side-info-out", type=click.Path(dir_okay=False, writable=True),
              help="Write the side information carried by a bits-back file (lic encode --side-info) here.")
@click.option("--weights", multiple=True, help="FILE (for the model the file holds) or NAME=FILE: decode model NAME "
              "with this weight file, e.g. one made by lic import. Repeatable.")
@click.option("--levels", type=click.IntRange(1), metavar="N",
              help="Progressive models (lic models lists them): decode a preview from the first N levels of "
                   "the file only, the finer ones predicted. Default: all.")
@click.option("--engine", type=click.Choice(["auto", "onnx", "torch"]), default="auto", show_default=True,
              help="onnx: models that have it decode on numpy and ONNX Runtime, without loading torch (same "
              "symbols, pixels within one level); torch: always PyTorch; auto: onnx, except where torch is "
              "installed and decodes faster: several files in one command, or an image over 2 megapixels.")
@runtime_options
def decode(inputs, output, fmt, force, side_info_out, weights, levels, engine, device, precision, threads, max_pixels,
           quiet, verbose):
    """Decompress .lic files to lossless images (PNG by default), restoring ICC/EXIF and alpha.

    \b
    Examples:
      lic decode photo.lic                      # writes photo.png
      lic decode *.lic -o decoded/ --format tiff
      lic decode - -o - < photo.lic > photo.png
      lic decode album.lic -o photos/           # every image of a bits-back album
      lic decode photo.lic --side-info-out notes.txt
      lic decode photo.lic --levels 1 -o preview.png   # flow: the coarse level alone
    """
    from .imageio import check_output_suffix, encode_image_file
    from .limits import check_declared_size

    try:
        jobs = files.plan_jobs(inputs, output, "." + fmt, force)
        for job in jobs:
            if job.target != files.STDIO:
                check_output_suffix(Path(job.target).suffix or "." + fmt)
        if side_info_out and len(jobs) > 1:
            raise ValueError("--side-info-out takes a single input")
    except USER_ERRORS as error:
        fail(describe(error))
    @functools.cache
    def session():
        """The models: torch loads only where a file's model needs it (see CodecSession)."""
        from . import codec
        batch = engine == "auto" and len(jobs) > 1 and importlib.util.find_spec("torch") is not None
        return codec.CodecSession(_decoding_weights(weights), _device(device), precision,
                                  "torch" if batch else engine, threads,
                                  functools.partial(load_torch, threads))

    def work(job: files.Job) -> str:
        started = time.perf_counter()
        container = unpack(files.read_input(job.source))
        check_declared_size(container, max_pixels)
        models = session()
        from . import codec
        decoded = codec.decode_container(container, models, levels)
        if len(decoded.images) > 1:
            targets = _album_targets(job, output, decoded.names, fmt, force)
        else:
            targets = [job.target]

        def write() -> str:
            """The job's outputs (run_batch may write them while the next file decodes)."""
            for target, image in zip(targets, decoded.images, strict=True):
                suffix = "." + fmt if target == files.STDIO else Path(target).suffix or "." + fmt
                files.write_output(target, encode_image_file(image, suffix))
            if side_info_out:
                if decoded.side_info is None:
                    say(f"lic: warning: {job.source}: carries no side information; {side_info_out} not written")
                else:
                    files.write_output(side_info_out, decoded.side_info)
            seconds = time.perf_counter() - started
            c = decoded.container
            where = job.target if len(targets) == 1 else f"{len(targets)} images in {Path(targets[0]).parent}"
            note = f", comment: {decoded.comment!r}" if decoded.comment else ""
            return (f"{job.source} -> {where}: {c.width}x{c.height}, {c.model_id} q{c.quality_value + 1:.6g}, "
                    f"{seconds:.2f} s{note}")

        return write

    run_batch(jobs, work, quiet, "decoding", verbose)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, one JSON object per line.")
def info(inputs, as_json):
    """Print the header of .lic files (model, weights, geometry, sections, bit rate)."""
    failures = 0
    for source in inputs:
        try:
            data = files.read_input(source)
            container = unpack(data)
            record = {"file": source, **header_record(container, len(data))}
        except USER_ERRORS as error:
            failures += 1
            say(f"lic: error: {source}: {describe(error)}")
            continue
        if as_json:
            click.echo(json.dumps(record))
        else:
            click.echo(f"{source}: lic v{container.version}, {record['model']} q{record['quality']:.6g} "
                       f"(weights {record['weights']}), "
                       f"{record['width']}x{record['height']}x{record['channels']}, {record['bytes']:,} bytes, "
                       f"{record['bpp']:.4f} bpp")
            click.echo("  sections: " + ", ".join(f"{k} {v:,} B" for k, v in record["sections"].items()))
            if container.bits_back:
                click.echo(f"  bits-back: {len(record['images'])} image(s), {record['carried_bytes']:,} bytes carried "
                           f"inside the hyperlatents, {record['padding_bytes']:,} bytes of padding")
    if failures:
        sys.exit(EXIT_FAILURE)


@main.command()
@click.argument("reference", type=click.Path(exists=True, dir_okay=False))
@click.argument("distorted", type=click.Path(exists=True, dir_okay=False))
def compare(reference, distorted):
    """PSNR (RGB, 8-bit) and MS-SSIM between two images of the same size."""
    from .imageio import read_image
    from .metrics import ms_ssim, psnr

    load_torch()
    try:
        a = read_image(Path(reference).read_bytes())
        b = read_image(Path(distorted).read_bytes())
    except USER_ERRORS as error:
        fail(describe(error))
    if a.pixels.shape != b.pixels.shape:
        fail(f"images differ in size or channels: {a.pixels.shape} vs {b.pixels.shape}")
    value = ms_ssim(a.pixels, b.pixels)
    ms_ssim_text = "n/a (image under 161 px)" if value is None else f"{value:.5f}"
    click.echo(f"PSNR {psnr(a.pixels, b.pixels):.3f} dB  MS-SSIM {ms_ssim_text}")


@main.command("models")
def list_models():
    """List the model zoo: operating points, weight files and what each model is.

    Measured Kodak numbers are in each weight file's model card (models/weights/NAME.md) and in
    docs/results.md.
    """
    from rich.table import Table

    from models import zoo
    from models.runtime import registry

    table = Table("model", "qualities (-q)", "also", "weights", "description")
    for name, item in zoo.ZOO.items():
        path = zoo.default_weights_path(name)
        status = path.name if path.exists() else (
            "missing" if item.shipped else "not trained yet" if item.training.driver else "from lic import")
        also = _capability_text(item.codec.capabilities, item.tune is not None)
        if registry.has_graphs(name):
            also = "codes without torch" if also == "-" else f"{also}, codes without torch"
        table.add_row(name, item.qualities(item.config).description, also, status, item.description)
    Console().print(table)


def _capability_text(capabilities, tunable: bool = False) -> str:
    parts = [f"--refine {method}" for method in capabilities.refine]
    if capabilities.carries_data:
        parts.append("carries data, albums")
    if capabilities.progressive:
        parts.append("progressive (decode --levels)")
    if capabilities.selective:
        parts.append("--preserve MASK")
    if tunable:
        parts.append("tune")
    return ", ".join(parts) or "-"


@contextmanager
def _refine_progress(source: str, steps: int, quiet: bool):
    """A progress bar with the current true R-D loss while SGA runs (terminal only)."""
    if quiet or not stderr.is_terminal:
        yield None
        return
    with Progress(TextColumn(f"SGA {source}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=stderr, transient=True) as progress:
        task = progress.add_task("", total=steps)
        yield lambda step, loss: progress.update(task, completed=step, description=f"R-D loss {loss:.4f}")


def _album_targets(job: files.Job, output: str | None, names: list, fmt: str, force: bool) -> list[str]:
    """Where the images of an album go: the -o directory, or next to the album without -o."""
    if output is not None and _is_file_target(output):
        raise files.PlanError(f"holds {len(names)} images: -o must name a directory")
    folder = Path(job.target).parent if job.target != files.STDIO else None
    if folder is None:
        raise files.PlanError(f"holds {len(names)} images: they cannot go to standard output")
    album_stem = Path(job.source).stem
    targets, seen = [], set()
    for index, name in enumerate(names):
        stem = Path(name).name if name and Path(name).name not in ("", ".", "..") else f"{album_stem}-{index + 1}"
        while stem in seen:
            stem = f"{stem}-{index + 1}"
        seen.add(stem)
        target = folder / f"{stem}.{fmt}"
        if not force and target.exists():
            raise files.PlanError(f"{target} exists (use --force to overwrite)")
        targets.append(str(target))
    return targets


def _model_and_weights(values: tuple[str, ...], model: str) -> tuple[str, dict[str, Path]]:
    """(model, weight files) of lic encode's options: a bare --weights FILE is for --model, or, without
    --model, for the model that the file holds."""
    mapping = parse_weights(values)
    if "" in mapping:
        if click.get_current_context().get_parameter_source("model") == click.core.ParameterSource.DEFAULT:
            model = _weight_file_model(mapping[""])
        if model == AUTO_MODEL:  # a candidate of its own, e.g. a variant trained with lic train
            path = mapping.pop("")
            mapping[_weight_file_model(path)] = path
        else:
            mapping[model] = mapping.pop("")
    return model, mapping


def _decoding_weights(values: tuple[str, ...]) -> dict[str, Path]:
    """lic decode's weight files by model: a bare --weights FILE is for the model the file holds."""
    mapping = parse_weights(values)
    if "" in mapping:
        from models.weight_reader import WeightsError

        path = mapping.pop("")
        try:
            mapping[_weight_file_model(path)] = path
        except WeightsError as error:
            fail(str(error))
    return mapping


def _weight_file_model(path: Path) -> str:
    """The model a weight file holds: read without torch where the torch-free runtime codes it."""
    from models import weight_reader
    from models.runtime import registry

    if Path(path).is_file() and registry.available():
        try:
            model = registry.weight_file_model(path)
        except weight_reader.WeightsError:
            model = None  # the zoo's reader says what is wrong, in one line
        if model is not None:
            return model
    from models import zoo

    return zoo.weight_file_model(path)


def _device(name: str) -> str:
    if name == "cpu":  # without importing torch, which the torch-free decoder never loads
        return name
    from models.core.precision import select_device

    try:
        return str(select_device(name))
    except ValueError as error:
        fail(str(error))
