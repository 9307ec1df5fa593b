"""Write models/weights/<model>.md from the weight file's embedded card and measured Kodak numbers.

    python benchmarks/model_card.py --model hyper --results docs/results-hyper.json --notes notes.md
    python benchmarks/model_card.py --model gc-c4 --results docs/results-gc.json --notes notes.md
    python benchmarks/model_card.py --model hyper-bb --results docs/results-bitsback.json --notes notes.md
    python benchmarks/model_card.py --model cpm --results docs/results-cpm.json --notes notes.md
    python benchmarks/model_card.py --model flow --results docs/results-flow.json --notes notes.md
    python benchmarks/model_card.py --model hyper-ctx --results docs/results-hyper-ctx.json --notes notes.md
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
        f"fp16 parameters + integer coding tables; weight id `{loaded.weights_id.hex()}`) |",
        f"| configuration | {json.dumps(file_config(name))} |",
        f"| training data | {card.get('data')} |",
        f"| training | {card.get('steps')} steps, batch {card.get('batch_size')} of "
        f"{card.get('crop')}x{card.get('crop')} "
        f"random crops, {card.get('train_minutes')} min wall clock |",
        f"| hardware | {card.get('hardware')} |",
        f"| exported | {card.get('exported')} |", "",
    ]


def check_results_match_weights(name: str, measured_hash: str) -> None:
    shipped = zoo.load_codec(name)
    if not shipped.decodes(bytes.fromhex(measured_hash)):  # its weight id, or the id it had before tensor ids
        raise SystemExit(f"{name}: the results are for weights {measured_hash}, the weight file is "
                         f"{shipped.weights_id.hex()}")


def render(name: str, results: dict | list, notes: str) -> str:
    if isinstance(results, list):
        return render_gc(name, next(r for r in results if r["model"] == name), notes)
    if "bb_weights" in results:
        return render_bitsback(name, results, notes)
    if results.get("benchmark") == "cpm_kodak":
        return render_cpm(name, results, notes)
    if results.get("benchmark") == "flow_kodak":
        return render_flow(name, results, notes)
    lines = header(name) + [
        "## Measured on Kodak (24 images, real files)", "",
        f"`python benchmarks/kodak_hyper.py{'' if name == 'hyper' else ' --model ' + name}` — "
        f"{results['threads']} torch threads, {results['date']}:", "",
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


def measured_header(name: str, result: dict, what: str) -> list[str]:
    """The card's header and the heading of a family benchmark's table (whose weights must be the
    shipped ones)."""
    check_results_match_weights(name, result["weights_hash"])
    return header(name) + [
        f"## Measured on Kodak ({result['images']} images, {what})", "",
        f"`{result['command']}` — {result['cpu']}, {result['threads']} torch threads, {result['date']}:", ""]


def render_cpm(name: str, result: dict, notes: str) -> str:
    targets = file_config(name).get("targets", [])
    lines = measured_header(name, result, "real latent sections") + [
        "| quality | rate target (bpp) | bpp (latent section) | of it: importance map | MS-SSIM | PSNR (dB) "
        "| context model vs factorized | encode (s) | decode (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for quality, s in result["summary"].items():
        target = targets[int(quality) - 1] if int(quality) <= len(targets) else ""
        lines.append(f"| {quality} | {target} | {s['section_bpp']:.4f} | {s['importance_bpp']:.4f} "
                     f"| {s['ms_ssim']:.4f} | {s['psnr']:.2f} | {-100 * s['context_saving']:+.1f}% "
                     f"| {s['encode_s']:.2f} | {s['decode_s']:.2f} |")
    lines += ["", notes.strip(), ""]
    return "\n".join(lines)


def render_flow(name: str, result: dict, notes: str) -> str:
    ladder = file_config(name).get("ladder", [])
    lines = measured_header(name, result, "real files") + [
        "| quality | nominal step | bpp | PSNR (dB) | 1 level: bpp | PSNR (dB) | 2 levels: bpp | PSNR (dB) "
        "| encode (s) | decode (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, s in result["summary"].items():
        model, quality = key.split("/")
        if model != name:
            continue
        step = ladder[int(quality) - 1] if int(quality) <= len(ladder) else ""
        lines.append(f"| {quality} | {step} | {s['bpp']:.4f} | {s['psnr']:.2f} | {s['bpp_1']:.4f} | {s['psnr_1']:.2f} "
                     f"| {s['bpp_2']:.4f} | {s['psnr_2']:.2f} | {s['encode_s']:.2f} | {s['decode_s']:.2f} |")
    lines += ["", notes.strip(), ""]
    return "\n".join(lines)


def render_bitsback(name: str, result: dict, notes: str) -> str:
    """hyper-bb: per quality, the net and the stand-alone rate next to `hyper` on the same images."""
    check_results_match_weights(name, result["bb_weights"])
    lambdas = file_config(name).get("lambdas", [])
    rows = result["rows"]
    lines = header(name) + [
        "## Measured on Kodak (real files)", "",
        f"`make bench-bitsback` (`python benchmarks/bitsback_kodak.py --images {len(result['images'])} "
        f"--qualities {','.join(map(str, result['qualities']))} --sga-steps {result['sga_steps']} "
        f"--bbvi-steps {result['bbvi_steps']}`), Kodak {', '.join(result['images'])}, {result['threads']} torch "
        f"threads, {result['date']}, against `hyper` weights {result['hyper_weights']}. Net = (file − carried) "
        "bytes; \"alone\" = one image per file with nothing to carry (padding pays for the borrowed bits).", "",
        "| quality | lambda | net bpp (16 KiB side info carried) | file bpp alone | PSNR RGB (dB) "
        "| hyper: bpp / PSNR on the same images | bytes borrowed per image |",
        "|---|---|---|---|---|---|---|",
    ]
    curves = result["curves"]
    for i, quality in enumerate(result["qualities"]):
        borrowed = [r["borrowed_bits"] / 8 for r in rows if r["variant"] == "bb-net" and r["quality"] == quality]
        lam = lambdas[quality - 1] if quality <= len(lambdas) else ""
        (net, db), (alone, _), (base, base_db) = curves["bb-net"][i], curves["bb-alone"][i], curves["hyper"][i]
        lines.append(f"| {quality} | {lam} | {net:.4f} | {alone:.4f} | {db:.2f} | {base:.4f} / {base_db:.2f} "
                     f"| {sum(borrowed) / len(borrowed):,.0f} |")
    bd, timing = result["bd_rate_vs_hyper"], result["timing"]
    named = {"bb-net": "net with side information",
             "bb+sga-net": f"with `--refine sga` ({result['sga_steps']} steps, SGA + BBVI)",
             "bb-album": f"album of the {len(result['images'])} images",
             "bb-alone": "one image with nothing to carry"}
    sga_time = (f"; with SGA the encode takes {timing['bb+sga-net']['encode_s']:.0f} s" if "bb+sga-net" in timing
                else "")
    lines += ["", "BD-rate (PSNR) against `hyper` on these images: "
              + ", ".join(f"{what} {bd[variant]:+.1f}%" for variant, what in named.items() if variant in bd)
              + f". Encode {timing['bb-net']['encode_s']:.1f} s and decode {timing['bb-net']['decode_s']:.1f} s "
              f"per image ({result['bbvi_steps']} reproducible-BBVI steps each, float64 on one thread){sga_time}.",
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
