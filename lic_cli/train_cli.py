"""`lic train` and `lic export`: reproduce and package the zoo's weights."""
from __future__ import annotations

import itertools
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from models.defaults import DEFAULT_MODEL

from .family_options import FamilyOptionsCommand, split_values

if TYPE_CHECKING:
    from models.zoo import Training

console = Console(stderr=True, highlight=False)


class Reporter:
    """Log lines always; a live progress bar as well when stderr is a terminal."""

    def __init__(self, budget_seconds: float):
        self.progress = None
        if console.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                                     console=console)
            self.task = self.progress.add_task("training", total=budget_seconds)
            self.progress.start()

    def log(self, message: str) -> None:
        if self.progress is not None:
            self.progress.console.print(message, markup=False, soft_wrap=True)
        else:
            click.echo(message, err=True)

    def step(self, step: int, elapsed: float, stats: dict[str, float]) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=elapsed,
                                 description=f"step {step} bpp {stats['bpp']:.3f} PSNR {stats['psnr']:.2f} dB")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class QuietReporter:
    """The other ranks of a distributed run: rank 0 speaks for all of them."""

    def log(self, message: str) -> None:
        pass

    def step(self, step: int, elapsed: float, stats: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


@click.command(cls=FamilyOptionsCommand)
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Zoo model to train.")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of training images (PNG/JPEG/WebP/...).")
@click.option("--val", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Validation folder (default: the last 8 images of --data are held out).")
@click.option("--mix", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A second folder of training images that --mix-share of the crops come from, e.g. "
              "illustrations and screenshots: a model trained on photos alone codes flat colours and text badly.")
@click.option("--mix-share", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Share of the crops drawn from --mix.")
@click.option("--augment", metavar="LIST", help="Augmentations besides crops and flips, comma-separated: colours "
              "(permute the RGB channels of --mix crops), compositions (one crop in ten a synthetic flat-colour "
              "composition: shapes, gradients, thin lines). For models that must code illustrations too.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/train"),
              show_default=True, help="Run folder: last.pt checkpoint and the exported weight file.")
@click.option("--minutes", type=float, default=60.0, show_default=True,
              help="Wall-clock budget; the learning-rate schedule spans it (resumed runs included).")
@click.option("--steps", type=int, help="Stop after this many steps even if time is left.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--crop", type=int, default=256, show_default=True,
              help="Random crop size (multiple of 64). Small crops teach an entropy model mostly image borders.")
@click.option("--lr", type=float, default=3e-4, show_default=True, help="Peak Adam learning rate.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="Arithmetic of the transforms (entropy models stay fp32). auto: bf16 on AMX/AVX512-BF16 "
              "CPUs and bf16-capable GPUs, else fp32.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, help="CPU threads (default: PyTorch's choice).")
@click.option("--eval-every", type=int, default=500, show_default=True, help="Validation interval in steps.")
@click.option("--channels", type=int, help="Override the main transform width, e.g. for a tiny test run.")
@click.option("--latent-channels", type=int, help="Override the second size of the model (the latent width of a "
              "hyperprior, the context model width of a GAN codec).")
@click.option("--init", "init_weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from the network of this weight file (e.g. a shipped one, or one of a related model) "
              "instead of random init.")
@click.option("--reg", "regularizer", type=click.Choice(["cse"]),
              help="Rate-distortion models: add a training regularizer. cse: maximise the conditional source "
              "entropy H(X|X^) (Zhang et al.), estimated by a small model trained alongside; none of it is in the "
              "weight file.")
@click.option("--alpha", type=click.FloatRange(0, min_open=True), default=0.1, show_default=True,
              help="--reg cse: its weight against a rate in bits per pixel (the paper: 0.1 for a hyperprior, 1 "
              "for context models).")
@click.option("--compile", "compile_mode", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Rate-distortion models: torch.compile the training pass (faster steps after a one-off "
              "compilation). auto: for runs of 1000+ --steps or 10+ --minutes.")
def train(model, data, val, mix, mix_share, augment, out, minutes, steps, batch_size, crop, lr, device, resume,
          precision, seed, threads, eval_every, channels, latent_channels, init_weights, regularizer, alpha,
          compile_mode, **family):
    """Train a zoo model and export its weight file (OUT/<model>.pt).

    \b
    A CPU budget run:  lic train --model MODEL --data photos/ --batch-size 4 --minutes 135 --out runs/m
    Continue it:       the same command with --minutes 200 --resume (the schedule stretches to the new budget)
    Then:              lic encode img.png --model MODEL --weights runs/m/MODEL.pt
    Fine-tune:         lic train --model MODEL --init models/weights/MODEL.pt --lr 3e-5 ...
    Regularised:       add --reg cse (--alpha 0.1)
    Fixed schedule:    --steps N spans the learning-rate schedule over N steps instead of --minutes

    \b
    Several processes (DistributedDataParallel; --batch-size is per process):
      one machine, 2 GPUs:  torchrun --nproc-per-node 2 -m lic_cli train --device cuda ...
      two CPU processes:    torchrun --nproc-per-node 2 -m lic_cli train --threads 1 ...
      two machines:         torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d
                            --rdzv-endpoint HOST:29500 -m lic_cli train ...  (on each machine)
    Rank 0 logs, validates, checkpoints and exports; --resume works with any number of processes.

    Each model family adds training options of its own, listed below under their own heading
    (lic train --model NAME --help shows another model's). Every model card in models/weights/
    has the exact command behind its weight file.
    """
    from models import zoo

    from . import distributed
    from .augment import parse_augmentations
    from .cli import load_torch
    from .train import TrainOptions, check_family_options

    load_torch()
    try:
        ranks = distributed.from_environment()
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if crop % 64:
        raise click.BadParameter("must be a multiple of 64", param_hint="--crop")
    try:
        training = zoo.entry(model).training
    except KeyError as error:
        raise click.BadParameter(str(error.args[0]), param_hint="--model") from None
    if training.driver is None:
        raise click.BadParameter(f"{model} is not trained by lic (its weight files come from lic import)",
                                 param_hint="--model")
    context = click.get_current_context()
    _refuse_foreign_sizes(context, model, training)
    if regularizer and training.source_model is None:
        raise click.BadParameter(f"applies to models trained with a rate-distortion loss, not to {model}",
                                 param_hint="--reg")
    if context.get_parameter_source("alpha") is not click.core.ParameterSource.DEFAULT and not regularizer:
        raise click.BadParameter("needs --reg", param_hint="--alpha")
    family_options, sized = split_values(training.options, family)
    given = {"channels": channels, "latent_channels": latent_channels}
    overrides = {training.sizes[option]: value for option, value in given.items() if value and option in training.sizes}
    try:
        augmentations = parse_augmentations(augment)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--augment") from None
    options = TrainOptions(model=model, data=data, out=out, val=val, mix=mix, mix_share=mix_share, minutes=minutes,
                           max_steps=steps, batch_size=batch_size, crop=crop, lr=lr, device=device, resume=resume,
                           seed=seed, threads=threads, eval_every=eval_every, config_overrides={**overrides, **sized},
                           init_weights=init_weights, precision=precision, family=family_options,
                           regularizer=regularizer, alpha=alpha, ranks=ranks, compile=compile_mode,
                           augment=augmentations)
    try:
        check_family_options(options)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    run_training = _driver(training.driver)
    reporter = Reporter(minutes * 60) if ranks.is_main else QuietReporter()
    try:
        result = run_training(options, reporter)
    except distributed.RankFailed:
        sys.exit(2)  # rank 0 has said why
    except (ValueError, FileExistsError, NotADirectoryError, KeyError, zoo.WeightsError,
            *distributed.one_line_failures(ranks)) as error:
        reporter.close()
        where = f" ({ranks.describe()})" if ranks.distributed else ""
        click.echo(f"lic: error{where}: {error.args[0] if isinstance(error, KeyError) else error}", err=True)
        sys.exit(2)
    finally:
        distributed.finish(ranks)
    reporter.close()
    if ranks.is_main:
        path = export_checkpoint(result, out / f"{model}.pt", None, init_weights)
        click.echo(f"exported {path}", err=True)


def _refuse_foreign_sizes(context: click.Context, model: str, training: Training) -> None:
    """A size option given for a model whose configuration has no such size."""
    for name in ("channels", "latent_channels"):
        if context.params.get(name) and name not in training.sizes:
            raise click.BadParameter(f"does not apply to --model {model}", param_hint="--" + name.replace("_", "-"))


def _driver(name: str):
    """The training loop a zoo entry asks for (models/zoo.py, Training.driver)."""
    from .train import train as rate_distortion
    from .train_gan import train_gan
    drivers = {"rate-distortion": rate_distortion, "gan": train_gan}
    if name not in drivers:
        raise click.ClickException(f"this lic has no training driver {name!r}")
    return drivers[name]


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--data-note", default="", help="Training data description for the model card (default: the "
              "data the run recorded in its checkpoint).")
@click.option("-m", "--model", help="Export as this model instead of the checkpoint's: a variant of it or the model "
              "it is a variant of (the same network), e.g. a hyper-ctx run tuned for illustrations as "
              "hyper-ctx-graphics.")
def export(checkpoint, output, data_note, model):
    """Turn a training checkpoint (last.pt) into a weight file for encode/decode."""
    try:
        path = export_checkpoint(checkpoint, output, data_note, model=model)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"exported {path}", err=True)


def export_checkpoint(checkpoint: Path, output: Path, data_note: str | None, init: Path | None = None,
                      model: str | None = None) -> Path:
    """A weight file of a checkpoint. A run that took no steps from --init weights (a conversion,
    e.g. a model with an extra input folded into one without) keeps the training record of those weights."""
    import torch

    from models import zoo

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    name = model or state["zoo_name"]
    if name != state["zoo_name"] and state["zoo_name"] not in (zoo.entry(name).variant_of,) and \
            zoo.entry(state["zoo_name"]).variant_of != name:
        raise ValueError(f"{checkpoint} holds {state['zoo_name']}, which {name} is not a variant of")
    model = zoo.build_trainable(name, state["config"])
    model.load_state_dict(state["model"])
    card = {
        "steps": int(state["step"]), "train_minutes": round(float(state["elapsed_seconds"]) / 60, 1),
        "hardware": state.get("hardware", "unknown"), "data": data_note or state.get("data", ""),
        "exported": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "batch_size": state.get("batch_size"), "crop": state.get("crop"),
    }
    if init is not None and card["steps"] == 0:
        source = zoo.load_weight_card(Path(init))
        card.update({key: source[key] for key in ("steps", "train_minutes", "hardware", "data", "batch_size", "crop")
                     if key in source})
        card["converted_from"] = f"{Path(init).name} (no training of its own)"
    return zoo.export_weights(model, name, output, card)


@click.command()
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-m", "--model", required=True, help="Zoo model the weights are for (lic models: 'tune' lists them).")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Training images to fit on (never the evaluation set).")
@click.option("--mix", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A second folder (illustrations, screenshots) that --mix-share of the crops come from.")
@click.option("--mix-share", type=click.FloatRange(0, 1), default=0.2, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The tuned weight file (the input is left as it is).")
@click.option("--iterations", type=click.IntRange(1), default=300, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=12, show_default=True)
@click.option("--crop", type=click.IntRange(64), default=128, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True, help="Adam learning rate on the fitted values.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, help="CPU threads (default: PyTorch's choice).")
@click.option("--ladder", metavar="LIST", help="Replace the operating points: comma-separated nominal steps, "
              "coarsest first (flow: quantization steps in grey levels, e.g. 96,64,48,...,1).")
def tune(weights, model, data, mix, mix_share, output, iterations, batch_size, crop, lr, seed, threads, ladder):
    """Fit the operating points of trained weights to data, the network frozen.

    For models whose rates come from settings chosen after training (flow: the quantization
    steps of each level and channel at every -q). The tuned file codes differently, so files
    made with the input weights need the input weights to decode.

    \b
    Example:
      lic tune runs/flow/flow.pt --model flow --data photos/ --mix graphics/ -o runs/flow/flow-tuned.pt
    """
    import random

    import torch

    from models import zoo

    from .cli import load_torch
    from .imageio import list_images
    from .train import CropSampler

    load_torch(threads)
    try:
        fit = zoo.entry(model).tune
        if fit is None:
            raise ValueError(f"model {model} has no operating points to fit after training")
        config = zoo.weight_file_config(weights, model)
        if ladder:
            config["ladder"] = parse_ladder(ladder)
        network = zoo.build_trainable(model, config)
        network.load_state_dict(zoo.load_network_state(weights, model, network))
        card = dict(zoo.load_codec(model, weights).card)
        sampler = CropSampler(list_images(data), crop, torch.device("cpu"), lambda line: click.echo(line, err=True),
                              list_images(mix) if mix else [], mix_share)
    except (KeyError, ValueError, zoo.WeightsError) as error:
        click.echo(f"lic: error: {error.args[0] if isinstance(error, KeyError) else error}", err=True)
        sys.exit(2)
    rng = random.Random(seed)
    torch.manual_seed(seed)

    def batches():
        while True:
            yield sampler.batch(batch_size, rng)

    fit(network, batches(), iterations, lr, lambda line: click.echo(line, err=True))
    card["tuned"] = {"iterations": iterations, "batch_size": batch_size, "crop": crop, "lr": lr,
                     "data": str(data), "mix": str(mix) if mix else None, "ladder": ladder}
    path = zoo.export_weights(network, model, output, card)
    click.echo(f"exported {path}", err=True)


def parse_ladder(text: str) -> list[float]:
    try:
        steps = [float(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint="--ladder") from None
    if not steps or any(b >= a for a, b in itertools.pairwise(steps)) or steps[-1] <= 0:
        raise click.BadParameter("steps must be positive and decreasing (coarsest first)", param_hint="--ladder")
    return steps
