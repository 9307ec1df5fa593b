"""Showed: decoded pixels depended on the thread count on AVX-512 until the synthesis ran on fixed threads
(docs/notes/2026-11-determinism.md).

Do decoded pixels depend on the thread count? Decode the same files with 1-4 torch threads.

Each file is decoded once per caller thread count; the table counts the pixels (values of the
uint8 output) that differ from the 1-thread decode, summed over the images, and gives the mean
decode time per image. ``--caller-threads`` runs the synthesis on the caller's thread count
instead of the fixed ``models.core.precision.SYNTHESIS_THREADS`` (what lic did before), to show what
the fixed count is for. The counts depend on the CPU's kernels: an AVX-512 CPU differed, the AVX2
and AMX machines of earlier sessions passed the 1-vs-2-thread test.

    python benchmarks/experiments/thread_determinism.py --images 6 --out runs/threads.json
    python benchmarks/experiments/thread_determinism.py --images 6 --caller-threads --out runs/threads-caller.json

``--no-onednn`` decodes with PyTorch's own convolution kernels; ``--kernels`` only scans single
convolutions and transposed convolutions of our networks' shapes over thread counts.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lic_cli.codec import CodecSession, decode_file, encode_image
from lic_cli.imageio import ImageData, load_rgb_array
from models.core import precision

THREADS = (1, 2, 3, 4)
# (in, out, kernel) of hyper's and gc's layers, and input sizes from a 16x16 image's up to a Kodak image's.
LAYER_SHAPES = [(192, 96, 3), (128, 128, 5), (256, 128, 5), (128, 3, 5), (192, 192, 3)]
INPUT_SIZES = [(1, 1), (2, 3), (5, 7), (12, 16), (24, 32), (32, 48), (48, 32)]


def cases(args) -> list[tuple[str, int]]:
    """(zoo model, 0-based quality) pairs: hyper at the asked qualities, then the gc models."""
    hyper = [("hyper", q - 1) for q in args.qualities]
    return hyper + [(name, 0) for name in args.gc_models]


def layer_outputs(kind: str, x: torch.Tensor, weight: torch.Tensor, kernel: int) -> list[torch.Tensor]:
    """One layer's output with each thread count of THREADS and 8."""
    outputs = []
    for threads in (*THREADS, 8):
        torch.set_num_threads(threads)
        if kind == "conv":
            out = F.conv2d(x, weight, padding=kernel // 2)
        else:
            out = F.conv_transpose2d(x, weight, stride=2, padding=kernel // 2, output_padding=1)
        outputs.append(out.float())
    return outputs


def kernel_scan() -> dict[str, list[str]]:
    """The single layers whose output changes with the thread count (1, 2, 3, 4, 8)."""
    torch.manual_seed(0)
    differing: dict[str, list[str]] = {"conv": [], "deconv": []}
    for (cin, cout, k), size, dtype in itertools.product(LAYER_SHAPES, INPUT_SIZES, (torch.float32, torch.bfloat16)):
        x = torch.randn(1, cin, *size).contiguous(memory_format=torch.channels_last).to(dtype)
        for kind, weight_shape in (("conv", (cout, cin, k, k)), ("deconv", (cin, cout, k, k))):
            weight = (torch.randn(weight_shape) * 0.05).to(dtype)
            first, *others = layer_outputs(kind, x, weight, k)
            if any(not torch.equal(first, other) for other in others):
                differing[kind].append(f"{cin}->{cout} k{k} {size[0]}x{size[1]} {str(dtype)[6:]}")
    cases_per_kind = len(LAYER_SHAPES) * len(INPUT_SIZES) * 2
    for kind, found in differing.items():
        print(f"{kind}: {len(found)} of {cases_per_kind} differ: {', '.join(found)}", flush=True)
    return differing


def decode_timed(data: bytes, session: CodecSession, threads: int) -> tuple[np.ndarray, float]:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    pixels = decode_file(data, session).image.pixels
    return pixels, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--images", type=int, default=6, help="the first N Kodak images")
    parser.add_argument("--qualities", type=lambda s: [int(v) for v in s.split(",")], default=[1, 3, 6])
    parser.add_argument("--gc-models", type=lambda s: [v for v in s.split(",") if v], default=["gc-c2", "gc-c8"])
    parser.add_argument("--precision", choices=precision.CHOICES, default="auto")
    parser.add_argument("--caller-threads", action="store_true",
                        help="synthesis on the caller's thread count (lic before the fixed count)")
    parser.add_argument("--no-onednn", action="store_true", help="PyTorch's own kernels instead of oneDNN's")
    parser.add_argument("--kernels", action="store_true", help="only scan single layers, decode nothing")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.backends.mkldnn.enabled = not args.no_onednn
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.kernels:
        args.out.write_text(json.dumps({"torch": torch.__version__, "differing": kernel_scan()}, indent=1))
        return
    if args.caller_threads:
        precision.synthesis_threads = lambda device: nullcontext()  # before any codec is built
    session = CodecSession(compute=args.precision, engine="torch")
    images = [load_rgb_array(p) for p in sorted(args.kodak.glob("*.png"))[: args.images]]
    rows = []
    for model, quality in cases(args):
        loaded = session.get(model)
        torch.set_num_threads(2)
        files = [encode_image(ImageData(np.ascontiguousarray(pixels)), loaded, quality) for pixels in images]
        differing = dict.fromkeys(THREADS, 0)
        seconds = dict.fromkeys(THREADS, 0.0)
        for data in files:
            reference = None
            for threads in THREADS:
                pixels, elapsed = decode_timed(data, session, threads)
                reference = pixels if reference is None else reference
                differing[threads] += int((pixels != reference).sum())
                seconds[threads] += elapsed / len(files)
        row = {"model": model, "quality": quality + 1, "differing": differing, "seconds": seconds}
        rows.append(row)
        print(f"{model} q{quality + 1}: differing values vs 1 thread "
              + " ".join(f"{t}t={differing[t]}" for t in THREADS[1:])
              + " | decode s/img " + " ".join(f"{t}t={seconds[t]:.3f}" for t in THREADS), flush=True)
    args.out.write_text(json.dumps({
        "images": args.images, "precision": precision.resolve(args.precision, "cpu"),
        "caller_threads": args.caller_threads, "onednn": not args.no_onednn,
        "synthesis_threads": None if args.caller_threads else precision.SYNTHESIS_THREADS,
        "torch": torch.__version__, "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
