"""Selective generation on Kodak: a centred box keeps ~25% or ~50% of each image, the rest is
synthesised (`lic encode --model gc-c4-sc --preserve MASK`).

Per image and box: the file's bytes against the same model's file of the whole image (the paper:
the saving follows the synthesised area), the PSNR inside the box (what "preserve" promises: it
should match the whole-image file's PSNR there) and outside it (synthesised: not meant to match,
but a fill that continues the surroundings' colours scores higher than one that does not), and
HaarPSI of the whole decoded picture (box and fill together).
Writes docs/results-selective.json and, with --gallery, strips original | whole image | 50% box |
25% box (half size, the box outlined on the original only) into docs/gallery/.

    python benchmarks/gc_selective.py [--kodak DIR] [--images N] [--weights gc-c4-sc=FILE] [--gallery IMG ...]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lic_cli.codec import CodecSession, decode_file, encode_image
from lic_cli.imageio import list_images, read_image
from lic_cli.metrics import haarpsi, psnr
from models.interface import EncodeOptions

MODEL = "gc-c4-sc"
SHARES = (0.5, 0.25)  # of the image area kept
LABEL_HEIGHT = 28


def centred_box(height: int, width: int, share: float) -> np.ndarray:
    """A centred box covering `share` of the area, of the image's aspect ratio."""
    side = math.sqrt(share)
    box_h, box_w = round(height * side), round(width * side)
    top, left = (height - box_h) // 2, (width - box_w) // 2
    mask = np.zeros((height, width), dtype=bool)
    mask[top:top + box_h, left:left + box_w] = True
    return mask


def region_psnr(original: np.ndarray, decoded: np.ndarray, region: np.ndarray) -> float:
    return psnr(original[region][None], decoded[region][None])


def measure(path: Path, session: CodecSession) -> tuple[dict, dict[str, np.ndarray]]:
    image = read_image(path.read_bytes())
    original = image.pixels[:, :, :3]
    loaded = session.get(MODEL)
    whole = encode_image(image, loaded, 0)
    whole_pixels = decode_file(whole, session).image.pixels
    record = {"image": path.name, "whole": {"bytes": len(whole), "psnr": psnr(original, whole_pixels),
                                            "haarpsi": haarpsi(original, whole_pixels)}}
    decoded = {"whole": whole_pixels}
    for share in SHARES:
        box = centred_box(image.height, image.width, share)
        data = encode_image(image, loaded, 0, EncodeOptions(preserve=box))
        pixels = decode_file(data, session).image.pixels
        record[f"box{round(share * 100)}"] = {
            "bytes": len(data), "saving": 1 - len(data) / len(whole),
            "psnr_kept": region_psnr(original, pixels, box),
            "psnr_kept_whole_file": region_psnr(original, whole_pixels, box),
            "psnr_synthesised": region_psnr(original, pixels, ~box), "haarpsi": haarpsi(original, pixels)}
        decoded[f"box{round(share * 100)}"] = pixels
    return record, decoded


def summary(records: list[dict]) -> dict:
    out = {"images": len(records), "whole_bytes": float(np.mean([r["whole"]["bytes"] for r in records])),
           "whole_haarpsi": float(np.mean([r["whole"]["haarpsi"] for r in records]))}
    for share in SHARES:
        key = f"box{round(share * 100)}"
        rows = [r[key] for r in records]
        out[key] = {name: float(np.mean([row[name] for row in rows]))
                    for name in ("bytes", "saving", "psnr_kept", "psnr_kept_whole_file", "psnr_synthesised",
                                 "haarpsi")}
    return out


def markdown(result: dict) -> str:
    lines = ["| kept area | bytes (mean) | saving vs whole-image file | PSNR in the box | same box, whole-image file "
             "| PSNR outside (synthesised) | HaarPSI, whole picture |", "|---|---|---|---|---|---|---|",
             f"| 100% (no mask) | {result['whole_bytes']:.0f} | – | – | – | – | {result['whole_haarpsi']:.3f} |"]
    for share in SHARES:
        row = result[f"box{round(share * 100)}"]
        lines.append(f"| {share:.0%} (centred box) | {row['bytes']:.0f} | {row['saving']:.1%} "
                     f"| {row['psnr_kept']:.2f} dB | {row['psnr_kept_whole_file']:.2f} dB "
                     f"| {row['psnr_synthesised']:.2f} dB | {row['haarpsi']:.3f} |")
    return "\n".join(lines)


def gallery_strip(original: np.ndarray, decoded: dict[str, np.ndarray], record: dict, out: Path) -> None:
    height, width = original.shape[:2]
    size = (width // 2, height // 2)
    outlined = Image.fromarray(original)
    draw = ImageDraw.Draw(outlined)
    for share in SHARES:
        rows, cols = np.nonzero(centred_box(height, width, share).any(axis=1))[0], \
            np.nonzero(centred_box(height, width, share).any(axis=0))[0]
        draw.rectangle((cols[0], rows[0], cols[-1], rows[-1]), outline="yellow", width=3)
    panels = [(outlined, f"original {record['image']} (boxes: 50%, 25%)")]
    panels.append((Image.fromarray(decoded["whole"]), f"{MODEL} whole image: {record['whole']['bytes']} B"))
    for share in SHARES:
        key = f"box{round(share * 100)}"
        panels.append((Image.fromarray(decoded[key]),
                       f"keep {share:.0%}: {record[key]['bytes']} B, box {record[key]['psnr_kept']:.1f} dB"))
    strip = Image.new("RGB", (len(panels) * (size[0] + 4) - 4, size[1] + LABEL_HEIGHT), "white")
    for i, (picture, label) in enumerate(panels):
        strip.paste(picture.resize(size, Image.Resampling.LANCZOS), (i * (size[0] + 4), LABEL_HEIGHT))
        ImageDraw.Draw(strip).text((i * (size[0] + 4) + 3, 8), label, fill="black")
    strip.save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--images", type=int, help="only the first N images")
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH")
    parser.add_argument("--gallery", nargs="*", default=[], metavar="IMAGE", help="e.g. kodim21.png")
    parser.add_argument("--gallery-dir", type=Path, default=Path("docs/gallery"))
    parser.add_argument("--json", type=Path, default=Path("docs/results-selective.json"))
    args = parser.parse_args()
    session = CodecSession({k: Path(v) for k, v in (item.split("=", 1) for item in args.weights)})
    records = []
    for path in list_images(args.kodak)[: args.images]:
        record, decoded = measure(path, session)
        records.append(record)
        print(json.dumps(record), flush=True)
        if path.name in args.gallery:
            original = read_image(path.read_bytes()).pixels[:, :, :3]
            gallery_strip(original, decoded, record, args.gallery_dir / f"selective-{path.name}")
    result = {"model": MODEL, "weights": session.get(MODEL).weights_id.hex(), **summary(records),
              "per_image": records}
    args.json.write_text(json.dumps(result, indent=1))
    print(f"Command: `python benchmarks/gc_selective.py --gallery {' '.join(args.gallery)}` "
          f"({result['images']} Kodak images, {MODEL} weights {result['weights']})\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
