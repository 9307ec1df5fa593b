"""Where the time of one `hyper` encode and decode goes, stage by stage.

    python benchmarks/codec_stages.py [--image ../shared/data/kodak/kodim05.png] [--quality 5]
        [--threads 2] [--precision auto|bf16|fp32] [--repeat 3] [--weights FILE]

Each stage is run once to warm up, then timed as the mean of --repeat runs: the analysis
transform, the bit-exact fixed-point hyper-synthesis that selects the CDFs (float64, identical
on encoder and decoder), the entropy coding of both sections, the synthesis transform, and the
whole encode and decode as `lic` runs them (without file I/O and model loading).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lic_cli.imageio import load_rgb_array
from models import zoo
from models.interface import Geometry


def mean_seconds(work: Callable[[], object], repeat: int) -> tuple[float, object]:
    result = work()
    started = time.perf_counter()
    for _ in range(repeat):
        result = work()
    return (time.perf_counter() - started) / repeat, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=Path("../shared/data/kodak/kodim05.png"))
    parser.add_argument("--quality", type=int, default=5, help="1-based, as `lic encode -q`")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--weights", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    codec = zoo.load_codec("hyper", args.weights, compute=args.precision).codec
    pixels = load_rgb_array(args.image)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255)
    height, width = pixels.shape[:2]
    quality = args.quality - 1
    print(f"{args.image.name} {width}x{height}, q{args.quality}, {args.threads} threads, {codec.compute}")

    def report(label: str, work: Callable[[], object]) -> object:
        seconds, result = mean_seconds(work, args.repeat)
        print(f"{label:<34} {seconds * 1000:7.1f} ms")
        return result

    y, z = report("analysis transform", lambda: codec.analyse(image, quality))
    z_hat = torch.round(z).to(torch.int64)
    means, table_ids = report("hyper-synthesis (fixed point)", lambda: codec.latent_distribution(z_hat, quality))
    residuals = torch.round(y.to(torch.float64) - means).to(torch.int64)
    sections = report("entropy encode (z and y)", lambda: codec.encode_latents(z_hat, residuals, quality, table_ids))
    report("entropy decode (y)", lambda: codec.exact.y_coder.decode(sections["latent"], table_ids))
    report("synthesis transform", lambda: codec.synthesise(residuals, means, quality, height, width))
    report("whole encode", lambda: codec.encode(image, quality))
    report("whole decode", lambda: codec.decode(sections, Geometry(height, width), quality))


if __name__ == "__main__":
    main()
