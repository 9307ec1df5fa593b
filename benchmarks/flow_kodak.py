"""The flow family on Kodak: progressive decoding, re-encoding generations, and speed next to hyper.

    python benchmarks/flow_kodak.py [--kodak ../shared/data/kodak] [--images N] [--generations 10] \
        [--threads 2] [--out docs/results-flow.json]

Every number comes from real files written by the code behind `lic encode` and read by the code
behind `lic decode`:
- progressive: for each quality, the rate and PSNR of decoding 1, 2 and 3 levels (`lic decode
  --levels N`); the rate of a preview counts the header, the sections it reads and the checksum;
- speed: encode and decode seconds per image, flow at every quality and hyper at every quality, in
  the same run on the same threads;
- re-encoding: decode -> PNG pixels -> encode at the same setting, `--generations` times, for flow
  and for hyper at a quality with matching first-generation PSNR; PSNR against the original and
  bytes of every generation.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cpm_kodak import cpu_name
from bitstream.container import section_type, unpack
from lic_cli.codec import CodecSession, decode_file, encode_image
from lic_cli.imageio import ImageData, list_images, read_image
from lic_cli.metrics import psnr


def prefix_bytes(data: bytes, codec, levels: int) -> int:
    """Bytes of a file whose coded sections stop after the first `levels` of the codec's."""
    container = unpack(data)
    dropped = codec.section_names[levels:]
    return len(data) - sum(5 + len(container.sections[section_type(name)]) for name in dropped)


def progressive_and_speed(images, session: CodecSession, model: str, levels: bool) -> list[dict]:
    loaded = session.get(model)
    codec = loaded.codec
    decode_file(encode_image(images[0][1], loaded, 0), session)  # warm-up: allocator, oneDNN kernels
    rows = []
    for quality in range(codec.qualities.count):
        for name, image in images:
            pixels = image.width * image.height
            started = time.perf_counter()
            data = encode_image(image, loaded, quality)
            encoded = time.perf_counter()
            decoded = decode_file(data, session).image.pixels
            finished = time.perf_counter()
            row = {"model": model, "image": name, "quality": quality + 1, "bpp": 8 * len(data) / pixels,
                   "psnr": psnr(image.pixels, decoded), "encode_s": encoded - started, "decode_s": finished - encoded}
            if levels:
                for level in range(1, len(codec.section_names)):
                    preview = decode_file(data, session, levels=level).image.pixels
                    row[f"bpp_{level}"] = 8 * prefix_bytes(data, codec, level) / pixels
                    row[f"psnr_{level}"] = psnr(image.pixels, preview)
            rows.append(row)
        mean = summarise([r for r in rows if r["quality"] == quality + 1])
        print(f"{model} q{quality + 1}: {mean['bpp']:.4f} bpp {mean['psnr']:.2f} dB, enc {mean['encode_s']:.2f} s, "
              f"dec {mean['decode_s']:.2f} s" + (f", 1 level {mean['bpp_1']:.4f} bpp {mean['psnr_1']:.2f} dB"
                                                  if levels else ""), flush=True)
    return rows


def generations(images, session: CodecSession, model: str, quality: int, count: int) -> list[dict]:
    """PSNR against the original and bytes of `count` decode -> encode generations."""
    loaded = session.get(model)
    rows = []
    for name, image in images:
        current = image
        for generation in range(1, count + 1):
            data = encode_image(current, loaded, quality)
            decoded = decode_file(data, session).image
            rows.append({"model": model, "quality": quality + 1, "image": name, "generation": generation,
                         "bytes": len(data), "psnr": psnr(image.pixels, decoded.pixels),
                         "psnr_to_previous": psnr(current.pixels, decoded.pixels)})
            current = ImageData(decoded.pixels, None, None)
    for generation in range(1, count + 1):
        chosen = [r for r in rows if r["generation"] == generation]
        print(f"{model} q{quality + 1} generation {generation}: {np.mean([r['psnr'] for r in chosen]):.2f} dB, "
              f"{np.mean([r['bytes'] for r in chosen]):.0f} bytes", flush=True)
    return rows


def matched_quality(rows: list[dict], model: str, target_psnr: float) -> int:
    """0-based quality of `model` whose mean PSNR in `rows` is nearest to target_psnr."""
    qualities = sorted({r["quality"] for r in rows if r["model"] == model})
    means = {q: np.mean([r["psnr"] for r in rows if r["model"] == model and r["quality"] == q]) for q in qualities}
    return min(qualities, key=lambda q: abs(means[q] - target_psnr)) - 1


def summarise(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k not in ("model", "image", "quality", "generation")]
    return {key: float(np.mean([r[key] for r in rows])) for key in keys}


def by(rows: list[dict], *keys: str) -> dict:
    groups: dict = {}
    for row in rows:
        groups.setdefault("/".join(str(row[k]) for k in keys), []).append(row)
    return {group: summarise(items) for group, items in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--weights", type=Path, default=None, help="flow weights (default: the shipped file)")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--generation-images", type=int, default=6, help="images in the re-encoding runs")
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--hyper-quality", type=int, default=4, help="1-based hyper quality of the re-encoding run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/results-flow.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    session = CodecSession({"flow": args.weights} if args.weights else {}, engine="torch")
    images = [(p.name, read_image(p.read_bytes())) for p in list_images(args.kodak)][: args.images]
    rows = (progressive_and_speed(images, session, "flow", levels=True)
            + progressive_and_speed(images, session, "hyper", levels=False))
    hyper_quality = args.hyper_quality - 1
    target = np.mean([r["psnr"] for r in rows if r["model"] == "hyper" and r["quality"] == args.hyper_quality])
    flow_quality = matched_quality(rows, "flow", float(target))
    chosen = images[: args.generation_images]
    generation_rows = (generations(chosen, session, "flow", flow_quality, args.generations)
                       + generations(chosen, session, "hyper", hyper_quality, args.generations))
    loaded = session.get("flow")
    result = {
        "benchmark": "flow_kodak", "command": "python benchmarks/flow_kodak.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "cpu": cpu_name(), "threads": args.threads,
        "torch": torch.__version__, "weights": loaded.path.name, "weights_hash": loaded.weights_id.hex(),
        "hyper_weights_hash": session.get("hyper").weights_id.hex(), "images": len(images),
        "summary": by(rows, "model", "quality"),
        "generations": {"images": len(chosen), "flow_quality": flow_quality + 1, "hyper_quality": hyper_quality + 1,
                        "summary": by(generation_rows, "model", "generation")},
        "rows": rows, "generation_rows": generation_rows,
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
