"""A candidate weight file against the shipped one, from two `lic bench` runs on the same images:
BD-rates of both against the classical codecs and of the candidate against the shipped file, PSNR
and MS-SSIM. What decides whether a continued training run ships. Bytes do not depend on the day,
so the shipped file's run may be an earlier one (its `summary.json`, e.g. docs/results-*-bench.json).

    lic bench IMAGES --models flow --codecs jpeg,heic --out bench-out/flow-old
    lic bench IMAGES --models flow --codecs jpeg,heic --weights flow=runs/flow2/flow.pt --out bench-out/flow-new
    python benchmarks/weights_compare.py flow bench-out/flow-old bench-out/flow-new \\
        --out docs/results-flow-continued.json
    python benchmarks/weights_compare.py --markdown docs/results-flow-continued.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lic_cli.bench.report import bd_rates


def compare(model: str, shipped: Path, candidate: Path) -> dict:
    old, new = (json.loads((folder / "summary.json").read_text()) for folder in (shipped, candidate))
    if old["images"] != new["images"]:
        raise SystemExit(f"the runs coded different images ({old['images']} and {new['images']})")
    key = f"lic-{model}"
    # The other codecs' bytes do not depend on the weights: a shipped-file run from an earlier
    # day may be reused, and the candidate's run may add codecs (its curves win where both have one).
    curves = {name: points for run in (old, new) for name, points in run["curves"].items() if name != key}
    curves[f"{key} (shipped)"] = old["curves"][key]
    curves[f"{key} (candidate)"] = new["curves"][key]
    anchors = [name for name in ("jpeg", "heic") if name in curves] + [f"{key} (shipped)"]
    return {"model": model, "images": old["images"], "commands": [old["command"], new["command"]],
            "machine": old.get("machine"), "date": new.get("date"), "curves": curves,
            "bd_rate": {anchor: bd_rates(curves, anchor) for anchor in anchors}}


def bd_table(result: dict, shipped: str = "shipped", candidate: str = "candidate") -> list[str]:
    """The BD-rate rows of a comparison, both lic curves against each anchor, the two files called
    `shipped` and `candidate` (docs/results.md calls them "replaced file" and "this file")."""
    key = f"lic-{result['model']}"
    labels = {f"{key} (shipped)": f"{key} ({shipped})", f"{key} (candidate)": f"{key} ({candidate})"}
    lines = ["| BD-rate of | against | PSNR | MS-SSIM |", "|---|---|---|---|"]
    for anchor, rates in result["bd_rate"].items():
        for name, label in labels.items():
            if name == anchor:
                continue
            psnr, ms_ssim = rates[name]["psnr"], rates[name]["ms_ssim"]
            lines.append(f"| {label} | {labels.get(anchor, anchor)} | {_pct(psnr)} | {_pct(ms_ssim)} |")
    return lines


def markdown(result: dict) -> str:
    key = f"lic-{result['model']}"
    lines = bd_table(result)
    lines += ["", "| curve | setting | bpp | PSNR (dB) | MS-SSIM |", "|---|---|---|---|---|"]
    for name in (f"{key} (shipped)", f"{key} (candidate)"):
        for point in result["curves"][name]:
            lines.append(f"| {name} | {point['setting']} | {point['bpp']:.4f} | {point['psnr']:.2f} | "
                         f"{point['ms_ssim']:.4f} |")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("shipped", nargs="?", type=Path, help="lic bench output of the shipped weights")
    parser.add_argument("candidate", nargs="?", type=Path, help="lic bench output of the candidate (--weights)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print the tables of an earlier comparison")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    if not (args.model and args.shipped and args.candidate):
        parser.error("give MODEL SHIPPED CANDIDATE (or --markdown JSON)")
    result = compare(args.model, args.shipped, args.candidate)
    print(markdown(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
