"""Write measured numbers into docs/results.md between marker comments, so the document always
shows exactly what the benchmark commands produced.

    python benchmarks/render_results.py --bench bench-out/kodak      # after `lic bench`
    python benchmarks/render_results.py --hyper docs/results-hyper.json
    python benchmarks/render_results.py --gc docs/results-gc.json --gallery docs/gallery/gallery.json
    python benchmarks/render_results.py --large docs/results-large.json --fuzz docs/results-fuzz.json
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"docs/results.md lacks the <!-- {name}:start/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def bench_block(folder: Path) -> str:
    summary = json.loads((folder / "summary.json").read_text())
    anchor = summary["anchor"]
    lines = [f"Command: `{summary['command']}` — {summary['images']} images, {summary['date']}, "
             f"{summary['machine']} ({summary['cpu_count']} cores), classical codecs in {summary['jobs']} parallel "
             f"job(s), then lic one job at a time with {summary['lic_threads']} torch thread(s), "
             f"torch {summary['torch']}.", "",
             f"BD-rate against **{anchor}** over the overlapping quality range (negative = fewer bytes):", "",
             "| codec | BD-rate PSNR | BD-rate MS-SSIM | encoder settings |", "|---|---|---|---|"]
    for codec in summary["curves"]:
        rates = summary["bd_rate"].get(codec, {})
        lines.append(f"| {codec} | {_pct(rates.get('psnr'))} | {_pct(rates.get('ms_ssim'))} "
                     f"| {summary['options'][codec]} |")
    lines += ["", "![rate-distortion on Kodak](rd-kodak.png)", "",
              "<details><summary>Every point (means over the images)</summary>", "",
              "| codec | setting | bpp | PSNR (dB) | MS-SSIM | HaarPSI | encode (s) | decode (s) |",
              "|---|---|---|---|---|---|---|---|"]
    for codec, points in summary["curves"].items():
        for p in points:
            lines.append(f"| {codec} | {p['setting']} | {p['bpp']:.4f} | {p['psnr']:.2f} | {_num(p['ms_ssim'])} "
                         f"| {_num(p['haarpsi'])} | {p['encode_s']:.3f} | {p['decode_s']:.3f} |")
    lines += ["", "</details>"]
    return "\n".join(lines)


def hyper_block(path: Path) -> str:
    result = json.loads(path.read_text())
    lines = [f"Command: `python benchmarks/kodak_hyper.py --out {path.relative_to(DOC.parents[1])}` — weights "
             f"`{Path(result['weights']).name}` ({result['weights_hash']}), {result['threads']} torch threads, "
             f"torch {result['torch']}, {result['date']}.", "",
             "| quality | bpp (real files) | PSNR RGB (dB) | MS-SSIM | encode (s/img) | decode (s/img) |",
             "|---|---|---|---|---|---|"]
    for quality, s in result["summary"].items():
        lines.append(f"| {quality} | {s['bpp']:.4f} | {s['psnr']:.2f} | {s['ms_ssim']:.4f} "
                     f"| {s['encode_s']:.3f} | {s['decode_s']:.3f} |")
    return "\n".join(lines)


VARIANT_NOTES = {
    "hyper": "base model, plain encoding (anchor)",
    "hyper+sga": "base model, `--refine sga`",
    "bb-alone": "hyper-bb, one image per file, nothing to carry (padding pays for the borrowed bits)",
    "bb-net": "hyper-bb carrying 16 KiB of side information; net rate = (file − carried) bytes",
    "bb+sga-net": "the same with `--refine sga` (SGA + BBVI); net rate",
    "bb-album": "hyper-bb, all images of a quality in one album file (carries names only); net rate",
}


def bitsback_block(path: Path) -> str:
    result = json.loads(path.read_text())
    command = (f"python benchmarks/bitsback_kodak.py --images {len(result['images'])} "
               f"--qualities {','.join(map(str, result['qualities']))} --sga-steps {result['sga_steps']} "
               f"--bbvi-steps {result['bbvi_steps']} --out {path.relative_to(DOC.parents[1])}")
    lines = [f"Command: `{command}` — Kodak {', '.join(result['images'])}, qualities "
             f"{', '.join(map(str, result['qualities']))}, {result['threads']} torch threads ({result['compute']}), "
             f"{result['date']}; hyper weights {result['hyper_weights']}, hyper-bb weights {result['bb_weights']}.", "",
             "| variant | BD-rate PSNR vs hyper | encode (s/img) | decode (s/img) | what |", "|---|---|---|---|---|"]
    for variant, bd in result["bd_rate_vs_hyper"].items():
        timing = result["timing"][variant]
        decode = "—" if timing["decode_s"] != timing["decode_s"] else f"{timing['decode_s']:.2f}"
        lines.append(f"| {variant} | {'anchor' if variant == 'hyper' else _pct(bd)} | {timing['encode_s']:.2f} "
                     f"| {decode} | {VARIANT_NOTES.get(variant, '')} |")
    if result.get("mean_borrowed_bytes_per_image"):
        lines += ["", f"Bits taken back per image (bb-net, mean over images and qualities): "
                      f"{result['mean_borrowed_bytes_per_image']:,.0f} bytes."]
    lines += ["", "<details><summary>Every point (means over the images)</summary>", "",
              "| variant | quality | bpp | PSNR (dB) |", "|---|---|---|---|"]
    for variant, curve in result["curves"].items():
        for quality, (bpp, psnr) in zip(result["qualities"], curve, strict=True):
            lines.append(f"| {variant} | {quality} | {bpp:.4f} | {psnr:.2f} |")
    lines += ["", "</details>"]
    return "\n".join(lines)


def gc_block(path: Path) -> str:
    from gc_kodak import markdown  # a sibling script (its folder is on sys.path when run as one)
    results = json.loads(path.read_text())
    first = results[0]
    hashes = ", ".join(f"{r['model']} {r['weights_hash']}" for r in results)
    return "\n".join([
        f"Command: `python benchmarks/gc_kodak.py --out docs/results-gc.json` — Kodak, {len(first['images'])} "
        f"images, {first['threads']} torch threads ({first['precision']}), {first['date']}; weights {hashes}.", "",
        "Rates are means over the images: the real file (header included), each of the two entropy coders of "
        "W on its own (the file keeps the smaller), and the bound dim(W)·log2(5).", "",
        markdown(results)])


def gallery_block(path: Path) -> str:
    records = json.loads(path.read_text())
    lines = ["Command: `python benchmarks/gc_gallery.py --out docs/gallery`. Whole-image numbers of the four "
             "gallery images (the crops show a 192×192 part of each):", "",
             "| image | gc-c4 bytes / PSNR / HaarPSI | HEIC same bytes (QP) | HEIC ~2× (QP) | gc-c4-mse |",
             "|---|---|---|---|---|"]
    for r in records:
        cells = [f"{r[k]['bytes']} B, {r[k]['psnr']:.2f} dB, {r[k]['haarpsi']:.3f}"
                 + (f" (qp {r[k]['qp']})" if "qp" in r[k] else "")
                 for k in ("gc-c4", "heic-same", "heic-2x", "gc-c4-mse")]
        lines.append(f"| [{r['image']}](gallery/{r['image']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def large_block(path: Path) -> str:
    result = json.loads(path.read_text())
    lines = [f"Command: `{result['command']}` — {result['cpu']}, {result['threads']} torch threads, "
             f"{result['date']}. Peak RSS of each `lic` process (the kernel's accounting), wall time.", "",
             "| model | image | Mpixel | bytes | encode (s) | encode peak (GiB) | decode (s) | decode peak (GiB) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['width']}×{r['height']} | {r['megapixels']:.1f} | {r['bytes']:,} "
                     f"| {r['encode_s']:.1f} | {r['encode_gib']:.2f} | {r['decode_s']:.1f} | {r['decode_gib']:.2f} |")
    return "\n".join(lines)


def fuzz_block(path: Path) -> str:
    result = json.loads(path.read_text())
    outcomes = ", ".join(f"{count:,} {outcome}" for outcome, count in sorted(result["outcomes"].items()))
    problems = ", ".join(p["outcome"] for p in result["problems"]) or "none"
    return (f"Command: `{result['command']}` — {result['date']}. {result['files']:,} mutated files in "
            f"{result['minutes']:g} minutes: {outcomes}; crashes and hangs: {problems}. Slowest file "
            f"{result['slowest_s']:.2f} s (a mutation of {result['slowest_seed']}), peak RSS of the decoding "
            f"process {result['peak_rss_gib']:.2f} GiB (every shipped model loaded).")


def _pct(value) -> str:
    return "n/a (no overlap)" if value is None else f"{value:+.1f}%"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, help="output folder of `lic bench`")
    parser.add_argument("--hyper", type=Path, help="JSON written by benchmarks/kodak_hyper.py")
    parser.add_argument("--bitsback", type=Path, help="JSON written by benchmarks/bitsback_kodak.py")
    parser.add_argument("--gc", type=Path, help="JSON written by benchmarks/gc_kodak.py")
    parser.add_argument("--gallery", type=Path, help="gallery.json written by benchmarks/gc_gallery.py")
    parser.add_argument("--large", type=Path, help="JSON written by benchmarks/large_images.py")
    parser.add_argument("--fuzz", type=Path, help="JSON written by benchmarks/fuzz.py")
    args = parser.parse_args()
    text = DOC.read_text()
    if args.bench:
        text = replace_block(text, "bench", bench_block(args.bench))
        if (args.bench / "rd.png").exists():
            shutil.copyfile(args.bench / "rd.png", DOC.parent / "rd-kodak.png")
    renderers = {"hyper": hyper_block, "bitsback": bitsback_block, "gc": gc_block, "gallery": gallery_block,
                 "large": large_block, "fuzz": fuzz_block}
    for name, render in renderers.items():
        path = getattr(args, name)
        if path:
            text = replace_block(text, name, render(path.resolve()))
    DOC.write_text(text)


if __name__ == "__main__":
    main()
