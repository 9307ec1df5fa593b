"""How closely `lic encode --target-size / --target-psnr` meets its targets on Kodak, and at what cost.

For every image and target: the achieved bytes (or PSNR), the number of encodes the search ran,
and the wall time, once over the model's continuous qualities (what lic does) and once over its
six operating points only (what a model without continuous qualities could do).

    python benchmarks/rate_control_kodak.py --model hyper --sizes 20000,40000,80000 --psnrs 30,33,36 \\
        --out docs/results-rate-control.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cpm_kodak import cpu_name
from lic_cli.codec import CodecSession
from lic_cli.imageio import list_images, read_image
from lic_cli.rate_control import Target, TargetError, encode_to_target


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    session = CodecSession()
    loaded = session.get(args.model)
    images = [(p.name, read_image(p.read_bytes())) for p in list_images(args.kodak)[: args.images]]
    targets = [Target("size", float(v)) for v in args.sizes.split(",") if v] + \
              [Target("psnr", float(v)) for v in args.psnrs.split(",") if v]
    rows, summaries = [], []
    top = loaded.codec.qualities.count
    for target in targets:
        for whole in (False, True):
            for name, image in images:
                started = time.perf_counter()
                try:
                    achieved = encode_to_target(image, loaded, target, session, whole_qualities=whole)
                except TargetError:
                    rows.append({"target": target.kind, "value": target.value, "search": "points" if whole
                                 else "continuous", "image": name, "met": False})
                    continue
                rows.append({"target": target.kind, "value": target.value, "image": name, "met": True,
                             "search": "points" if whole else "continuous", "bytes": len(achieved.data),
                             "measure": achieved.measure, "quality": achieved.quality + 1,
                             "encodes": achieved.encodes, "seconds": time.perf_counter() - started})
            summaries.append(summarise(rows, target, whole, top))
    return {"model": args.model, "command": " ".join(["python benchmarks/rate_control_kodak.py", *sys.argv[1:]]),
            "cpu": cpu_name(), "summaries": summaries, "weights_hash": loaded.weights_id.hex(),
            "threads": args.threads, "images": len(images), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "rows": rows}


def summarise(rows: list[dict], target: Target, whole: bool, top: int = 6) -> dict:
    """How far from the target: the unused share of a byte budget (where it binds: images whose top
    quality fits are coded at it), or the dB above a PSNR floor."""
    search = "points" if whole else "continuous"
    mine = [r for r in rows if r["target"] == target.kind and r["value"] == target.value and r["search"] == search]
    met = [r for r in mine if r["met"]]
    if target.kind == "size":
        gaps = [(target.value - r["measure"]) / target.value * 100 for r in met if r["quality"] < top]
    else:
        gaps = [r["measure"] - target.value for r in met]
    summary = {"target": target.describe(), "search": search, "met": f"{len(met)}/{len(mine)}", "gaps": len(gaps),
               "mean_gap": float(np.mean(gaps)) if gaps else None, "max_gap": float(np.max(gaps)) if gaps else None,
               "encodes": float(np.mean([r["encodes"] for r in met])) if met else None,
               "seconds": float(np.mean([r["seconds"] for r in met])) if met else None}
    unit = f"% of the budget unused ({len(gaps)} where it binds)" if target.kind == "size" else "dB above the floor"
    print(f"{summary['target']:>28} {search:>10}: met {summary['met']}, mean {summary['mean_gap']:.2f} {unit} "
          f"(max {summary['max_gap']:.2f}), {summary['encodes']:.1f} encodes, {summary['seconds']:.2f} s/image",
          flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--model", default="hyper")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--sizes", default="20000,40000,80000", help="byte budgets, comma-separated")
    parser.add_argument("--psnrs", default="30,33,36", help="PSNR floors in dB, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
