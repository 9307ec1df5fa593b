"""Showed: with the shipped hyper-bb file, more BBVI steps barely lower the net size (kodim05 q3: -0.2% at 20
steps, -0.9% at 50).

How the number of reproducible_bbvi steps changes the net size of a hyper-bb file.

    python benchmarks/experiments/bbvi_steps.py --image ../shared/data/kodak/kodim05.png --quality 3 --steps 0,5,20,50

One image, 16 KiB of random side information carried; prints file bytes, net bytes (file minus
carried), the bytes borrowed by z-hat and the encode time. The decoder repeats the same BBVI steps,
so its extra time is the same.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from lic_cli.codec import CodecSession, encode_album
from lic_cli.imageio import read_image
from models.interface import EncodeOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=Path("../shared/data/kodak/kodim05.png"))
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--steps", default="0,5,20,50")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = CodecSession({"hyper-bb": args.weights} if args.weights else {}).get("hyper-bb")
    image = read_image(args.image.read_bytes())
    side_info = np.random.default_rng(0).bytes(16384)
    pixels = image.width * image.height
    for steps in (int(s) for s in args.steps.split(",")):
        started = time.perf_counter()
        data, coded = encode_album([(None, image)], loaded, args.quality - 1, side_info=side_info,
                                   options=EncodeOptions(posterior_steps=steps))
        net = len(data) - len(side_info)
        print(f"bbvi {steps:4d}: file {len(data)} B, net {net} B ({8 * net / pixels:.4f} bpp), "
              f"borrowed {coded.borrowed_bytes[0]:.0f} B, encode {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
