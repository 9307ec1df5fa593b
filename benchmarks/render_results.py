"""Write measured numbers into docs/results.md between marker comments, so the document always
shows exactly what the benchmark commands produced.

    python benchmarks/render_results.py --bench bench-out/kodak      # after `lic bench`
    python benchmarks/render_results.py --hyper docs/results-hyper.json
    python benchmarks/render_results.py --gc docs/results-gc.json --gallery docs/gallery/gallery.json \
        --selective docs/results-selective.json
    python benchmarks/render_results.py --large docs/results-large.json --fuzz docs/results-fuzz.json
    python benchmarks/render_results.py --cpm docs/results-cpm.json --cpm-bench bench-out/cpm \
        --large-cpm docs/results-large-cpm.json
    python benchmarks/render_results.py --flow docs/results-flow.json --flow-bench bench-out/flow
    python benchmarks/render_results.py --throughput docs/results-train-throughput.json --cse docs/results-cse.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.weights_compare import bd_table
from lic_cli.bench.bdrate import ms_ssim_db
from lic_cli.bench.report import bd_rates

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
    model = "" if result.get("model", "hyper") == "hyper" else f" --model {result['model']}"
    lines = [f"Command: `python benchmarks/kodak_hyper.py{model} --out {path.relative_to(DOC.parents[1])}` — weights "
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


def selective_block(path: Path) -> str:
    from gc_selective import markdown  # a sibling script
    result = json.loads(path.read_text())
    return "\n".join([
        f"Command: `python benchmarks/gc_selective.py --gallery kodim03.png kodim21.png` — Kodak, {result['images']} "
        f"images, gc-c4-sc weights {result['weights']}; means over the images:", "", markdown(result)])


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


def cpm_block(path: Path) -> str:
    """The cpm family: where its bytes and seconds go (benchmarks/cpm_kodak.py)."""
    result = json.loads(path.read_text())
    lines = [f"Command: `{result['command']}` — {result['images']} Kodak images, {result['cpu']}, "
             f"{result['threads']} torch threads, torch {result['torch']}, {result['date']}; weights "
             f"`{Path(result['weights']).name}` ({result['weights_hash']}).", "",
             "Rates in bpp of the latent section (the file adds a ~40-byte header): its real bits; their ideal "
             "parts (symbols under the exact tables, the importance map); the float model's cross-entropy "
             "(what training estimates); a factorized prior on the same symbols (each channel's own histogram "
             "of the image, its table not counted: a lower bound for any per-channel static model) and the "
             "context model's saving against it.", "",
             "| quality | section | symbols (ideal) | importance map | float cross-entropy | factorized | "
             "context saves | coded symbols | MS-SSIM | PSNR (dB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for quality, s in result["summary"].items():
        lines.append(f"| {quality} | {s['section_bpp']:.4f} | {s['ideal_symbol_bpp']:.4f} | {s['importance_bpp']:.4f} "
                     f"| {s['float_cross_entropy_bpp']:.4f} | {s['factorized_bpp']:.4f} "
                     f"| {100 * s['context_saving']:.1f}% | {100 * s['coded_share']:.1f}% | {s['ms_ssim']:.4f} "
                     f"| {s['psnr']:.2f} |")
    lines += ["", "Seconds per image: the encoder (network, the context model's parallel pass, the rest: ANS) and "
              "the decoder (importance map, the wavefront steps split into the context network and the rest: "
              "integer softmax and ANS, then the synthesis).", "",
              "| quality | encode | network | context pass | decode | importance map | wavefront network "
              "| wavefront coder | synthesis | steps |", "|---|---|---|---|---|---|---|---|---|---|"]
    for quality, s in result["summary"].items():
        lines.append(f"| {quality} | {s['encode_s']:.2f} | {s['encode_network_s']:.2f} | {s['encode_context_s']:.2f} "
                     f"| {s['decode_s']:.2f} | {s['decode_importance_s']:.3f} | {s['decode_wavefront_network_s']:.2f} "
                     f"| {s['decode_wavefront_coder_s']:.2f} | {s['decode_synthesis_s']:.2f} "
                     f"| {s['wavefront_steps']:.0f} |")
    return "\n".join(lines)


def cpm_bench_block(folder: Path) -> str:
    """cpm against the anchor and `hyper` in one `lic bench` run: BD-rates, and at each cpm point
    the rate that the anchor needs for the same MS-SSIM."""
    summary = json.loads((folder / "summary.json").read_text())
    curves, anchor = summary["curves"], summary["anchor"]
    lines = [f"Command: `{summary['command']}` — {summary['images']} images, {summary['date']}, "
             f"{summary['machine']} ({summary['cpu_count']} cores), lic one job at a time with "
             f"{summary['lic_threads']} torch thread(s), torch {summary['torch']}.{_run_note(summary)}", "",
             "| codec | BD-rate MS-SSIM vs " + anchor + " | BD-rate PSNR vs " + anchor
             + " | BD-rate MS-SSIM vs hyper | BD-rate PSNR vs hyper |", "|---|---|---|---|---|"]
    against_anchor, against_hyper = bd_rates(curves, anchor), bd_rates(curves, "lic-hyper")
    for codec in curves:
        a, h = against_anchor.get(codec, {}), against_hyper.get(codec, {})
        lines.append(f"| {codec} | {_pct(a.get('ms_ssim'))} | {_pct(a.get('psnr'))} | {_pct(h.get('ms_ssim'))} "
                     f"| {_pct(h.get('psnr'))} |")
    lines += ["", f"| cpm quality | bpp | MS-SSIM | PSNR (dB) | {anchor} bpp at that MS-SSIM | hyper bpp at that "
              "MS-SSIM | encode (s) | decode (s) | hyper: encode / decode (s) at its nearest rate |",
              "|---|---|---|---|---|---|---|---|---|"]
    for point in curves.get("lic-cpm", []):
        quality = ms_ssim_db(point["ms_ssim"])
        hyper = curves.get("lic-hyper", [])
        nearest = min(hyper or [point], key=lambda p: abs(p["bpp"] - point["bpp"]))
        lines.append(f"| {point['setting']} | {point['bpp']:.4f} | {point['ms_ssim']:.4f} | {point['psnr']:.2f} "
                     f"| {_rate_at(curves.get(anchor, []), quality)} | {_rate_at(hyper, quality)} "
                     f"| {point['encode_s']:.2f} | {point['decode_s']:.2f} "
                     f"| {nearest['encode_s']:.2f} / {nearest['decode_s']:.2f} |")
    return "\n".join(lines)


def flow_block(path: Path) -> str:
    """The flow family (benchmarks/flow_kodak.py): progressive levels, speed next to hyper, and
    re-encoding generations."""
    result = json.loads(path.read_text())
    summary = result["summary"]
    lines = [f"Command: `{result['command']}` — {result['images']} Kodak images, {result['cpu']}, "
             f"{result['threads']} torch threads, torch {result['torch']}, {result['date']}; weights "
             f"`{Path(result['weights']).name}` ({result['weights_hash']}), "
             f"hyper ({result['hyper_weights_hash']}).", "",
             "**Progressive decoding**: the same files decoded from their first level (`lic decode --levels 1`: "
             "z0, the finer latents at their predicted means), two levels, and whole. The rate of a preview "
             "counts the header, the sections it reads and the checksum.", "",
             "| quality | 1 level: bpp | PSNR (dB) | 2 levels: bpp | PSNR (dB) | 3 levels (the file): bpp | PSNR (dB) "
             "| encode (s) | decode (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for key, row in summary.items():
        model, quality = key.split("/")
        if model == "flow":
            lines.append(f"| {quality} | {row['bpp_1']:.4f} | {row['psnr_1']:.2f} | {row['bpp_2']:.4f} "
                         f"| {row['psnr_2']:.2f} | {row['bpp']:.4f} | {row['psnr']:.2f} | {row['encode_s']:.2f} "
                         f"| {row['decode_s']:.2f} |")
    lines += ["", "`hyper` in the same run, same threads:", "",
              "| quality | bpp | PSNR (dB) | encode (s) | decode (s) |", "|---|---|---|---|---|"]
    for key, row in summary.items():
        model, quality = key.split("/")
        if model == "hyper":
            lines.append(f"| {quality} | {row['bpp']:.4f} | {row['psnr']:.2f} | {row['encode_s']:.2f} "
                         f"| {row['decode_s']:.2f} |")
    runs = result["generations"]
    lines += ["", f"**Re-encoding**: decode → 8-bit pixels → encode at the same setting, generation after "
              f"generation, on the first {runs['images']} Kodak images; `flow` q{runs['flow_quality']} is the "
              f"quality whose PSNR is nearest to `hyper` q{runs['hyper_quality']}'s. PSNR against the original, "
              "bytes per file (means).", "",
              "| generation | flow PSNR (dB) | flow bytes | hyper PSNR (dB) | hyper bytes |", "|---|---|---|---|---|"]
    generations = sorted({int(key.split("/")[1]) for key in runs["summary"]})
    for g in generations:
        f, h = runs["summary"][f"flow/{g}"], runs["summary"][f"hyper/{g}"]
        lines.append(f"| {g} | {f['psnr']:.2f} | {f['bytes']:.0f} | {h['psnr']:.2f} | {h['bytes']:.0f} |")
    return "\n".join(lines)


def flow_bench_block(folder: Path) -> str:
    """flow against the anchor, hyper and the classical codecs in one `lic bench` run: BD-rates,
    and at each flow point the rate the anchor and hyper need for the same PSNR."""
    summary = json.loads((folder / "summary.json").read_text())
    curves, anchor = summary["curves"], summary["anchor"]
    lines = [f"Command: `{summary['command']}` — {summary['images']} images, {summary['date']}, "
             f"{summary['machine']} ({summary['cpu_count']} cores), lic one job at a time with "
             f"{summary['lic_threads']} torch thread(s), torch {summary['torch']}.{_run_note(summary)}", "",
             f"| codec | BD-rate PSNR vs {anchor} | BD-rate PSNR vs hyper | top point |", "|---|---|---|---|"]
    against_anchor, against_hyper = bd_rates(curves, anchor), bd_rates(curves, "lic-hyper")
    for codec, points in curves.items():
        top = max(points, key=lambda p: p["psnr"])
        lines.append(f"| {codec} | {_pct(against_anchor.get(codec, {}).get('psnr'))} "
                     f"| {_pct(against_hyper.get(codec, {}).get('psnr'))} | {top['bpp']:.3f} bpp, "
                     f"{top['psnr']:.2f} dB |")
    lines += ["", f"| flow quality | bpp | PSNR (dB) | MS-SSIM | {anchor} bpp at that PSNR | hyper bpp at that PSNR "
              "| encode (s) | decode (s) |", "|---|---|---|---|---|---|---|---|"]
    for point in curves.get("lic-flow", []):
        lines.append(f"| {point['setting']} | {point['bpp']:.4f} | {point['psnr']:.2f} | {_num(point['ms_ssim'])} "
                     f"| {_rate_at(curves.get(anchor, []), point['psnr'], 'psnr')} "
                     f"| {_rate_at(curves.get('lic-hyper', []), point['psnr'], 'psnr')} "
                     f"| {point['encode_s']:.2f} | {point['decode_s']:.2f} |")
    lines += ["", "![flow on Kodak](rd-flow.png)"]
    return "\n".join(lines)


def continued_block(path: Path) -> str:
    """A continued training run's weight file against the one it replaced (benchmarks/weights_compare.py)."""
    result = json.loads(path.read_text())
    commands = " and ".join(f"`{command}`" for command in result["commands"])
    return "\n".join([f"Runs: {commands} ({result['images']} images), compared with `python "
                      f"benchmarks/weights_compare.py {result['model']} REPLACED NEW`.", "",
                      *bd_table(result, shipped="replaced file", candidate="this file")])


VARIANT_WORDS = {
    "baseline": "before: bf16 autocast, channels-last, images in memory",
    "fp32": "fp32 instead of bf16",
    "contiguous": "without channels-last",
    "compile": "+ torch.compile (now the default for long runs)",
    "fused-adam": "+ Adam's fused kernel",
    "cse": "+ --reg cse",
    "compile+cse": "+ torch.compile, --reg cse",
    "ddp": "2 processes × 1 thread (DistributedDataParallel)",
    "compile+ddp": "2 processes × 1 thread, + torch.compile",
}


def throughput_block(path: Path) -> str:
    """benchmarks/train_throughput.py: steps per minute of hyper training per variant."""
    result = json.loads(path.read_text())
    rows = [r for r in result["results"] if "steps_per_minute" in r]
    base = next(r for r in rows if r["variant"] == "baseline")["samples_per_minute"]
    lines = [f"Command: `{result['command']}` — {result['date']}, {result['cpu']}, {result['threads']} threads in "
             f"all, torch {result['torch']}; `hyper` as `lic train --model hyper` builds it (M = 192), "
             f"batch {result['batch_size']} of {result['crop']}² crops per process; timed after the warm-up steps "
             "(compilation included there).", "",
             "| variant | processes | steps/min | crops/min | vs before | warm-up (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {VARIANT_WORDS.get(r['variant'], r['variant'])} | {r['processes']} | "
                     f"{r['steps_per_minute']:.0f} | {r['samples_per_minute']:.0f} | "
                     f"{100 * (r['samples_per_minute'] / base - 1):+.0f}% | {r['warmup_seconds']:.0f} |")
    for r in result["results"]:
        if r["variant"] == "load":
            lines += ["", f"Decoding the {r['images']} training images into memory once, at the start: "
                      f"{r['seconds']:.1f} s."]
    return "\n".join(lines)


def cse_block(path: Path) -> str:
    """benchmarks/cse_pairs.py: paired fine-tunes with and without --reg cse."""
    result = json.loads(path.read_text())
    runs = list(result["train_minutes"])
    lines = [f"Command: `{result['command']}` — {result['date']}, {result['cpu']}, {result['threads']} threads. "
             f"Each run: `lic train --model hyper --init {Path(result['init']).name}`, {result['steps']:,} steps of "
             f"batch 4 × 256², peak learning rate {result['lr']}, same crops and noise within a seed; minutes: "
             + ", ".join(f"{run} {minutes}" for run, minutes in result["train_minutes"].items())
             + " (some shared the CPU with other work: the table above measures speed). "
             f"`cse` is `--reg cse --alpha {result['alphas'][0]:g}`"
             + "".join(f", `cse-a{a:g}` is `--alpha {a:g}` (one seed)" for a in result["alphas"][1:])
             + ". BD-rate (PSNR, real files, 6 qualities) against the shipped file; negative = fewer bytes; "
             f"illustrations: the last {result['held_out_illustrations']} of ../shared/data/train-graphics, "
             "held out of these runs (the shipped file was trained on photos only).", "",
             "| set | " + " | ".join(runs) + " | mean plain | mean cse | seed spread plain | seed spread cse |",
             "|---|" + "---|" * (len(runs) + 4)]
    for name, block in result["sets"].items():
        rates = block["bd_rate_vs_shipped"]
        lines.append(f"| {name} | " + " | ".join(_pct(rates[run]) for run in runs)
                     + f" | {_pct(block['mean']['plain'])} | {_pct(block['mean']['cse'])} "
                     f"| {block['seed_spread']['plain']:.2f} pt | {block['seed_spread']['cse']:.2f} pt |")
    return "\n".join(lines)


def rate_control_block(path: Path) -> str:
    result = json.loads(path.read_text())
    lines = [f"Command: `{result['command']}` — weights {result['weights_hash']}, {result['images']} images, "
             f"{result['cpu']}, {result['threads']} torch threads, {result['date']}.", "",
             "| target | search | met | how close (mean / worst) | encodes per image | seconds per image |",
             "|---|---|---|---|---|---|"]
    for s in result["summaries"]:
        size = s["target"].endswith("bytes")
        close = (f"{s['mean_gap']:.2f}% / {s['max_gap']:.2f}% of the budget unused ({s['gaps']} images where it binds)"
                 if size else f"{s['mean_gap']:.2f} / {s['max_gap']:.2f} dB above the floor")
        search = "continuous qualities (1/256)" if s["search"] == "continuous" else "the 6 operating points only"
        lines.append(f"| {s['target']} | {search} | {s['met']} | {close} | {s['encodes']:.1f} | {s['seconds']:.2f} |")
    return "\n".join(lines)


def _rate_at(points: list[dict], quality_db: float, metric: str = "ms_ssim") -> str:
    """A curve's bpp at an MS-SSIM (in dB) or a PSNR, interpolating log-rate linearly; n/a outside it."""
    def db(point: dict) -> float:
        return ms_ssim_db(point["ms_ssim"]) if metric == "ms_ssim" else point["psnr"]

    known = sorted((db(p), math.log(p["bpp"])) for p in points if p[metric] is not None)
    for (q0, r0), (q1, r1) in itertools.pairwise(known):
        if q0 <= quality_db <= q1 and q1 > q0:
            return f"{math.exp(r0 + (r1 - r0) * (quality_db - q0) / (q1 - q0)):.4f}"
    return "n/a (outside its range)"


def _run_note(summary: dict) -> str:
    """How a run differed from its command (e.g. the candidate weights it ran with before they shipped)."""
    return f" Note: {summary['note']}." if summary.get("note") else ""


def _pct(value) -> str:
    return "n/a (no overlap)" if value is None else f"{value:+.1f}%"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, help="output folder of `lic bench`")
    parser.add_argument("--hyper", type=Path, help="JSON written by benchmarks/kodak_hyper.py")
    parser.add_argument("--hyper-ctx", type=Path, help="JSON written by benchmarks/kodak_hyper.py --model hyper-ctx")
    parser.add_argument("--bitsback", type=Path, help="JSON written by benchmarks/bitsback_kodak.py")
    parser.add_argument("--gc", type=Path, help="JSON written by benchmarks/gc_kodak.py")
    parser.add_argument("--gallery", type=Path, help="gallery.json written by benchmarks/gc_gallery.py")
    parser.add_argument("--selective", type=Path, help="JSON written by benchmarks/gc_selective.py")
    parser.add_argument("--large", type=Path, help="JSON written by benchmarks/large_images.py")
    parser.add_argument("--fuzz", type=Path, help="JSON written by benchmarks/fuzz.py")
    parser.add_argument("--cpm", type=Path, help="JSON written by benchmarks/cpm_kodak.py")
    parser.add_argument("--large-cpm", type=Path, help="JSON written by benchmarks/large_images.py --models cpm")
    parser.add_argument("--cpm-bench", type=Path, help="output folder of `lic bench --models cpm,hyper`")
    parser.add_argument("--flow", type=Path, help="JSON written by benchmarks/flow_kodak.py")
    parser.add_argument("--flow-bench", type=Path, help="output folder of `lic bench --models flow,hyper`")
    parser.add_argument("--flow-continued", type=Path, help="JSON written by benchmarks/weights_compare.py (flow)")
    parser.add_argument("--throughput", type=Path, help="JSON written by benchmarks/train_throughput.py")
    parser.add_argument("--cse", type=Path, help="JSON written by benchmarks/cse_pairs.py")
    parser.add_argument("--rate-control", type=Path, help="JSON written by benchmarks/rate_control_kodak.py")
    args = parser.parse_args()
    text = DOC.read_text()
    if args.bench:
        text = replace_block(text, "bench", bench_block(args.bench))
        if (args.bench / "rd.png").exists():
            shutil.copyfile(args.bench / "rd.png", DOC.parent / "rd-kodak.png")
    renderers = {"hyper": hyper_block, "hyper_ctx": hyper_block, "bitsback": bitsback_block, "gc": gc_block,
                 "gallery": gallery_block, "selective": selective_block,
                 "large": large_block, "fuzz": fuzz_block, "cpm": cpm_block, "cpm_bench": cpm_bench_block,
                 "large_cpm": large_block, "flow": flow_block, "flow_bench": flow_bench_block,
                 "flow_continued": continued_block,
                 "throughput": throughput_block, "cse": cse_block, "rate_control": rate_control_block}
    for name, render in renderers.items():
        path = getattr(args, name)
        if path:
            text = replace_block(text, name.replace("_", "-"), render(path.resolve()))
    if args.cpm_bench and (args.cpm_bench / "summary.json").exists():
        shutil.copyfile(args.cpm_bench / "summary.json", DOC.parent / "results-cpm-bench.json")
        if (args.cpm_bench / "rd.png").exists():
            shutil.copyfile(args.cpm_bench / "rd.png", DOC.parent / "rd-cpm.png")
    if args.flow_bench and (args.flow_bench / "summary.json").exists():
        shutil.copyfile(args.flow_bench / "summary.json", DOC.parent / "results-flow-bench.json")
        if (args.flow_bench / "rd.png").exists():
            shutil.copyfile(args.flow_bench / "rd.png", DOC.parent / "rd-flow.png")
    DOC.write_text(text)


if __name__ == "__main__":
    main()
