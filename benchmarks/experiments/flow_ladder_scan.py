"""Estimated bpp / PSNR of flow weights on 13 training crops (10 photos, 3 graphics; never Kodak):
at uniform candidate steps (how the shipped ladder was chosen), or at every quality of one or more
weight files (how `lic tune`'s fitted steps compared with the nominal ones). See
docs/notes/2026-12-02-flow-first-run.md.

    python benchmarks/experiments/flow_ladder_scan.py --steps 160,112,80,56,40,28,20,14,10,6,3,1 runs/flow/last.pt
    python benchmarks/experiments/flow_ladder_scan.py runs/flow/flow-ladder.pt runs/flow/flow-tuned.pt
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models import zoo
from models.flow.network import FlowCompression, build, pixels_to_flow

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def crops() -> list[torch.Tensor]:
    photos = sorted((DATA / "train").glob("*.jpg"))[::97][:10]
    files = photos + sorted((DATA / "train-graphics").glob("*.png"))[::40][:3]
    result = []
    for path in files:
        array = np.asarray(Image.open(path).convert("RGB"))
        height, width = min(256, array.shape[0] // 8 * 8), min(256, array.shape[1] // 8 * 8)
        result.append(torch.from_numpy(array[:height, :width].copy()).permute(2, 0, 1)[None].float() / 255)
    return result


def load(path: Path) -> FlowCompression:
    if path.name == "last.pt":  # a training checkpoint
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = build(state["config"])
        model.load_state_dict(state["model"])
    else:
        model = build(zoo.weight_file_config(path, "flow"))
        model.load_state_dict(zoo.load_network_state(path, "flow", model))
    return model.eval()


def measure(model: FlowCompression, images: list[torch.Tensor], steps) -> tuple[float, float]:
    """Mean estimated bpp and PSNR (8-bit output) with hard rounding at steps (Δ0, Δ1, Δ2)."""
    rates, scores = [], []
    for x in images:
        out = model.relaxed(model.flow(pixels_to_flow(x)), steps, noisy=False, preview=False)
        rates.append(float(sum(-torch.log2(lik).sum() for lik in out["likelihoods"])) / (x.shape[2] * x.shape[3]))
        mse = float(((torch.round(out["x_hat"].clamp(0, 1) * 255) / 255 - x) ** 2).mean())
        scores.append(10 * np.log10(1 / max(mse, 1e-10)))
    return float(np.mean(rates)), float(np.mean(scores))


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--steps", help="uniform steps to scan instead of the files' qualities")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = crops()
    for path in args.weights:
        model = load(path)
        if args.steps:
            for step in (float(v) for v in args.steps.split(",")):
                t = torch.tensor([[[[step]]]])
                bpp, psnr = measure(model, images, (t.expand(1, 48, 1, 1), t, t))
                print(f"{path} step {step:g}: {bpp:.3f} bpp {psnr:.2f} dB", flush=True)
        else:
            for quality in range(model.num_qualities):
                bpp, psnr = measure(model, images, model.steps(torch.tensor([quality])))
                print(f"{path} q{quality + 1}: {bpp:.3f} bpp {psnr:.2f} dB", flush=True)


if __name__ == "__main__":
    main()
