"""`lic train` and `lic export`: reproduce and package the zoo's weights."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import click
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from models import zoo

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


def parse_qualities(text: str | None) -> tuple[int, ...] | None:
    """'5,6' -> (4, 5): the 0-based indices of 1-based quality numbers."""
    if not text:
        return None
    try:
        return tuple(int(part) - 1 for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers",
                                 param_hint="--qualities") from None


@click.command()
@click.option("-m", "--model", default=zoo.DEFAULT_MODEL, show_default=True, help="Zoo model to train.")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of training images (PNG/JPEG/WebP/...).")
@click.option("--val", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Validation folder (default: the last 8 images of --data are held out).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/train"),
              show_default=True, help="Run folder: last.pt checkpoint and the exported weight file.")
@click.option("--minutes", type=float, default=60.0, show_default=True,
              help="Wall-clock budget; the learning-rate schedule spans it (resumed runs included).")
@click.option("--steps", type=int, help="Stop after this many steps even if time is left.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--crop", type=int, default=256, show_default=True,
              help="Random crop size (multiple of 64). Smaller crops teach the hyperprior mostly image "
                   "borders: hyper trained on 128 coded 128² tiles in 14% fewer bits than whole images.")
@click.option("--lr", type=float, default=3e-4, show_default=True, help="Peak Adam learning rate.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="Arithmetic of the transforms (entropy models stay fp32). auto: bf16 on AMX/AVX512-BF16 "
              "CPUs and bf16-capable GPUs, where it is 2-3x faster.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, help="CPU threads (default: PyTorch's choice).")
@click.option("--eval-every", type=int, default=500, show_default=True, help="Validation interval in steps.")
@click.option("--channels", type=int, help="Override the transform width (hyper: N; gc: w), e.g. for a tiny "
              "test run.")
@click.option("--latent-channels", type=int, help="Override M (hyper) or the context model width (gc).")
@click.option("--hyper-width", type=int, help="hyper: width of the hyper-synthesis hidden layers (default: M). "
              "With a wider latent, 192 keeps the weight file small, e.g. --latent-channels 256 --hyper-width 192.")
@click.option("--init", "init_weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from the network of this weight file (e.g. a shipped one) instead of random init; "
              "hyper-bb can start from hyper weights.")
@click.option("--grow-warmup", type=click.IntRange(0), default=0, show_default=True, metavar="STEPS",
              help="hyper with --init weights of a narrower latent (--latent-channels wider than theirs): the "
              "added channels pay no rate for STEPS steps, then a share ramped in over STEPS more, so that the "
              "synthesis learns to use them before the rate term can silence them (1500 grew hyper from 192 "
              "to 256 channels; see docs/results.md).")
@click.option("--qualities", metavar="LIST", help="hyper: train only these qualities (comma-separated, e.g. 5,6); "
              "the other operating points keep their gains but drift with the shared transforms. A quality "
              "listed twice is drawn twice as often (1,2,3,4,5,6,6).")
@click.option("--freeze-encoder", is_flag=True,
              help="hyper: fine-tune the decoder side (synthesis, hyperprior, inverse gains) on exactly what the "
              "coder does, rounded latents and the rates of the rounded values, with the analysis frozen: the "
              "'hard' stage of soft-then-hard training, for a model trained with noise.")
@click.option("--straight-through-after", type=click.FloatRange(0, 1), default=0.6, show_default=True,
              help="Fraction of the budget after which the synthesis sees rounded latents (straight-through) "
              "instead of noisy ones; 0 when fine-tuning a trained model.")
@click.option("--gan-after", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="gc models: fraction of the budget trained on distortion only before the GAN loss starts.")
@click.option("--discriminator-width", type=click.IntRange(4, 512), default=64, show_default=True,
              help="gc models: width of the multi-scale discriminator's first layer (pix2pixHD: 64; 32 is "
              "about 2x faster per GAN step on a CPU).")
def train(model, data, val, out, minutes, steps, batch_size, crop, lr, device, resume, precision, seed, threads,
          eval_every, channels, latent_channels, hyper_width, init_weights, grow_warmup, qualities,
          freeze_encoder, straight_through_after, gan_after, discriminator_width):
    """Train a zoo model and export its weight file (OUT/<model>.pt).

    \b
    CPU budget run:  lic train --model hyper --data ../shared/data/train --batch-size 4 --minutes 135 \\
                         --out runs/hyper
    Continue it:     the same command with --minutes 200 --resume (the schedule stretches to the new budget)
    Then:            lic encode img.png --weights runs/hyper/hyper.pt
    GAN, C=4:        lic train --model gc-c4 --data ../shared/data/train --crop 256 --batch-size 4 --lr 2e-4
    GAN from the MSE baseline (distortion pre-training):
                     lic train --model gc-c2 --init models/weights/gc-c4-mse.pt --gan-after 0.1 ...
    Wider latent (how the shipped hyper grew its latent from 192 to 256 channels):
                     lic train --model hyper --init hyper-192.pt --latent-channels 256 --hyper-width 192 \\
                         --grow-warmup 1500 --lr 1e-4 --straight-through-after 0 --batch-size 4 ...
    Bits-back model: lic train --model hyper-bb --init hyper-192.pt --minutes 25 --lr 2.5e-5 \\
                         --batch-size 4 --straight-through-after 0 --data ../shared/data/train --out runs/hyper-bb
                     (hyper-bb keeps the 192-channel latent, which keeps its file under 16 MiB)
    hyper-192.pt:    the hyper weights from before the latent grew:
                     git show 47b4149:models/weights/hyper.pt > hyper-192.pt
    """
    from .train import TrainOptions
    from .train import train as train_rate_distortion
    from .train_gc import train_gc

    if crop % 64:
        raise click.BadParameter("must be a multiple of 64", param_hint="--crop")
    family = zoo.entry(model).family if model in zoo.ZOO else "hyper"
    if hyper_width and family != "hyper":
        raise click.BadParameter("only hyper models have a hyper-synthesis", param_hint="--hyper-width")
    if grow_warmup and family != "hyper":
        raise click.BadParameter("only hyper models grow their latent", param_hint="--grow-warmup")
    if grow_warmup and init_weights is None:
        raise click.BadParameter("needs --init, the weights to grow", param_hint="--grow-warmup")
    if freeze_encoder and model != "hyper":
        raise click.BadParameter("only the plain hyper model trains this way", param_hint="--freeze-encoder")
    if qualities and family != "hyper":
        raise click.BadParameter("only hyper models have qualities", param_hint="--qualities")
    sizes = {"channels": channels, "latent_channels": latent_channels, "hyper_width": hyper_width} \
        if family == "hyper" else {"width": channels, "context_width": latent_channels}
    overrides = {k: v for k, v in sizes.items() if v}
    run_training = train_gc if family == "gc" else train_rate_distortion
    options = TrainOptions(model=model, data=data, out=out, val=val, minutes=minutes, max_steps=steps,
                           batch_size=batch_size, crop=crop, lr=lr, device=device, resume=resume, seed=seed,
                           threads=threads, eval_every=eval_every, config_overrides=overrides,
                           init_weights=init_weights, precision=precision,
                           straight_through_after=straight_through_after, gan_after=gan_after,
                           discriminator_width=discriminator_width, grow_warmup=grow_warmup,
                           qualities=parse_qualities(qualities), freeze_encoder=freeze_encoder)
    reporter = Reporter(minutes * 60)
    try:
        result = run_training(options, reporter)
    except (ValueError, FileExistsError, NotADirectoryError, KeyError, zoo.WeightsError) as error:
        reporter.close()
        click.echo(f"lic: error: {error}", err=True)
        sys.exit(2)
    reporter.close()
    path = export_checkpoint(result, out / f"{model}.pt", data)
    click.echo(f"exported {path}", err=True)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--data-note", default="", help="Training data description for the model card.")
def export(checkpoint, output, data_note):
    """Turn a training checkpoint (last.pt) into a weight file for encode/decode."""
    path = export_checkpoint(checkpoint, output, data_note)
    click.echo(f"exported {path}", err=True)


def export_checkpoint(checkpoint: Path, output: Path, data_note) -> Path:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    name = state["zoo_name"]
    model = zoo.build_trainable(name, state["config"])
    model.load_state_dict(state["model"])
    card = {
        "steps": int(state["step"]), "train_minutes": round(float(state["elapsed_seconds"]) / 60, 1),
        "hardware": state.get("hardware", "unknown"), "data": str(data_note),
        "exported": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "batch_size": state.get("batch_size"), "crop": state.get("crop"),
    }
    return zoo.export_weights(model, name, output, card)
