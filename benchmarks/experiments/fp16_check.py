"""Showed: fp16 weight storage is lossless enough (Kodak R-D of the fp32 checkpoint and the fp16 file agree).

Is fp16 storage lossless enough? Kodak R-D of the fp32 checkpoint vs the fp16 weight file.

    python benchmarks/experiments/fp16_check.py runs/hyper/last.pt models/weights/hyper.pt

Both are evaluated with the same fp32 arithmetic and the model's rounded forward pass (estimated
bits), so the only difference is the parameter storage.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from lic_cli.imageio import list_images, load_rgb_array
from models import zoo
from models.core.geometry import pad_to_multiple
from models.hyper.network import DOWNSAMPLING


def evaluate(model, images, quality: int) -> tuple[float, float]:
    bpps, psnrs = [], []
    with torch.no_grad():
        for pixels in images:
            x = pad_to_multiple(torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255, DOWNSAMPLING)
            q = torch.tensor([quality])
            stats = model.rate_distortion(x, q, model(x, q))
            bpps.append(float(stats["bpp"]))
            psnrs.append(float(stats["psnr"]))
    return float(np.mean(bpps)), float(np.mean(psnrs))


def main() -> None:
    checkpoint, weights = Path(sys.argv[1]), Path(sys.argv[2])
    kodak = Path(sys.argv[3]) if len(sys.argv) > 3 else Path("../shared/data/kodak")
    torch.set_num_threads(2)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    full = zoo.build_trainable(state["zoo_name"], state["config"])
    full.load_state_dict(state["model"])
    half = zoo.build_trainable(state["zoo_name"], state["config"])
    half.load_state_dict(zoo.load_network_state(weights, state["zoo_name"]))
    images = [load_rgb_array(p)[:512, :512] for p in list_images(kodak)[:6]]
    for quality in (0, full.num_qualities - 1):
        (b32, p32), (b16, p16) = evaluate(full.eval(), images, quality), evaluate(half.eval(), images, quality)
        print(f"q{quality + 1}: fp32 {b32:.4f} bpp {p32:.3f} dB | fp16 {b16:.4f} bpp {p16:.3f} dB "
              f"| delta {b16 - b32:+.4f} bpp {p16 - p32:+.3f} dB")


if __name__ == "__main__":
    main()
