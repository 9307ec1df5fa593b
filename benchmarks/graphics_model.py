"""The graphics-tuned model and `--model auto`, from `lic bench` runs on illustrations and photos:
BD-rates against HEIC and against hyper-ctx (PSNR and MS-SSIM), encode seconds, and how often
auto picks which model.

    python benchmarks/graphics_split.py --out runs/graphics-split
    W=hyper-ctx-graphics=models/weights/hyper-ctx-graphics.pt
    lic bench runs/graphics-split/heldout --models hyper-ctx,hyper-ctx-graphics,auto --codecs heic \\
        --weights $W --out bench-out/graphics-heldout
    lic bench ../shared/data/kodak --models hyper-ctx,hyper-ctx-graphics,auto --codecs heic \\
        --weights $W --out bench-out/graphics-kodak
    python benchmarks/graphics_model.py bench-out/graphics-heldout bench-out/graphics-kodak \\
        --out docs/results-graphics.json
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lic_cli.bench.report import bd_rates

ANCHORS = ("heic", "lic-hyper-ctx")


def summarise(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    curves = summary["curves"]
    picks = collections.Counter()
    for path in (folder / "cache" / "lic-auto").rglob("*.json"):
        picks[json.loads(path.read_text()).get("model", "?")] += 1
    encode = {codec: sum(p["encode_s"] for p in points) / len(points) for codec, points in curves.items()}
    return {"folder": str(folder), "command": summary.get("command"), "images": summary.get("images"),
            "bd_rate": {anchor: bd_rates(curves, anchor) for anchor in ANCHORS if anchor in curves},
            "encode_seconds": encode, "auto_picks": dict(picks)}


def markdown(result: dict) -> str:
    lines = []
    for run in result["runs"]:
        lines += [f"`{run['command']}` ({run['images']} images):", "",
                  "| model | BD-rate vs HEIC, PSNR | vs HEIC, MS-SSIM | vs hyper-ctx, PSNR | vs hyper-ctx, MS-SSIM | "
                  "encode (s/image) |", "|---|---|---|---|---|---|"]
        for codec in sorted(c for c in run["encode_seconds"] if c.startswith("lic-")):
            cells = [_pct(run["bd_rate"].get(anchor, {}).get(codec, {}).get(metric))
                     for anchor in ANCHORS for metric in ("psnr", "ms_ssim")]
            lines.append(f"| {codec.removeprefix('lic-')} | " + " | ".join(cells)
                         + f" | {run['encode_seconds'][codec]:.2f} |")
        total = sum(run["auto_picks"].values())
        picks = ", ".join(f"{model} {count} ({count / total:.0%})"
                          for model, count in sorted(run["auto_picks"].items()))
        lines += ["", f"auto's picks over every image and quality: {picks}.", ""]
    return "\n".join(lines)


def _pct(value) -> str:
    return "–" if value is None else f"{value:+.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="output folders of lic bench")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown", action="store_true", help="print the tables of --out's JSON")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.folders[0].read_text())))
        return
    result = {"runs": [summarise(folder) for folder in args.folders]}
    print(markdown(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
