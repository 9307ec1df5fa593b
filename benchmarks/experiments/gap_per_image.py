"""Showed: on kodim08/13/24 the transforms cannot reach WebP's PSNR at q6's rate even unrounded
(docs/notes/2026-11-hyper-cpu-training.md).

Per Kodak image: how far a lic operating point is from another codec's curve for the same image,
and, for chosen images, whether the transforms could reach that codec's PSNR with nothing rounded.

Reads the per-image points of a `lic bench` run (points.csv). For each image, the other codec's
PSNR at lic's bit rate is interpolated in log rate between that image's points; the gap is lic's
PSNR minus it. `--ceiling` then runs `latent_ceiling.transform_psnr` (fp32) on the named images.

    python benchmarks/experiments/gap_per_image.py --bench bench-out/kodak --setting q=6 \\
        --ceiling kodim08,kodim24,kodim13,kodim19,kodim23
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from latent_ceiling import transform_psnr

from lic_cli.imageio import load_rgb_array
from models import zoo


def read_points(bench: Path) -> list[dict]:
    with (bench / "points.csv").open() as handle:
        return list(csv.DictReader(handle))


def psnr_at_rate(points: list[dict], bpp: float) -> float:
    """PSNR of a codec's curve (its points for one image) at bpp, interpolated in log rate."""
    curve = sorted((float(p["bpp"]), float(p["psnr"])) for p in points)
    return float(np.interp(np.log(bpp), np.log([b for b, _ in curve]), [q for _, q in curve]))


def gaps(rows: list[dict], model: str, setting: str, reference: str) -> list[tuple[str, float, float, float]]:
    """(image, lic bpp, lic PSNR, lic PSNR minus the reference's at that rate), worst first."""
    result = []
    for row in rows:
        if row["codec"] != f"lic-{model}" or row["setting"] != setting:
            continue
        others = [r for r in rows if r["codec"] == reference and r["image"] == row["image"]]
        bpp, quality = float(row["bpp"]), float(row["psnr"])
        result.append((row["image"], bpp, quality, quality - psnr_at_rate(others, bpp)))
    return sorted(result, key=lambda item: item[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=Path("bench-out/kodak"), help="a lic bench --out folder")
    parser.add_argument("--model", default="hyper")
    parser.add_argument("--setting", default="q=6", help="the lic operating point, as in points.csv")
    parser.add_argument("--reference", default="webp")
    parser.add_argument("--ceiling", default="", help="comma-separated image stems for transform_psnr")
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--weights", type=Path, help="hyper weight file (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    found = gaps(read_points(args.bench), args.model, args.setting, args.reference)
    if not found:
        raise SystemExit(f"no lic-{args.model} {args.setting} points in {args.bench / 'points.csv'}")
    for image, bpp, quality, gap in found:
        print(f"{image}: {bpp:.3f} bpp {quality:.2f} dB, {gap:+.2f} dB against {args.reference}")
    print(f"mean of the per-image gaps: {np.mean([g for *_, g in found]):+.2f} dB")
    if not args.ceiling:
        return
    torch.set_num_threads(args.threads)
    model = zoo.load_codec(args.model, args.weights, compute="fp32").codec.model
    quality = int(args.setting.split("=")[1]) - 1
    for stem in args.ceiling.split(","):
        rounded, unrounded, _ = transform_psnr(model, load_rgb_array(args.kodak / f"{stem}.png"))[quality]
        print(f"{stem}: {args.setting} rounded {rounded:.2f} dB, nothing rounded {unrounded:.2f} dB")


if __name__ == "__main__":
    main()
