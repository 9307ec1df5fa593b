"""Peak memory (RSS) and wall time of `lic encode` and `lic decode` on large images.

    python benchmarks/large_images.py [--kodak ../shared/data/kodak] [--megapixels 1,8,33.5] \
        [--models hyper,gc-c4] [--threads 2] [--out docs/results-large.json]

Each size is a mosaic of Kodak images (mirrored at the seams, so that it is photo-like
everywhere), written as PNG. Every encode and decode is a separate `lic` process; its peak RSS
comes from the kernel's accounting for that process (wait4), its time is wall clock.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

LIC = [sys.executable, "-m", "lic_cli"]


def mosaic(kodak: Path, megapixels: float) -> np.ndarray:
    """An image of about `megapixels` (aspect 2:1), tiled from the Kodak images."""
    tiles = [np.asarray(Image.open(p).convert("RGB").resize((768, 512))) for p in sorted(kodak.glob("*.png"))]
    width = int(math.sqrt(megapixels * 1e6 * 2)) // 16 * 16
    height = int(megapixels * 1e6 / width) // 16 * 16
    rows = []
    for r in range(math.ceil(height / 512)):
        row = [tiles[(r * 7 + c) % len(tiles)][:, :: (1 if c % 2 == 0 else -1)] for c in range(math.ceil(width / 768))]
        rows.append(np.concatenate(row, axis=1) if r % 2 == 0 else np.concatenate(row, axis=1)[::-1])
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])


def measured(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in GiB) of one process (env: its environment, default this one's)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    error = process.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {error.strip()}")
    return seconds, usage.ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--megapixels", default="1,8,33.5")
    parser.add_argument("--models", default="hyper,gc-c4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for megapixels in (float(m) for m in args.megapixels.split(",")):
            pixels = mosaic(args.kodak, megapixels)
            source = Path(folder) / "large.png"
            Image.fromarray(pixels).save(source, compress_level=1)
            for model in args.models.split(","):
                coded, decoded = Path(folder) / "large.lic", Path(folder) / "decoded.png"
                encode = measured([*LIC, "encode", str(source), "-o", str(coded), "--model", model, "--force",
                                   "--threads", str(args.threads)])
                decode = measured([*LIC, "decode", str(coded), "-o", str(decoded), "--force",
                                   "--threads", str(args.threads)])
                row = {"model": model, "width": pixels.shape[1], "height": pixels.shape[0],
                       "megapixels": pixels.shape[0] * pixels.shape[1] / 1e6, "bytes": coded.stat().st_size,
                       "encode_s": encode[0], "encode_gib": encode[1], "decode_s": decode[0], "decode_gib": decode[1]}
                rows.append(row)
                print(f"{model} {row['width']}x{row['height']} ({row['megapixels']:.1f} Mpx): "
                      f"encode {encode[0]:.1f} s {encode[1]:.2f} GiB, decode {decode[0]:.1f} s {decode[1]:.2f} GiB, "
                      f"{row['bytes']:,} bytes", flush=True)
    if args.out:
        command = "python benchmarks/large_images.py " + " ".join(sys.argv[1:])
        args.out.write_text(json.dumps({"command": command, "date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(),
                                        "threads": args.threads, "rows": rows}, indent=1) + "\n")


def cpu_name() -> str:
    """The CPU's model name and whether it does bf16 natively (what `--precision auto` picks)."""
    from models.core.precision import cpu_has_native_bf16

    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")]
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} cores, " + \
        ("bf16 transforms" if cpu_has_native_bf16() else "fp32 transforms")


if __name__ == "__main__":
    main()
