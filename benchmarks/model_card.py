"""Write models/weights/<model>.md from the weight file's embedded card and measured Kodak numbers.

    python benchmarks/model_card.py --model hyper --results docs/results-hyper.json --notes notes.md
    python benchmarks/model_card.py --model gc-c4 --results docs/results-gc.json --notes notes.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from models import zoo


def file_config(name: str) -> dict:
    """The configuration stored in the shipped weight file (the zoo's default may have moved on)."""
    return zoo.config_as_dict(zoo.load_codec(name).codec.model.config)


def header(name: str) -> list[str]:
    loaded = zoo.load_codec(name)
    card = loaded.card
    entry = zoo.entry(name)
    return [
        f"# Model card: `{name}`", "",
        f"{entry.description}.", "",
        "| | |", "|---|---|",
        f"| weight file | `models/weights/{entry.weight_file}` ({loaded.path.stat().st_size / 2**20:.1f} MiB, "
        f"fp16 parameters + integer coding tables; SHA-256 prefix `{loaded.weights_hash.hex()}`) |",
        f"| configuration | {json.dumps(file_config(name))} |",
        f"| training data | {card.get('data')} |",
        f"| training | {card.get('steps')} steps, batch {card.get('batch_size')} of "
        f"{card.get('crop')}x{card.get('crop')} "
        f"random crops, {card.get('train_minutes')} min wall clock |",
        f"| hardware | {card.get('hardware')} |",
        f"| exported | {card.get('exported')} |", "",
    ]


def render(name: str, results: dict | list, notes: str) -> str:
    if isinstance(results, list):
        return render_gc(name, next(r for r in results if r["model"] == name), notes)
    lines = header(name) + [
        "## Measured on Kodak (24 images, real files)", "",
        f"`python benchmarks/kodak_hyper.py` — {results['threads']} torch threads, {results['date']}:", "",
        "| quality | lambda | bpp | PSNR RGB (dB) | MS-SSIM | encode (s) | decode (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    lambdas = file_config(name).get("lambdas", [])
    for quality, s in results["summary"].items():
        lam = lambdas[int(quality) - 1] if int(quality) <= len(lambdas) else ""
        lines.append(f"| {quality} | {lam} | {s['bpp']:.4f} | {s['psnr']:.2f} | {s['ms_ssim']:.4f} "
                     f"| {s['encode_s']:.3f} | {s['decode_s']:.3f} |")
    lines += ["", notes.strip(), ""]
    return "\n".join(lines)


def render_gc(name: str, result: dict, notes: str) -> str:
    s = result["summary"]
    count = len(result["images"])
    lines = header(name) + [
        f"## Measured on Kodak ({count} images, real files)", "",
        f"`python benchmarks/gc_kodak.py` — {result['threads']} torch threads, {result['date']}:", "",
        "| bpp (file) | static coder | context coder | bound | PSNR (dB) | MS-SSIM | HaarPSI "
        "| encode (s) | decode (s) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {s['bpp']:.4f} | {s['bpp_static']:.4f} | {s['bpp_context']:.4f} | {s['bpp_bound']:.4f} | {s['psnr']:.2f} "
        f"| {s['ms_ssim']:.4f} | {s['haarpsi']:.4f} | {s['encode_s']:.2f} | {s['decode_s']:.2f} |",
        "", notes.strip(), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hyper")
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--notes", type=Path, help="Markdown appended to the card (caveats, how it was made).")
    args = parser.parse_args()
    notes = args.notes.read_text() if args.notes else ""
    out = zoo.WEIGHTS_DIR / f"{args.model}.md"
    out.write_text(render(args.model, json.loads(args.results.read_text()), notes))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
