"""Kodak numbers of the generative-compression models (gc-c2/c4/c8, the MSE baseline, and
gc-c4-sc coding whole images).

Every image is a real container written by the same code as `lic encode` and decoded by the same
code as `lic decode`. Besides the file size, both entropy coders of W are measured on their own
(per-channel static frequencies = the paper's coder; the learned context model) and compared with
the architecture's bound dim(W) * log2(5). Quality: PSNR, MS-SSIM and HaarPSI (no downloads).

    python benchmarks/gc_kodak.py --out docs/results-gc.json
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

from lic_cli.codec import CodecSession, decode_file, encode_image, rgb_tensor
from lic_cli.imageio import list_images, read_image
from lic_cli.metrics import haarpsi, ms_ssim, psnr
from models.gc.network import bound_bits

MODELS = ("gc-c2", "gc-c4", "gc-c8", "gc-c4-mse", "gc-c4-sc")
KEYS = ("bpp", "bpp_static", "bpp_context", "bpp_bound", "psnr", "ms_ssim", "haarpsi", "encode_s", "decode_s")


def measure(kodak: Path, model: str, weights: Path | None, threads: int, limit: int | None) -> dict:
    torch.set_num_threads(threads)
    session = CodecSession({model: weights} if weights else {}, engine="torch")
    loaded = session.get(model)
    codec = loaded.codec
    paths = list_images(kodak)[:limit]
    images = [(p.name, read_image(p.read_bytes())) for p in paths]
    decode_file(encode_image(images[0][1], loaded, 0), session)  # warm-up: allocator, oneDNN kernels
    rows = []
    for name, image in images:
        pixels = image.width * image.height
        started = time.perf_counter()
        data = encode_image(image, loaded, 0)
        encoded = time.perf_counter()
        decoded = decode_file(data, session).image.pixels
        finished = time.perf_counter()
        symbols = codec.symbols(rgb_tensor(image))
        rows.append({
            "image": name, "bytes": len(data), "bpp": 8 * len(data) / pixels,
            "bpp_static": 8 * len(codec.latent_coder.encode_static(symbols)) / pixels,
            "bpp_context": 8 * len(codec.latent_coder.encode_context(symbols)) / pixels,
            "bpp_bound": bound_bits(image.height, image.width, codec.model.config.bottleneck) / pixels,
            "psnr": psnr(image.pixels, decoded), "ms_ssim": ms_ssim(image.pixels, decoded),
            "haarpsi": haarpsi(image.pixels, decoded),
            "encode_s": encoded - started, "decode_s": finished - encoded,
        })
        print(f"{model} {name}: {rows[-1]['bpp']:.4f} bpp, {rows[-1]['psnr']:.2f} dB", flush=True)
    return {
        "model": model, "weights": loaded.path.name, "weights_hash": loaded.weights_id.hex(),
        "card": loaded.card, "threads": threads, "precision": codec.compute,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "torch": torch.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "summary": {key: float(np.mean([r[key] for r in rows])) for key in KEYS}, "images": rows,
    }


def markdown(results: list[dict]) -> str:
    lines = ["| model | bpp (real files) | static coder | context coder | bound log2(5)·dim W | PSNR (dB) "
             "| MS-SSIM | HaarPSI | encode (s/img) | decode (s/img) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        s = result["summary"]
        lines.append(f"| {result['model']} | {s['bpp']:.4f} | {s['bpp_static']:.4f} | {s['bpp_context']:.4f} "
                     f"| {s['bpp_bound']:.4f} | {s['psnr']:.2f} | {s['ms_ssim']:.4f} | {s['haarpsi']:.4f} "
                     f"| {s['encode_s']:.2f} | {s['decode_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH",
                        help="Weights other than the shipped file (repeatable).")
    parser.add_argument("--images", type=int, help="Only the first N Kodak images.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.weights)
    results = [measure(args.kodak, model, Path(overrides[model]) if model in overrides else None, args.threads,
                       args.images) for model in args.models.split(",")]
    print(markdown(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
