"""Kodak rate-distortion and speed of a lic model from real files.

Every point is a real container (header included) written by the same code as `lic encode`,
decoded by the same code as `lic decode`. Prints a markdown table; writes per-image JSON.

    python benchmarks/kodak_hyper.py --kodak ../shared/data/kodak --out docs/results-hyper.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from lic_cli.codec import CodecSession, decode_file, encode_image
from lic_cli.imageio import list_images, read_image
from lic_cli.metrics import ms_ssim, psnr


def measure(kodak: Path, model: str, weights: Path | None, qualities: list[int], threads: int,
            compute: str = "auto") -> dict:
    torch.set_num_threads(threads)
    session = CodecSession({model: weights} if weights else {}, compute=compute, engine="torch")
    loaded = session.get(model)
    images = [(p.name, read_image(p.read_bytes())) for p in list_images(kodak)]
    decode_file(encode_image(images[0][1], loaded, 0), session)  # warm-up: allocator, oneDNN kernels
    rows = []
    for quality in qualities:
        for name, image in images:
            started = time.perf_counter()
            data = encode_image(image, loaded, quality - 1)
            encoded = time.perf_counter()
            decoded = decode_file(data, session).image.pixels
            finished = time.perf_counter()
            rows.append({
                "image": name, "quality": quality, "bytes": len(data),
                "bpp": 8 * len(data) / (image.width * image.height),
                "psnr": psnr(image.pixels, decoded), "ms_ssim": ms_ssim(image.pixels, decoded),
                "encode_s": encoded - started, "decode_s": finished - encoded,
            })
        summary = summarise([r for r in rows if r["quality"] == quality])
        print(f"q{quality}: {summary['bpp']:.4f} bpp, {summary['psnr']:.2f} dB, MS-SSIM {summary['ms_ssim']:.4f}, "
              f"enc {summary['encode_s']:.3f} s, dec {summary['decode_s']:.3f} s", flush=True)
    return {
        "model": model, "weights": loaded.path.name, "weights_hash": loaded.weights_id.hex(),
        "threads": threads, "precision": loaded.codec.compute,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "summary": {q: summarise([r for r in rows if r["quality"] == q]) for q in qualities},
        "images": rows,
    }


def summarise(rows: list[dict]) -> dict:
    return {key: float(np.mean([r[key] for r in rows])) for key in ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s")}


def markdown(result: dict) -> str:
    lines = ["| quality | bpp (real files) | PSNR RGB (dB) | MS-SSIM | encode (s/img) | decode (s/img) |",
             "|---|---|---|---|---|---|"]
    for quality, s in result["summary"].items():
        lines.append(f"| {quality} | {s['bpp']:.4f} | {s['psnr']:.2f} | {s['ms_ssim']:.4f} "
                     f"| {s['encode_s']:.3f} | {s['decode_s']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--model", default="hyper")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--qualities", default="1,2,3,4,5,6")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(args.kodak, args.model, args.weights, [int(q) for q in args.qualities.split(",")], args.threads,
                     args.precision)
    print(markdown(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
