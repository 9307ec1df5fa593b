"""Side-by-side crops for docs/gallery/: original | gc-c4 | HEIC at the same bytes | HEIC at ~2x the
bytes | MSE baseline (gc-c4-mse), for a few Kodak images.

The claim of Agustsson et al. is that gc-c4 looks better than HEVC-intra (BPG) at twice the bits.
HEIC here is libheif/x265 intra, 4:2:0 (its best setting at these rates), psycho-visual tuning off
like in `lic bench`; its QP is searched for the best quality whose whole .heic file is not larger
than the target (the whole .lic file of gc-c4, header included). At these rates HEIC may not get
that small even at QP 51: then QP 51 is used and the panel says how many bytes it took.

    python benchmarks/gc_gallery.py --out docs/gallery
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lic_cli.bench.codecs import heic_decode, heic_encode
from lic_cli.codec import CodecSession, decode_file, encode_image
from lic_cli.imageio import read_image
from lic_cli.metrics import haarpsi, psnr

# (image, left, top) of a 192x192 crop with faces, texture or edges.
CROPS = (("kodim04.png", 200, 260), ("kodim14.png", 240, 160), ("kodim21.png", 250, 90),
         ("kodim23.png", 400, 110))
CROP = 192
LABEL_HEIGHT = 28
MAX_QP = 51


def heic_at_most(pixels: np.ndarray, target_bytes: int) -> tuple[bytes, int]:
    """(file, qp): the lowest QP whose file fits in target_bytes, or QP 51 if none does."""
    low, high = 0, MAX_QP
    best = None
    while low <= high:
        qp = (low + high) // 2
        data = heic_encode(pixels, qp, chroma=420)
        if len(data) <= target_bytes:
            best, high = (data, qp), qp - 1
        else:
            low = qp + 1
    return best if best is not None else (heic_encode(pixels, MAX_QP, chroma=420), MAX_QP)


def panel(pixels: np.ndarray, left: int, top: int, label: str) -> Image.Image:
    crop = Image.fromarray(pixels[top : top + CROP, left : left + CROP, :3])
    canvas = Image.new("RGB", (CROP, CROP + LABEL_HEIGHT), "white")
    canvas.paste(crop, (0, LABEL_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    for row, text in enumerate(label.split("\n")):
        draw.text((3, 2 + 13 * row), text, fill="black")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--out", type=Path, default=Path("docs/gallery"))
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH")
    args = parser.parse_args()
    session = CodecSession({k: Path(v) for k, v in (item.split("=", 1) for item in args.weights)})
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for name, left, top in CROPS:
        image = read_image((args.kodak / name).read_bytes())
        original = image.pixels[:, :, :3]
        pixels_count = image.width * image.height
        gc_file = encode_image(image, session.get("gc-c4"), 0)
        mse_file = encode_image(image, session.get("gc-c4-mse"), 0)
        gc_pixels = decode_file(gc_file, session).image.pixels
        mse_pixels = decode_file(mse_file, session).image.pixels
        same, qp_same = heic_at_most(original, len(gc_file))
        double, qp_double = heic_at_most(original, 2 * len(gc_file))
        heic_same, heic_double = heic_decode(same), heic_decode(double)
        shown = [("gc-c4", gc_file, gc_pixels), (f"HEIC qp{qp_same}", same, heic_same),
                 (f"HEIC qp{qp_double} (~2x)", double, heic_double), ("gc-c4-mse", mse_file, mse_pixels)]
        panels = [panel(original, left, top, f"original\n{name}")]
        panels += [panel(decoded, left, top, f"{title}\n{len(data)} B, {8 * len(data) / pixels_count:.4f} bpp, "
                         f"{psnr(original, decoded):.1f} dB") for title, data, decoded in shown]
        strip = Image.new("RGB", (len(panels) * (CROP + 4) - 4, CROP + LABEL_HEIGHT), "white")
        for i, part in enumerate(panels):
            strip.paste(part, (i * (CROP + 4), 0))
        strip.save(args.out / name, optimize=True)
        records.append({"image": name, "crop": [left, top, CROP],
                        **{key: {"bytes": len(data), "bpp": 8 * len(data) / pixels_count, "psnr": psnr(original, px),
                                 "haarpsi": haarpsi(original, px), **({"qp": qp} if qp is not None else {})}
                           for key, data, px, qp in (("gc-c4", gc_file, gc_pixels, None),
                                                     ("heic-same", same, heic_same, qp_same),
                                                     ("heic-2x", double, heic_double, qp_double),
                                                     ("gc-c4-mse", mse_file, mse_pixels, None))}})
        print(json.dumps(records[-1]), flush=True)
    (args.out / "gallery.json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
