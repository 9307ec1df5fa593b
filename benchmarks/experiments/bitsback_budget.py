"""Showed: hyper-bb's q tables needed scales below 0.5 grid steps; what is left of its net overhead is in the
network (docs/notes, results.md bits-back section).

Where hyper-bb's bits go, by the models' own likelihoods (fp32, no coding tables, no files).

    python benchmarks/experiments/bitsback_budget.py [--image ../shared/data/kodak/kodim01.png] [--qualities 1,2,4,6]

Per quality, in bits per pixel: `hyper`'s y (rounded around the predicted mean) and z; hyper-bb's
y on the integer lattice with z at the mean of q(z|y) and with z drawn from q (what the coder
does), its net z cost -log2 p(z) - H[q] (the training objective, with q's differential entropy),
and the bits q would carry back on the 1/8 grid if that grid were fine against q's scale
(H[q] + 3). Then the same with q's scale raised to the smallest one the weight file's q tables
hold, as the coder does when it snaps q to its tables (`--legacy-grid`: to 0.5 grid steps, the
smallest scale of the first q tables). Compare with
`benchmarks/bitsback_kodak.py`, which measures real files: a gap between the two is lost in the
coder's discretisation, not in the network.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from lic_cli.imageio import load_rgb_array
from models import zoo
from models.core.entropy import gaussian_likelihood
from models.hyper.bitsback import LEGACY_Q_SCALES, Z_STEP, gaussian_entropy_bits


def y_bits(model, y: torch.Tensor, z: torch.Tensor, quality: torch.Tensor, around_mean: bool) -> float:
    means, scales = model.h_s(z * model.gain(model.log_inv_gain_z, quality)).float().chunk(2, dim=1)
    y_hat = torch.round(y - means) + means if around_mean else torch.round(y)
    return float(-torch.log2(gaussian_likelihood(y_hat, means, scales)).sum())


@torch.no_grad()
def budget(image: torch.Tensor, quality: int, hyper, bb_codec, legacy_grid: bool = False) -> dict[str, float]:
    """hyper: the `hyper` network; bb_codec: the hyper-bb codec (its network and q scale grid)."""
    bb = bb_codec.model
    smallest_scale = (LEGACY_Q_SCALES if legacy_grid else bb_codec.q_scales)[0] * Z_STEP
    q = torch.tensor([quality])
    pixels = image.shape[2] * image.shape[3]

    y = hyper.g_a(image).float() * hyper.gain(hyper.log_gain_y, q)
    z = torch.round(hyper.h_a(y).float() * hyper.gain(hyper.log_gain_z, q))
    hyper_y = y_bits(hyper, y, z, q, around_mean=True)
    hyper_z = float(-torch.log2(hyper.density.likelihood(z)).sum())

    y = bb.g_a(image).float() * bb.gain(bb.log_gain_y, q)
    mean, log_scale = bb.posterior(y, q)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    sample = mean + log_scale.exp() * noise
    coded_log_scale = log_scale.clamp(min=math.log(smallest_scale))
    coded_sample = mean + coded_log_scale.exp() * noise
    return {"hyper y": hyper_y / pixels, "hyper z": hyper_z / pixels,
            "bb y (z at mean)": y_bits(bb, y, mean, q, around_mean=False) / pixels,
            "bb y (z ~ q)": y_bits(bb, y, sample, q, around_mean=False) / pixels,
            "bb net z": float(bb.z_net_bits(sample, log_scale).sum()) / pixels,
            "bb borrowed": float((gaussian_entropy_bits(log_scale) - math.log2(Z_STEP)).sum()) / pixels,
            "q scale / grid (median)": float(log_scale.exp().median()) / Z_STEP,
            "share of q below the table": float((log_scale < coded_log_scale).float().mean()),
            "bb y (z ~ tabled q)": y_bits(bb, y, coded_sample, q, around_mean=False) / pixels,
            "bb net z (tabled q)": float(bb.z_net_bits(coded_sample, coded_log_scale).sum()) / pixels,
            "bb borrowed (tabled q)": float((gaussian_entropy_bits(coded_log_scale) - math.log2(Z_STEP)).sum())
            / pixels}


def versus(total: float, anchor: float) -> str:
    return f"{total:.4f} ({100 * (total / anchor - 1):+.1f}%)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=Path("../shared/data/kodak/kodim01.png"))
    parser.add_argument("--qualities", default="1,2,4,6")
    parser.add_argument("--legacy-grid", action="store_true", help="q tables from 0.5 grid steps up")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    array = load_rgb_array(args.image)
    height, width = array.shape[0] // 64 * 64, array.shape[1] // 64 * 64
    image = torch.from_numpy(array[:height, :width]).permute(2, 0, 1).float()[None] / 255
    hyper = zoo.load_codec("hyper", compute="fp32").codec.model.eval()
    bb_codec = zoo.load_codec("hyper-bb", compute="fp32").codec
    bb_codec.model.eval()
    for quality in (int(q) for q in args.qualities.split(",")):
        parts = budget(image, quality - 1, hyper, bb_codec, args.legacy_grid)
        hyper_total = parts["hyper y"] + parts["hyper z"]
        bb_total = parts["bb y (z ~ q)"] + parts["bb net z"]
        tabled_total = parts["bb y (z ~ tabled q)"] + parts["bb net z (tabled q)"]
        print(f"q{quality}: " + ", ".join(f"{k} {v:.4f}" for k, v in parts.items()))
        print(f"    hyper {hyper_total:.4f} bpp; hyper-bb net {versus(bb_total, hyper_total)}, "
              f"with q as tabled {versus(tabled_total, hyper_total)}")


if __name__ == "__main__":
    main()
