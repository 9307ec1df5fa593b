"""Showed: the synthesis alone is not what caps hyper at high rates (docs/notes/2026-11-high-rate-gap.md).

Is the synthesis transform what caps hyper at high rates? Train the synthesis alone.

The analysis, hyperprior and gains of a trained weight file are frozen, so every latent, and every
rate, stays exactly what the codec codes. Only the synthesis g_s trains, on the rounded latents
the decoder sees, with the distortion term of hyper's training loss (lambda_q * 255^2 * MSE, so
the qualities keep their weights). With ``--extra K`` its three hidden layers first grow by K
channels each without changing its output (new units get fresh input weights, nothing reads them
yet); ``--extra 0`` is the control, the same training without new capacity. The PSNR each gains
on Kodak at unchanged rate measures how much the synthesis, rather than the latent, limits the
curve. The rate term never sees the new units, so they cannot be silenced the way grown latent
channels were.

    python benchmarks/experiments/synthesis_capacity.py --extra 64 --minutes 22 --out runs/synth-wide.json

The transforms run in bf16 where the CPU has it natively and in fp32 elsewhere (``--precision``;
emulated bf16 is many times slower); the session-15 numbers in docs/results.md are bf16.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lic_cli.imageio import load_rgb_array
from lic_cli.train import CropSampler, TrainOptions, learning_rate, split_images
from models import zoo
from models.core import precision
from models.core.layers import GDN, deconv
from models.hyper.network import MeanScaleHyperprior


def widen_synthesis(g_s: nn.Sequential, extra: int) -> nn.Sequential:
    """g_s = deconv, IGDN, deconv, IGDN, deconv, IGDN, deconv with `extra` more hidden channels;
    the same function as g_s until training moves the new units' outgoing weights off zero."""
    old_convs = [g_s[i] for i in (0, 2, 4, 6)]
    hidden = old_convs[0].out_channels
    wide = hidden + extra
    sizes = [(old_convs[0].in_channels, wide), (wide, wide), (wide, wide), (wide, old_convs[3].out_channels)]
    layers: list[nn.Module] = []
    for index, (old, (cin, cout)) in enumerate(zip(old_convs, sizes)):
        new = deconv(cin, cout)
        with torch.no_grad():
            # ConvTranspose2d weight: (in, out, k, k). Fresh weights feed the new outputs at a
            # quarter of their default size; new inputs feed nothing.
            new.weight.mul_(0.25)
            new.weight[old.in_channels:, :].zero_()
            new.weight[: old.in_channels, : old.out_channels] = old.weight
            new.bias.zero_()
            new.bias[: old.out_channels] = old.bias
        layers.append(new)
        if index < 3:
            gdn = GDN(wide, inverse=True)
            old_gdn = g_s[2 * index + 1]
            with torch.no_grad():
                gdn.beta.raw[:hidden] = old_gdn.beta.raw
                gdn.gamma.raw[:hidden, :hidden] = old_gdn.gamma.raw
            layers.append(gdn)
    return nn.Sequential(*layers)


@torch.no_grad()
def decoder_inputs(model: MeanScaleHyperprior, x: torch.Tensor, quality: torch.Tensor,
                   arithmetic: str) -> torch.Tensor:
    """What g_s receives when the codec decodes x at `quality`: rounded latents, inverse gain."""
    with precision.autocast(arithmetic, "cpu"):
        features = model.g_a(x)
    y = features.float() * model.gain(model.log_gain_y, quality)
    z = model.h_a(y).float() * model.gain(model.log_gain_z, quality)
    means, _ = model.h_s(torch.round(z) * model.gain(model.log_inv_gain_z, quality)).float().chunk(2, dim=1)
    y_hat = torch.round(y - means) + means
    return y_hat * model.gain(model.log_inv_gain_y, quality)


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    pixels = (x_hat.clamp(0, 1) * 255).round()
    mse = float(((x * 255 - pixels) ** 2).mean())
    return 10 * math.log10(255**2 / mse)


@torch.no_grad()
def kodak_psnr(model: MeanScaleHyperprior, g_s: nn.Sequential, images: list[torch.Tensor],
               arithmetic: str) -> list[float]:
    """Mean PSNR per quality (transforms in `arithmetic`, as the codec runs them, 8-bit pixels)."""
    g_s.eval()
    means = []
    for q in range(model.num_qualities):
        quality = torch.tensor([q])
        scores = []
        for x in images:
            with precision.autocast(arithmetic, "cpu"):
                x_hat = g_s(decoder_inputs(model, x, quality, arithmetic)).float()
            scores.append(psnr(x, x_hat))
        means.append(float(np.mean(scores)))
    g_s.train()
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=zoo.default_weights_path("hyper"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--extra", type=int, default=64, help="hidden channels to add (0: control)")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=precision.CHOICES, default="auto",
                        help="transform arithmetic; auto: bf16 only where the CPU has it natively")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    arithmetic = precision.resolve(args.precision, "cpu")
    print(f"transforms in {arithmetic}", flush=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    payload = torch.load(args.weights, map_location="cpu", weights_only=True)
    model = zoo.build_trainable("hyper", payload["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["network"].items()})
    model.eval().requires_grad_(False)
    g_s = widen_synthesis(model.g_s, args.extra) if args.extra else model.g_s
    g_s.requires_grad_(True).train()

    # The odd-numbered half of Kodak keeps each evaluation to about a minute.
    kodak = [torch.from_numpy(load_rgb_array(p)).permute(2, 0, 1).float().div(255)[None]
             .contiguous(memory_format=torch.channels_last) for p in sorted(args.kodak.glob("*.png"))[::2]]
    before = kodak_psnr(model, g_s, kodak, arithmetic)
    print("before", " ".join(f"{v:.3f}" for v in before), flush=True)

    paths, _ = split_images(TrainOptions(model="hyper", data=args.data, out=args.out))  # lic train's held-out stay out
    sampler = CropSampler(paths, args.crop, torch.device("cpu"), print)
    optimizer = torch.optim.Adam(g_s.parameters(), lr=args.lr)
    rng = random.Random(args.seed)
    start, step, budget = time.monotonic(), 0, args.minutes * 60
    while (elapsed := time.monotonic() - start) < budget:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args.lr, elapsed / budget)
        x = sampler.batch(args.batch_size, rng)
        quality = torch.tensor([rng.randrange(model.num_qualities) for _ in range(args.batch_size)])
        inputs = decoder_inputs(model, x, quality, arithmetic)
        with precision.autocast(arithmetic, "cpu"):
            x_hat = g_s(inputs).float()
        mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
        # The distortion term of hyper's R-D loss (the rate is fixed here): without lambda_q the
        # low qualities' larger errors would take the synthesis away from the high ones.
        loss = (model.lambdas[quality] * 255**2 * mse).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(g_s.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 250 == 0:
            batch_psnr = 10 * math.log10(1 / mse.mean().item())
            print(f"step {step} | {elapsed / 60:.1f} min | psnr {batch_psnr:.2f} dB", flush=True)

    after = kodak_psnr(model, g_s, kodak, arithmetic)
    print("after ", " ".join(f"{v:.3f}" for v in after), flush=True)
    print("gain  ", " ".join(f"{a - b:+.3f}" for a, b in zip(after, before)), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "weights": str(args.weights), "extra": args.extra, "minutes": args.minutes, "steps": step,
        "lr": args.lr, "batch_size": args.batch_size, "crop": args.crop, "threads": args.threads,
        "precision": arithmetic,
        "psnr_before": before, "psnr_after": after,
        "parameters": sum(p.numel() for p in g_s.parameters()),
    }, indent=1))


if __name__ == "__main__":
    main()
