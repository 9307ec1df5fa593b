"""SGA refinement vs plain encoding of the same model: real file sizes, PSNR, BD-rate, time.

    python benchmarks/sga_kodak.py --kodak ../shared/data/kodak --steps 100,300 --out docs/results-sga.json
    python benchmarks/sga_kodak.py --images 4 --crop 256 --steps 100     # a quick CPU look
    python benchmarks/sga_kodak.py --model hyper-ctx --images 4 --qualities 2,4,6 --steps 100

Every point is a real container written by `encode_image` and decoded by `decode_file`.
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from lic_cli.bench.bdrate import bd_rate
from lic_cli.codec import CodecSession, decode_file, encode_image
from lic_cli.imageio import ImageData, list_images, load_rgb_array
from lic_cli.metrics import psnr
from models.interface import EncodeOptions, RefineOptions


def centre_crop(pixels: np.ndarray, size: int | None) -> np.ndarray:
    if not size:
        return pixels
    top, left = (pixels.shape[0] - size) // 2, (pixels.shape[1] - size) // 2
    return np.ascontiguousarray(pixels[top : top + size, left : left + size])


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    session = CodecSession({args.model: args.weights} if args.weights else {}, engine="torch")
    loaded = session.get(args.model)
    images = [(p.name, centre_crop(load_rgb_array(p), args.crop)) for p in list_images(args.kodak)[: args.images]]
    qualities = [int(q) for q in args.qualities.split(",")]
    variants = [("plain", EncodeOptions())] + [(f"sga-{s}", EncodeOptions(RefineOptions(steps=s, lr=args.lr)))
                                         for s in args.steps]
    rows: list[dict] = []
    curves: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in variants}
    for name, options in variants:
        for quality in qualities:
            point = []
            for image_name, pixels in images:
                started = time.perf_counter()
                data = encode_image(ImageData(pixels), loaded, quality - 1, options)
                seconds = time.perf_counter() - started
                decoded = decode_file(data, session).image.pixels
                point.append({"variant": name, "quality": quality, "image": image_name,
                              "bpp": 8 * len(data) / (pixels.shape[0] * pixels.shape[1]),
                              "psnr": psnr(pixels, decoded), "encode_s": seconds})
            rows += point
            bpp, db, encode_s = (float(np.mean([r[key] for r in point])) for key in ("bpp", "psnr", "encode_s"))
            curves[name].append((bpp, db))
            print(f"{name} q{quality}: {bpp:.4f} bpp, {db:.2f} dB, {encode_s:.2f} s/img", flush=True)
    plain = curves["plain"]
    bd = {name: bd_rate([p[0] for p in plain], [p[1] for p in plain], [p[0] for p in c], [p[1] for p in c])
          for name, c in curves.items()}
    return {"model": args.model, "weights_hash": loaded.weights_id.hex(), "threads": args.threads, "crop": args.crop,
            "images": len(images), "qualities": qualities, "lr": args.lr, "compute": loaded.codec.compute,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "curves": curves,
            "bd_rate_vs_plain": bd, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--model", default="hyper", help="a model with --refine sga (lic models)")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--crop", type=int, help="centre crop size (default: whole images)")
    parser.add_argument("--qualities", default="1,2,3,4,5,6")
    parser.add_argument("--steps", type=lambda v: [int(s) for s in v.split(",")], default=[100, 300])
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args)
    for name, value in result["bd_rate_vs_plain"].items():
        print(f"BD-rate {name} vs plain: {'n/a' if value is None else f'{value:+.1f}%'}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
