"""Showed: every file decodes under AVX2 and SSE4 caps; BBVI floats stay >= 1e-5 grid steps from a table boundary
(docs/notes/2026-11-determinism.md).

Do older x86 CPUs decode our files to the same pixels, and can they decode bits-back files at all?

lic's entropy coding is integer arithmetic, except for one float computation: a bits-back
decoder repeats the encoder's reproducible BBVI (float64) and snaps the result to a grid of
tables. If another CPU's float arithmetic moved a value across a rounding boundary of that grid,
the posterior checksum in the file would stop the decode. This script simulates other CPUs on
this one by capping the instruction sets that PyTorch (ATEN_CPU_CAPABILITY), oneDNN
(ONEDNN_MAX_CPU_ISA) and MKL (MKL_ENABLE_INSTRUCTIONS) may use, each cap in its own process.

Files are encoded once, natively. Each process decodes every file; the report gives, per cap,
whether every file decoded, how many uint8 pixel values differ from the native decode, and how
far the raw BBVI floats moved, next to how close the native floats come to a snapping boundary.

    python benchmarks/experiments/cpu_kinds.py --images 3 --out runs/cpu-kinds.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from lic_cli.codec import CodecSession, decode_file, encode_image, rgb_tensor
from lic_cli.imageio import ImageData, load_rgb_array
from lic_cli.metrics import psnr
from models.core import precision
from models.hyper.bitsback_codec import snapping_margins, snapping_steps

CAPS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse4": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
BITS_BACK_QUALITY = 2  # 0-based


def encode_files(args, session: CodecSession, work: Path) -> list[str]:
    """Native encodes: hyper at each asked quality, the gc models and hyper-bb for every image; the bits-back
    images' integer latents go to work/ too, for the raw BBVI comparison."""
    names = []
    for index, path in enumerate(sorted(args.kodak.glob("*.png"))[: args.images]):
        image = ImageData(np.ascontiguousarray(load_rgb_array(path)))
        for quality in args.qualities:
            names.append(f"{path.stem}-hyper-q{quality}.lic")
            (work / names[-1]).write_bytes(encode_image(image, session.get("hyper"), quality - 1))
        for model in args.gc_models:
            names.append(f"{path.stem}-{model}.lic")
            (work / names[-1]).write_bytes(encode_image(image, session.get(model), 0))
        names.append(f"{path.stem}-hyper-bb-q{BITS_BACK_QUALITY + 1}.lic")
        bits_back = session.get("hyper-bb")
        (work / names[-1]).write_bytes(encode_image(image, bits_back, BITS_BACK_QUALITY))
        y_hat = bits_back.codec.amortized_latents(rgb_tensor(image), BITS_BACK_QUALITY)
        np.save(work / f"yhat-{index}.npy", y_hat.numpy())
    return names


def decode_all(work: Path, names: list[str], precision_name: str, dump: Path) -> None:
    """The child process: decode every file and run BBVI on the saved latents; results to dump."""
    session = CodecSession(compute=precision_name, engine="torch")
    results = {"capability": torch.backends.cpu.get_cpu_capability(), "errors": {}}
    arrays = {}
    for name in names:
        try:
            arrays[name] = decode_file((work / name).read_bytes(), session).image.pixels
        except Exception as error:  # reported, not raised: a failed decode is the finding
            results["errors"][name] = f"{type(error).__name__}: {error}"
    codec = session.get("hyper-bb").codec
    for latents in sorted(work.glob("yhat-*.npy")):
        mean, log_scale = codec.bbvi_floats(torch.from_numpy(np.load(latents)), BITS_BACK_QUALITY)
        arrays[f"{latents.stem}-mean"], arrays[f"{latents.stem}-log_scale"] = mean.numpy(), log_scale.numpy()
    np.savez(dump, **arrays)
    dump.with_suffix(".json").write_text(json.dumps(results))


def run_cap(cap: str, work: Path, names: list[str], args) -> tuple[dict, dict[str, np.ndarray]]:
    dump = work / f"decoded-{cap}.npz"
    command = [sys.executable, __file__, "--child", str(work), "--precision", args.precision,
               "--names", ",".join(names), "--dump", str(dump)]
    subprocess.run(command, env={**os.environ, **CAPS[cap]}, check=True)
    with np.load(dump) as arrays:
        return json.loads(dump.with_suffix(".json").read_text()), dict(arrays)


def compare(native: dict[str, np.ndarray], other: dict[str, np.ndarray], names: list[str],
            q_scales: np.ndarray) -> dict:
    pixel_keys = [n for n in names if n in native and n in other]
    grid_step = dict(zip(("mean", "log_scale"), snapping_steps(q_scales), strict=True))
    float_keys = [k for k in native if k.startswith("yhat-")]
    moved = {"mean": 0.0, "log_scale": 0.0}
    for key in float_keys:
        part = "mean" if key.endswith("-mean") else "log_scale"
        delta = float(np.abs(native[key] - other[key]).max())
        moved[part] = max(moved[part], delta / grid_step[part])
    return {
        "differing_pixel_values": {n: int((native[n] != other[n]).sum()) for n in pixel_keys},
        "largest_pixel_difference": max((int(np.abs(native[n].astype(np.int16) - other[n]).max()) for n in pixel_keys),
                                        default=0),
        # only files whose decodes differ (identical ones would be infinite)
        "psnr_between_decodes": {n: psnr(native[n], other[n]) for n in pixel_keys if (native[n] != other[n]).any()},
        "bbvi_values_changed": int(sum((native[k] != other[k]).sum() for k in float_keys)),
        "bbvi_values": int(sum(native[k].size for k in float_keys)),
        "max_mean_shift_grid_steps": moved["mean"],
        "max_log_scale_shift_grid_steps": moved["log_scale"],
    }


def margins(native: dict[str, np.ndarray], q_scales: np.ndarray) -> list[tuple[float, float]]:
    """Per bits-back image: the native floats' distance to a snapping boundary (grid steps)."""
    stems = sorted({k.rsplit("-", 1)[0] for k in native if k.startswith("yhat-")})
    return [snapping_margins(torch.from_numpy(native[f"{s}-mean"]), torch.from_numpy(native[f"{s}-log_scale"]),
                             q_scales) for s in stems]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--images", type=int, default=3, help="the first N Kodak images")
    parser.add_argument("--qualities", type=lambda s: [int(v) for v in s.split(",")], default=[1, 3, 6])
    parser.add_argument("--gc-models", type=lambda s: [v for v in s.split(",") if v], default=["gc-c4"])
    parser.add_argument("--precision", choices=precision.CHOICES, default="fp32")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        decode_all(args.child, args.names.split(","), args.precision, args.dump)
        return
    if args.out is None:
        parser.error("--out is required")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        session = CodecSession(compute=args.precision, engine="torch")
        q_scales = session.get("hyper-bb").codec.q_scales
        names = encode_files(args, session, work)
        info, native = run_cap("native", work, names, args)
        report = {"torch": torch.__version__, "precision": args.precision, "images": args.images,
                  "files": len(names), "native": info, "snapping_margins": margins(native, q_scales), "caps": {}}
        print(f"native ({info['capability']}): {len(info['errors'])} failed decodes; snapping margins "
              f"(mean, log scale) in grid steps: {report['snapping_margins']}", flush=True)
        for cap in CAPS:
            if cap == "native":
                continue
            cap_info, decoded = run_cap(cap, work, names, args)
            row = {"info": cap_info, **compare(native, decoded, names, q_scales)}
            report["caps"][cap] = row
            print(f"{cap} ({cap_info['capability']}): {len(cap_info['errors'])} failed decodes, "
                  f"{sum(row['differing_pixel_values'].values())} differing pixel values (largest difference "
                  f"{row['largest_pixel_difference']}, lowest PSNR between decodes "
                  f"{min(row['psnr_between_decodes'].values(), default=float('inf')):.1f} dB); BBVI floats changed "
                  f"{row['bbvi_values_changed']}/{row['bbvi_values']}, largest move "
                  f"{row['max_mean_shift_grid_steps']:.2e} grid steps (means), "
                  f"{row['max_log_scale_shift_grid_steps']:.2e} (log scales)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
