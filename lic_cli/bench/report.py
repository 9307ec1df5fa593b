"""Bench output: BD-rates, a terminal table, CSV/JSON files and the R-D plot."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .bdrate import bd_rate, ms_ssim_db


def bd_rates(curves: dict[str, list[dict]], anchor: str) -> dict[str, dict[str, float | None]]:
    if anchor not in curves:
        return {}
    reference = curves[anchor]
    result = {}
    for codec, points in curves.items():
        result[codec] = {
            "psnr": bd_rate(_col(reference, "bpp"), _col(reference, "psnr"), _col(points, "bpp"), _col(points, "psnr")),
            "ms_ssim": bd_rate(_col(reference, "bpp"), _ms_db(reference), _col(points, "bpp"), _ms_db(points)),
        }
    return result


def _col(points: list[dict], key: str) -> list[float]:
    return [p[key] if p[key] is not None else float("nan") for p in points]


def _ms_db(points: list[dict]) -> list[float]:
    return [ms_ssim_db(p["ms_ssim"]) if p["ms_ssim"] is not None else float("nan") for p in points]


def print_tables(console: Console, curves: dict, bd: dict, anchor: str, options: dict[str, str]) -> None:
    points = Table(title="Mean over images, per setting (real file bytes)")
    for column in ("codec", "setting", "bpp", "PSNR dB", "MS-SSIM", "HaarPSI", "enc s", "dec s"):
        points.add_column(column, justify="right" if column not in ("codec", "setting") else "left")
    for codec, rows in curves.items():
        for row in rows:
            points.add_row(codec, row["setting"], f"{row['bpp']:.4f}", f"{row['psnr']:.2f}",
                           _fmt(row["ms_ssim"], 4), _fmt(row["haarpsi"], 4), f"{row['encode_s']:.3f}",
                           f"{row['decode_s']:.3f}")
    console.print(points)
    summary = Table(title=f"BD-rate vs {anchor} (negative = fewer bytes for the same quality)")
    for column in ("codec", "BD-rate PSNR", "BD-rate MS-SSIM", "encoder settings"):
        summary.add_column(column)
    for codec in curves:
        rates = bd.get(codec, {})
        summary.add_row(codec, _pct(rates.get("psnr")), _pct(rates.get("ms_ssim")), options.get(codec, ""))
    console.print(summary)


def _fmt(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "n/a (no overlap)" if value is None else f"{value:+.1f}%"


def write_files(out: Path, records: list[dict], curves: dict, bd: dict, meta: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    per_image = out / "points.csv"
    fields = ["codec", "setting", "image", "bytes", "bpp", "psnr", "ms_ssim", "haarpsi", "encode_s", "decode_s",
              "threads"]
    with per_image.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fields, extrasaction="ignore")
        writer.writeheader()
        for record in sorted(records, key=lambda r: (r["codec"], r["bpp"], r["image"])):
            writer.writerow(record)
    aggregated = out / "summary.csv"
    with aggregated.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["codec", "setting", "images", "bpp", "psnr", "ms_ssim", "haarpsi", "encode_s", "decode_s"])
        for codec, rows in curves.items():
            for row in rows:
                writer.writerow([codec, row["setting"], row["images"]] +
                                [row[k] for k in ("bpp", "psnr", "ms_ssim", "haarpsi", "encode_s", "decode_s")])
    summary = out / "summary.json"
    summary.write_text(json.dumps({**meta, "curves": curves, "bd_rate": bd}, indent=1))
    return [per_image, aggregated, summary]


def plot(out: Path, curves: dict, anchor: str) -> Path | None:
    """PSNR-bpp and MS-SSIM-bpp, one line per codec; None if matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    for codec, rows in curves.items():
        style = {"linewidth": 2.2} if codec.startswith("lic-") else {"linewidth": 1.2}
        marker = "o" if codec.startswith("lic-") else "."
        bpp = [r["bpp"] for r in rows]
        left.plot(bpp, [r["psnr"] for r in rows], marker=marker, label=codec, **style)
        right.plot(bpp, [ms_ssim_db(r["ms_ssim"]) if r["ms_ssim"] is not None else float("nan") for r in rows],
                   marker=marker, label=codec, **style)
    for axis, label in ((left, "PSNR RGB (dB)"), (right, "MS-SSIM (dB, -10 log10(1 - x))")):
        axis.set_xlabel("bits per pixel (real files)")
        axis.set_ylabel(label)
        axis.set_xlim(0, 2.0)
        axis.grid(alpha=0.3)
    left.legend(fontsize=8)
    figure.suptitle(f"Rate-distortion (anchor for BD-rate: {anchor})")
    figure.tight_layout()
    path = out / "rd.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
