"""The cpm family on Kodak: where its bytes go, what its context model saves, and where its time goes.

    python benchmarks/cpm_kodak.py [--kodak ../shared/data/kodak] [--weights models/weights/cpm.pt] \
        [--threads 2] [--images N] [--out docs/results-cpm.json]

Per image and quality, through the codec's own stages (the bytes are the ones `lic encode` writes
into the container's latent section):
- rate: the section's real bits; their ideal part (-log2 p of every coded symbol under the exact
  integer tables, and of the importance map); the float model's cross-entropy, the rate that
  training sees; and a factorized prior on the same symbols (each channel's own empirical
  histogram of this image: a lower bound for any per-channel static model, its table not counted);
- time: encoder network, the context model's parallel pass, ANS; decoder: importance map,
  wavefront steps split into network and entropy decoder, synthesis;
- quality: PSNR and MS-SSIM of the decoded image.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitstream.coders import symbol_costs
from lic_cli.metrics import ms_ssim, psnr
from models import zoo
from models.core import fixedpoint
from models.core.geometry import pad_to_multiple, unit_float
from models.cpm import coding as cpm_coding
from models.cpm.codec import CpmCodec
from models.cpm.importance_coding import (
    SPREADS,
    antidiagonals,
    channel_mask,
    med_prediction,
    residual_counts,
)
from models.cpm.layout import DOWNSAMPLING, context_tiles
from models.cpm.wavefront import wavefront_steps
from models.interface import Geometry


class Stopwatch:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def timed(self, name: str, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return wrapper


def factorized_bits(symbols: np.ndarray, mask: np.ndarray) -> float:
    """Sum over channels of the coded symbols' empirical entropy (bits) in that channel."""
    total = 0.0
    for channel in range(symbols.shape[0]):
        values = symbols[channel][mask[channel]]
        if values.size:
            counts = np.bincount(values, minlength=6).astype(np.float64)
            p = counts[counts > 0] / values.size
            total -= float((counts[counts > 0] * np.log2(p)).sum())
    return total


def importance_bits(counts: np.ndarray, channels: int) -> float:
    rows, cols = np.concatenate([np.stack(rc) for rc in antidiagonals(*counts.shape)], axis=1)
    residuals = counts[rows, cols] - med_prediction(counts, rows, cols, channels) + channels
    costs = [symbol_costs(residual_counts(s, channels))[residuals].sum() for s in range(len(SPREADS))]
    return float(min(costs)) + np.log2(len(SPREADS))


@torch.inference_mode()
def float_cross_entropy(codec: CpmCodec, pixels: torch.Tensor, quality: int) -> float:
    """Bits of the coded symbols under the float context model (what training estimates)."""
    model = codec.model
    x = unit_float(pad_to_multiple(pixels[None], DOWNSAMPLING))
    out = model(x, torch.tensor([quality]))
    return float(model.symbol_bits(out, torch.tensor([quality]))[0])


def measure(codec: CpmCodec, path: Path, quality: int) -> dict:
    array = np.asarray(Image.open(path).convert("RGB"))
    pixels = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
    height, width = array.shape[:2]
    watch = Stopwatch()
    started = time.perf_counter()
    counts, symbols = watch.timed("encoder network", codec.analyse)(pixels, quality)
    coding_order, ordered = codec.symbol_coder.coding_order, []
    timed_order = watch.timed("context model (parallel)", coding_order)

    def recorded_order(*args):
        ordered.append(timed_order(*args))
        return ordered[-1]

    codec.symbol_coder.coding_order = recorded_order
    data = codec.symbol_coder.encode_symbols(counts, symbols, quality)
    codec.symbol_coder.coding_order = coding_order
    encode_seconds = time.perf_counter() - started

    coded, tables = ordered[0]  # what the encoder coded, with its counts
    ideal_symbol_bits = float(symbol_costs(np.take_along_axis(tables, coded[:, None], 1)).sum())
    mask = channel_mask(counts, codec.channels)

    context = codec.symbol_coder.context
    timed_context = watch.timed("wavefront network", context.logits)
    context.logits = timed_context
    pop = cpm_coding.pop_importance
    cpm_coding.pop_importance = watch.timed("importance map", pop)
    started = time.perf_counter()
    decoded_counts, decoded = codec.decode_symbols({"latent": data}, Geometry(height, width), quality)
    symbols_seconds = time.perf_counter() - started
    cpm_coding.pop_importance = pop
    del context.logits
    started = time.perf_counter()  # the whole decode again, without the stopwatches
    decoded_pixels = codec.decode({"latent": data}, Geometry(height, width), quality)
    decode_seconds = time.perf_counter() - started
    assert np.array_equal(decoded[mask], symbols[mask]) and np.array_equal(decoded_counts, counts)
    reconstruction = decoded_pixels.permute(1, 2, 0).numpy()

    seconds = watch.seconds
    wavefront_network = seconds["wavefront network"]
    steps = sum(len(wavefront_steps((codec.channels, r.stop - r.start, c.stop - c.start))[1]) - 1
                for r, c in context_tiles(*counts.shape))
    return {
        "image": path.name, "quality": quality + 1, "pixels": height * width,
        "section_bits": 8 * len(data), "ideal_symbol_bits": ideal_symbol_bits,
        "importance_bits": importance_bits(counts, codec.channels),
        "float_cross_entropy_bits": float_cross_entropy(codec, pixels, quality),
        "factorized_bits": factorized_bits(symbols, mask),
        "coded_share": float(mask.mean()), "coded_symbols": int(mask.sum()), "wavefront_steps": steps,
        "psnr": psnr(array, reconstruction), "ms_ssim": ms_ssim(array, reconstruction),
        "encode_s": encode_seconds, "encode_network_s": seconds["encoder network"],
        "encode_context_s": seconds["context model (parallel)"],
        "decode_s": decode_seconds, "decode_importance_s": seconds["importance map"],
        "decode_symbols_s": symbols_seconds, "decode_wavefront_network_s": wavefront_network,
        # The rest of the symbol decoding: integer softmax, ANS, bookkeeping.
        "decode_wavefront_coder_s": symbols_seconds - seconds["importance map"] - wavefront_network,
        "decode_synthesis_s": decode_seconds - symbols_seconds,
    }


def summarise(rows: list[dict]) -> dict:
    by_quality: dict[int, list[dict]] = {}
    for row in rows:
        by_quality.setdefault(row["quality"], []).append(row)
    summary = {}
    for quality, items in sorted(by_quality.items()):
        pixels = sum(r["pixels"] for r in items)

        def bpp(key: str, entries=items, total=pixels) -> float:
            return sum(r[key] for r in entries) / total

        def mean(key: str, entries=items) -> float:
            return float(np.mean([r[key] for r in entries]))

        context_bits = sum(r["ideal_symbol_bits"] for r in items)
        summary[str(quality)] = {
            "section_bpp": bpp("section_bits"), "ideal_symbol_bpp": bpp("ideal_symbol_bits"),
            "importance_bpp": bpp("importance_bits"), "float_cross_entropy_bpp": bpp("float_cross_entropy_bits"),
            "factorized_bpp": bpp("factorized_bits"),
            "context_saving": 1 - context_bits / sum(r["factorized_bits"] for r in items),
            "coded_share": mean("coded_share"), "wavefront_steps": mean("wavefront_steps"),
            "psnr": mean("psnr"), "ms_ssim": mean("ms_ssim"),
            **{key: mean(key) for key in items[0] if key.endswith("_s")},
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/results-cpm.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = zoo.load_codec("cpm", args.weights)
    codec = loaded.codec
    paths = sorted(args.kodak.glob("*.png"))[: args.images]
    rows = []
    for path in paths:
        for quality in range(codec.qualities.count):
            rows.append(measure(codec, path, quality))
            r = rows[-1]
            print(f"{path.name} q{quality + 1}: {r['section_bits'] / r['pixels']:.4f} bpp, "
                  f"MS-SSIM {r['ms_ssim']:.4f}, {r['psnr']:.2f} dB, encode {r['encode_s']:.2f} s, "
                  f"decode {r['decode_s']:.2f} s ({r['wavefront_steps']} steps)", flush=True)
    result = {
        "benchmark": "cpm_kodak", "command": "python benchmarks/cpm_kodak.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "cpu": cpu_name(), "threads": args.threads,
        "torch": torch.__version__, "weights": loaded.path.name, "weights_hash": loaded.weights_id.hex(),
        "images": len(paths), "fixed_point_bits": [fixedpoint.WEIGHT_FRAC_BITS, fixedpoint.ACT_FRAC_BITS],
        "summary": summarise(rows), "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
