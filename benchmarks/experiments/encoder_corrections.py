"""Showed: a closed-loop re-analysis and an encoder fine-tune under SGA's relaxation both fail to close q6
(docs/notes/2026-11-hyper-cpu-training.md, session 21).

Two cheap ways to give `hyper`'s decoder better latents, both measured worse (docs/results.md,
"Session 21"); kept so that the negative results can be reproduced.

closed-loop: code an image, then analyse again with the reconstruction error fed back, either
into the pixels (p: analyse x + a (x - x_hat)) or into the latents (l: y + a (g_a(x) - g_a(x_hat))),
and code that. Rates are the coded sections' bytes (the container header, the same for every
variant, left out).

    python benchmarks/experiments/encoder_corrections.py closed-loop --images 6 --quality 6 --variants p0.5,p1,l0.5,l1

finetune: train only the encoder side (analysis, hyper-analysis, encoder gains) under SGA's
Gumbel rounding relaxation at a fixed temperature, the decoder unchanged bit for bit; logs
validation on the 8 held-out photos that `lic train` uses, as `lic train` does.

    python benchmarks/experiments/encoder_corrections.py finetune --minutes 40 --lr 1e-5 --tau 0.25 --out runs/esga-a
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch

from lic_cli.imageio import list_images, load_rgb_array
from lic_cli.metrics import psnr
from lic_cli.train import (
    CropSampler,
    evaluate,
    keep_freed_buffers_in_the_heap,
    learning_rate,
    load_validation,
    report_validation,
)
from models import zoo
from models.core.annealing import sga_round
from models.core.entropy import gaussian_likelihood
from models.hyper.codec import HyperCodec
from models.hyper.network import ENCODER_PREFIXES


def code(codec: HyperCodec, y: torch.Tensor, z: torch.Tensor, quality: int, height: int,
         width: int) -> tuple[int, torch.Tensor]:
    """(section bytes, reconstruction) of continuous latents, coded as `HyperCodec.encode` codes them."""
    coded = codec.quantise(y, z, quality)
    sections = codec.encode_latents(coded.z_hat, coded.residuals, quality, coded.table_ids)
    x_hat = codec.synthesise(coded.residuals, coded.means, quality, height, width)
    return sum(len(b) for b in sections.values()), x_hat


def corrected_latents(codec: HyperCodec, image: torch.Tensor, x_hat: torch.Tensor, y: torch.Tensor,
                      variant: str, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
    kind, amount = variant[0], float(variant[1:])
    if kind == "p":
        return codec.analyse(image + amount * (image - x_hat), quality)
    if kind == "l":
        y_again, _ = codec.analyse(x_hat, quality)
        corrected = y + amount * (y - y_again)
        return corrected, codec.hyper_analyse(corrected, quality)
    raise SystemExit(f"unknown variant {variant!r} (p<amount> or l<amount>)")


def closed_loop(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    codec = zoo.load_codec("hyper", args.weights).codec
    quality = args.quality - 1
    points: dict[str, list[tuple[float, float]]] = {}
    for path in list_images(args.kodak)[: args.images]:
        pixels = load_rgb_array(path)
        image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
        height, width = pixels.shape[:2]
        y, z = codec.analyse(image, quality)
        plain = code(codec, y, z, quality, height, width)
        coded = {"plain": plain}
        for variant in args.variants.split(","):
            coded[variant] = code(codec, *corrected_latents(codec, image, plain[1], y, variant, quality),
                                  quality, height, width)
        for name, (size, x_hat) in coded.items():
            decoded = (x_hat * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            points.setdefault(name, []).append((8 * size / (height * width), psnr(pixels, decoded)))
    for name, values in points.items():
        rates, psnrs = zip(*values)
        print(f"q{args.quality} {name}: {np.mean(rates):.4f} bpp (sections), {np.mean(psnrs):.3f} dB")


def relaxed_loss(model, x: torch.Tensor, quality: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """bpp + lambda 255^2 MSE with z and y - mean rounded by SGA's relaxation (as `models.hyper.sga` does)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model.g_a(x).float() * model.gain(model.log_gain_y, quality)
        z_soft = sga_round(model.h_a(y).float() * model.gain(model.log_gain_z, quality), tau, generator)
        means, scales = model.h_s(z_soft * model.gain(model.log_inv_gain_z, quality)).float().chunk(2, dim=1)
        residual_soft = sga_round(y - means, tau, generator)
        x_hat = model.g_s((means + residual_soft) * model.gain(model.log_inv_gain_y, quality)).float()
    bits = -(torch.log2(gaussian_likelihood(residual_soft, torch.zeros_like(scales), scales)).sum(dim=(1, 2, 3))
             + torch.log2(model.density.likelihood(z_soft)).sum(dim=(1, 2, 3)))
    mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
    return (bits / (x.shape[2] * x.shape[3]) + model.lambdas[quality] * 255**2 * mse).mean()


def finetune(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    keep_freed_buffers_in_the_heap()
    args.out.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(time.strftime("%H:%M:%S"), message, flush=True)

    weights = args.weights or zoo.default_weights_path("hyper")
    model = zoo.build_trainable("hyper", zoo.weight_file_config(weights, "hyper"))
    model.load_state_dict(zoo.load_network_state(weights, "hyper", model))
    model = model.to(memory_format=torch.channels_last)
    model.requires_grad_(False)
    trained = [p.requires_grad_(True) for name, p in model.named_parameters() if name.startswith(ENCODER_PREFIXES)]
    paths = list_images(args.data)
    sampler = CropSampler(paths[:-8], 256, torch.device("cpu"), log)
    validation = load_validation(paths[-8:], log)
    report_validation(evaluate(model, validation, torch.device("cpu")), 0, log)
    optimizer = torch.optim.Adam(trained, lr=args.lr)
    generator, rng = torch.Generator().manual_seed(0), random.Random(0)
    started, step = time.monotonic(), 0
    model.train()
    while (progress := (time.monotonic() - started) / (60 * args.minutes)) < 1:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args.lr, progress)
        quality = torch.tensor([rng.randrange(model.num_qualities) for _ in range(args.batch_size)])
        loss = relaxed_loss(model, sampler.batch(args.batch_size, rng), quality, args.tau, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        step += 1
        if step % args.eval_every == 0:
            report_validation(evaluate(model, validation, torch.device("cpu")), step, log)
            torch.save(model.state_dict(), args.out / "model.pt")
    report_validation(evaluate(model, validation, torch.device("cpu")), step, log)
    torch.save(model.state_dict(), args.out / "model.pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="hyper weight file (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    commands = parser.add_subparsers(dest="command", required=True)
    loop = commands.add_parser("closed-loop")
    loop.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    loop.add_argument("--images", type=int, default=6)
    loop.add_argument("--quality", type=int, default=6)
    loop.add_argument("--variants", default="p0.5,p1,l0.5,l1")
    tune = commands.add_parser("finetune")
    tune.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    tune.add_argument("--minutes", type=float, default=40)
    tune.add_argument("--lr", type=float, default=1e-5)
    tune.add_argument("--tau", type=float, default=0.25)
    tune.add_argument("--batch-size", type=int, default=4)
    tune.add_argument("--eval-every", type=int, default=1000)
    tune.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    (closed_loop if args.command == "closed-loop" else finetune)(args)


if __name__ == "__main__":
    main()
