"""hyper-bb (lossy bits-back) and SGA against the base `hyper` model on Kodak, from real files.

    python benchmarks/bitsback_kodak.py --images 6 --sga-steps 100 --out docs/results-bitsback.json

Variants (every point is a real container; bits-back files are decoded again to prove they
round-trip and to time the decoder):
  hyper            plain encoding with the base model (the anchor of every BD-rate)
  hyper+sga        --refine sga
  bb-alone         hyper-bb, one image per file, nothing to carry (padding pays for the borrowed bits)
  bb-net           hyper-bb carrying --side-info of 16 KiB: net rate = file bytes - carried bytes
  bb+sga-net       the same with --refine sga (SGA over y-hat jointly with BBVI over q(z))
  bb-album         all images of a quality in one album file (carries only names/metadata)
"""
from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from lic_cli.bench.bdrate import bd_rate
from lic_cli.codec import CodecSession, decode_file, encode_album, encode_image
from lic_cli.imageio import list_images, read_image
from lic_cli.metrics import psnr
from models.interface import EncodeOptions, RefineOptions

SIDE_INFO_BYTES = 16384


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    session = CodecSession({k: v for k, v in (("hyper", args.hyper), ("hyper-bb", args.bb)) if v})
    hyper, bb = session.get("hyper"), session.get("hyper-bb")
    paths = list_images(args.kodak)[:: max(1, 24 // args.images)][: args.images]
    images = [(p.stem, read_image(p.read_bytes())) for p in paths]
    qualities = [int(q) for q in args.qualities.split(",")]
    side_info = np.random.default_rng(0).bytes(SIDE_INFO_BYTES)
    sga = RefineOptions(steps=args.sga_steps, lr=args.lr) if args.sga_steps else None
    rows: list[dict] = []
    curves: dict[str, list[tuple[float, float]]] = {}

    def record(variant, quality, name, pixels, data, decoded, encode_s, decode_s=None, carried=0, borrowed=None):
        rows.append({"variant": variant, "quality": quality, "image": name, "bytes": len(data),
                     "bpp": 8 * (len(data) - carried) / (pixels.shape[0] * pixels.shape[1]),
                     "psnr": psnr(pixels[:, :, :3], decoded[:, :, :3]), "encode_s": encode_s,
                     "decode_s": decode_s, "carried_bytes": carried, "borrowed_bits": borrowed})

    def timed(fn, *args, **kwargs):
        started = time.perf_counter()
        value = fn(*args, **kwargs)
        return value, time.perf_counter() - started

    for quality in qualities:
        q = quality - 1
        for name, image in images:
            data, enc = timed(encode_image, image, hyper, q)
            decoded, dec = timed(decode_file, data, session)
            record("hyper", quality, name, image.pixels, data, decoded.image.pixels, enc, dec)
            if sga:
                data, enc = timed(encode_image, image, hyper, q, EncodeOptions(sga))
                record("hyper+sga", quality, name, image.pixels, data, decode_file(data, session).image.pixels, enc)
            for variant, carried, refine in (("bb-alone", None, None), ("bb-net", side_info, None),
                                             ("bb+sga-net", side_info, sga)):
                if variant == "bb+sga-net" and not sga:
                    continue
                (data, coded), enc = timed(encode_album, [(None, image)], bb, q, side_info=carried,
                                           options=EncodeOptions(refine, args.bbvi_steps))
                result, dec = timed(decode_file, data, session)
                assert result.side_info == carried, "side information did not come back"
                record(variant, quality, name, image.pixels, data, result.image.pixels, enc, dec,
                       coded.carried_bytes if carried else 0, 8 * coded.borrowed_bytes[0])
        (data, coded), enc = timed(encode_album, images, bb, q, options=EncodeOptions(posterior_steps=args.bbvi_steps))
        result, dec = timed(decode_file, data, session)
        total_pixels = sum(image.width * image.height for _, image in images)
        for (name, image), decoded in zip(images, result.images, strict=True):
            rows.append({"variant": "bb-album", "quality": quality, "image": name,
                         "bpp": 8 * (len(data) - coded.carried_bytes) / total_pixels,
                         "psnr": psnr(image.pixels[:, :, :3], decoded.pixels[:, :, :3]),
                         "encode_s": enc / len(images), "decode_s": dec / len(images),
                         "bytes": len(data) / len(images), "carried_bytes": coded.carried_bytes / len(images),
                         "borrowed_bits": None})
        for variant in dict.fromkeys(r["variant"] for r in rows):
            point = [r for r in rows if r["variant"] == variant and r["quality"] == quality]
            bpp, db, encode_s = (float(np.mean([r[key] for r in point])) for key in ("bpp", "psnr", "encode_s"))
            curves.setdefault(variant, []).append((bpp, db))
            print(f"q{quality} {variant:>11}: {bpp:.4f} bpp {db:.2f} dB, encode {encode_s:.1f} s", flush=True)
    variants = list(curves)
    anchor = curves["hyper"]
    bd = {v: bd_rate([p[0] for p in anchor], [p[1] for p in anchor], [p[0] for p in c], [p[1] for p in c])
          for v, c in curves.items()}
    timing = {v: {"encode_s": float(np.mean([r["encode_s"] for r in rows if r["variant"] == v])),
                  "decode_s": float(np.mean([r["decode_s"] for r in rows if r["variant"] == v and r["decode_s"]]
                                            or [float("nan")]))} for v in variants}
    borrowed = [r["borrowed_bits"] for r in rows if r["variant"] == "bb-net"]
    return {"hyper_weights": hyper.weights_id.hex(), "bb_weights": bb.weights_id.hex(),
            "images": [name for name, _ in images], "qualities": qualities, "sga_steps": args.sga_steps,
            "bbvi_steps": args.bbvi_steps, "threads": args.threads, "compute": hyper.codec.compute,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "curves": curves, "bd_rate_vs_hyper": bd,
            "timing": timing, "mean_borrowed_bytes_per_image": float(np.mean(borrowed) / 8) if borrowed else None,
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--hyper", type=Path, help="hyper weight file (default: the shipped one)")
    parser.add_argument("--bb", type=Path, help="hyper-bb weight file (default: the shipped one)")
    parser.add_argument("--images", type=int, default=6, help="every (24/N)-th Kodak image")
    parser.add_argument("--qualities", default="1,2,3,4,5,6")
    parser.add_argument("--sga-steps", type=int, default=0, help="0: skip the SGA variants")
    parser.add_argument("--bbvi-steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("LIC_THREADS", "2")))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args)
    for variant, value in result["bd_rate_vs_hyper"].items():
        print(f"BD-rate {variant} vs hyper: " + ("n/a" if value is None else f"{value:+.1f}%"))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
