"""Does --reg cse help? Paired fine-tunes of the shipped hyper file, with and without the
regularizer, for two seeds each: same data, steps, schedule and crops (the regularizer's model
is seeded apart, so a pair draws the same crops and noise). Each result is measured from real
files on Kodak and on held-out illustrations, as a BD-rate (PSNR) against the shipped file.

    python benchmarks/cse_pairs.py --steps 2000 --out docs/results-cse.json

Training runs go to --runs (resumable: a finished run is not repeated). The spread between the
two seeds of the same setting is the noise a regularizer's effect has to beat.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cpm_kodak import cpu_name
from benchmarks.kodak_hyper import measure
from lic_cli.bench.bdrate import bd_rate
from lic_cli.imageio import list_images
from models import zoo

PAIRED = ("plain", "cse")  # run for every seed; further --alphas run for the first seed only


def split_graphics(graphics: Path, held_out: int, work: Path) -> tuple[Path, Path]:
    """(training folder, evaluation folder) of illustrations: the last `held_out` are never trained on."""
    paths = list_images(graphics)
    folders = (work / "graphics-train", work / "graphics-eval")
    for folder, part in zip(folders, (paths[:-held_out], paths[-held_out:]), strict=True):
        folder.mkdir(parents=True, exist_ok=True)
        for path in part:
            link = folder / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
    return folders


def settings(alphas: list[float]) -> dict[str, list[str]]:
    """Run name -> extra `lic train` options: no regularizer, then --reg cse at each alpha."""
    named = {"plain": []}
    for i, alpha in enumerate(alphas):
        named["cse" if i == 0 else f"cse-a{alpha:g}"] = ["--reg", "cse", "--alpha", f"{alpha:g}"]
    return named


def fine_tune(setting: str, seed: int, args, mix: Path) -> Path:
    out = args.runs / f"{setting}-seed{seed}"
    weights = out / "hyper.pt"
    if weights.exists():
        return weights
    command = [sys.executable, "-m", "lic_cli", "train", "--model", "hyper", "--init", str(args.init),
               "--data", str(args.data), "--mix", str(mix), "--mix-share", "0.2", "--out", str(out),
               "--steps", str(args.steps), "--minutes", "1000", "--batch-size", "4", "--crop", "256",
               "--lr", str(args.lr), "--straight-through-after", "0", "--seed", str(seed),
               "--threads", str(args.threads), "--eval-every", "100000", *settings(args.alphas)[setting]]
    if (out / "last.pt").exists():
        command.append("--resume")
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    return weights


def minutes_of(run: Path) -> float:
    import torch
    return round(float(torch.load(run / "last.pt", map_location="cpu", weights_only=True)["elapsed_seconds"]) / 60, 1)


def measured_curve(folder: Path, weights: Path, cache: Path, threads: int) -> tuple[list[float], list[float]]:
    """The (bpp, PSNR) points of a weight file on a folder, measured once (cached next to the run)."""
    if cache.exists():
        return tuple(json.loads(cache.read_text()))
    points = curve(measure(folder, "hyper", weights, list(range(1, 7)), threads))
    cache.write_text(json.dumps(points))
    return points


def curve(result: dict) -> tuple[list[float], list[float]]:
    points = sorted(result["summary"].values(), key=lambda s: s["bpp"])
    return [p["bpp"] for p in points], [p["psnr"] for p in points]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    parser.add_argument("--graphics", type=Path, default=Path("../shared/data/train-graphics"))
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--init", type=Path, default=zoo.default_weights_path("hyper"))
    parser.add_argument("--held-out", type=int, default=20, help="illustrations kept out of training for evaluation")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--alphas", type=lambda text: [float(a) for a in text.split(",")], default=[0.1],
                        help="--reg cse weights: the first is paired over every seed, the others run once")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("runs/cse-pairs"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    mix, held_out = split_graphics(args.graphics, args.held_out, args.runs)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [(setting, seed) for seed in seeds for setting in PAIRED]
    runs += [(setting, seeds[0]) for setting in settings(args.alphas) if setting not in PAIRED]
    weights = {f"{setting}-seed{seed}": fine_tune(setting, seed, args, mix) for setting, seed in runs}
    sets = {"kodak": args.kodak, "illustrations": held_out}
    report: dict = {"command": "python " + " ".join(sys.argv), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                    "cpu": cpu_name(), "threads": args.threads, "steps": args.steps, "lr": args.lr, "seeds": seeds,
                    "alphas": args.alphas, "init": str(args.init), "held_out_illustrations": args.held_out,
                    "train_minutes": {run: minutes_of(path.parent) for run, path in weights.items()},
                    "sets": {}}
    for name, folder in sets.items():
        shipped = measured_curve(folder, args.init, args.runs / f"shipped-{name}.json", args.threads)
        rows = {}
        for run, path in weights.items():
            rows[run] = bd_rate(*shipped, *measured_curve(folder, path, path.parent / f"measured-{name}.json",
                                                          args.threads))
            print(f"{name}: {run}: {rows[run]:+.2f}% BD-rate vs shipped", flush=True)
        paired = {setting: [rows[f"{setting}-seed{s}"] for s in seeds] for setting in PAIRED}
        report["sets"][name] = {"bd_rate_vs_shipped": rows,
                                "seed_spread": {k: float(np.ptp(v)) for k, v in paired.items()},
                                "mean": {k: float(np.mean(v)) for k, v in paired.items()}}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
