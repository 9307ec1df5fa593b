"""Showed: 128-pixel training crops taught the hyperprior image borders; 256 crops fixed most of it
(docs/notes/2026-11-whole-images-vs-crops.md).

Does a hyper model work as well on whole images as on its training crops?

    python benchmarks/experiments/tile_gap.py models/weights/hyper.pt [--kodak DIR] [--quality 4] [--every 3]

Estimates the rate (model likelihoods, rounded latents) and PSNR of Kodak images coded whole and
cut into independent 256² and 128² tiles. A model that has learnt its entropy model for large
images needs more bits for tiles (less context, more borders); if tiles are cheaper, the model has
learnt mostly border statistics from crops that were too small (a 128² crop has a 2×2 hyperlatent).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lic_cli.imageio import list_images, load_rgb_array
from models import zoo


def tiles(x: torch.Tensor, size: int) -> torch.Tensor:
    """(1, 3, H, W) -> (n, 3, size, size), dropping the remainder at the right and bottom edges."""
    blocks = x.unfold(2, size, size).unfold(3, size, size)
    return blocks.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, size, size)


def rate_and_error(model, x: torch.Tensor, quality: int) -> tuple[float, float, float]:
    """(y bits, z bits, sum of squared errors) of a batch, with rounded latents."""
    with torch.no_grad():
        out = model(x, torch.full((x.shape[0],), quality))
    y_bits = float(-torch.log2(out["y_likelihoods"]).sum())
    z_bits = float(-torch.log2(out["z_likelihoods"]).sum())
    return y_bits, z_bits, float(((out["x_hat"].clamp(0, 1) - x) ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--quality", type=int, default=4, help="1-based quality (default: 4)")
    parser.add_argument("--every", type=int, default=3, help="use every n-th image (default: 3, i.e. 8 of 24)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # The file's own configuration and parameters (no retargeting to the current quality ladder).
    model = zoo.load_codec("hyper", args.weights, compute="fp32").codec.model
    images = [torch.from_numpy(load_rgb_array(p)).permute(2, 0, 1).float()[None] / 255
              for p in list_images(args.kodak)[:: args.every]]
    print(f"{args.weights} q{args.quality}, {len(images)} images (sizes are multiples of 128)")
    for size in (None, 256, 128):
        y_bits = z_bits = squared_error = pixels = 0.0
        for image in images:
            batch = image if size is None else tiles(image, size)
            y, z, error = rate_and_error(model, batch, args.quality - 1)
            y_bits, z_bits, squared_error = y_bits + y, z_bits + z, squared_error + error
            pixels += batch.shape[0] * batch.shape[2] * batch.shape[3]
        psnr = 10 * np.log10(pixels * 3 / squared_error)
        print(f"{'whole images' if size is None else f'{size}² tiles':>13}: {(y_bits + z_bits) / pixels:.4f} bpp "
              f"(y {y_bits / pixels:.4f}, z {z_bits / pixels:.4f}), PSNR {psnr:.2f} dB")


if __name__ == "__main__":
    main()
