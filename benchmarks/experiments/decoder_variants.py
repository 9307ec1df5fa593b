"""Showed: neither decoder-side variant is worth shipping (docs/notes/2026-11-decoder-variants.md).

Two ways to decode `hyper` files better without training, measured on Kodak (PSNR only; the
rate does not change):

1. Bin centroids: rebuild each latent at the mean of y within its quantization bin instead of at
   the bin's centre (mean + integer). The offsets are fitted per (Gaussian scale of the table,
   |residual| 1, 2, 3+) on the even-numbered images and scored on the odd-numbered ones.
2. Precision of the transforms: encoder and synthesis each in bf16 or fp32, and a bf16 synthesis
   whose last layer (the one that writes the pixels) runs in fp32; with the synthesis time.

    python benchmarks/experiments/decoder_variants.py --kodak ../shared/data/kodak [--weights FILE] [--qualities 4,5,6]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from lic_cli import codec as lic_codec
from lic_cli.imageio import list_images, load_rgb_array
from lic_cli.metrics import psnr
from models import zoo
from models.core import precision

MAX_MAGNITUDE = 3  # residuals of magnitude >= this share one offset per scale
MIN_COUNT = 50  # fewer samples than this in a (scale, magnitude) cell: no offset
FP32_TAIL = "bf16 + fp32 last layer"


def to_pixels(x_hat: torch.Tensor) -> np.ndarray:
    """The 8-bit RGB pixels `lic decode` would write for a (3, H, W) reconstruction."""
    return lic_codec.to_pixels(x_hat, channels=3)


def quantized_latents(codec, pixels: np.ndarray, quality: int) -> dict:
    """What the decoder knows (integer residuals, exact means, scale-table ids) and the encoder's y."""
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    y, z = codec.analyse(image, quality)
    coded = codec.quantise(y, z, quality)
    residuals = coded.residuals.to(torch.float64)
    return {"y": y.to(torch.float64), "means": coded.means, "residuals": residuals,
            "ids": coded.table_ids.reshape(residuals.shape)}


def magnitude_cells(latents: dict) -> np.ndarray:
    return np.minimum(np.abs(latents["residuals"].numpy()), MAX_MAGNITUDE).astype(np.int64)


def fit_centroid_offsets(latents: list[dict], table_size: int) -> np.ndarray:
    """(table_size, MAX_MAGNITUDE + 1) mean of sign(r) * (y - mean - r) per scale id and |r|."""
    sums = np.zeros((table_size, MAX_MAGNITUDE + 1))
    counts = np.zeros_like(sums)
    for item in latents:
        error = (item["y"] - item["means"] - item["residuals"]).numpy()
        cells = (item["ids"], magnitude_cells(item))
        np.add.at(sums, cells, error * np.sign(item["residuals"].numpy()))
        np.add.at(counts, cells, 1)
    offsets = np.where(counts >= MIN_COUNT, sums / np.maximum(counts, 1), 0.0)
    offsets[:, 0] = 0.0  # a zero residual's bin is symmetric about the mean
    return offsets


def centroid_residuals(item: dict, offsets: np.ndarray) -> torch.Tensor:
    shift = torch.from_numpy(offsets[item["ids"], magnitude_cells(item)]) * torch.sign(item["residuals"])
    return item["residuals"] + shift


@torch.inference_mode()
def synthesise_with_fp32_tail(codec, item: dict, quality: int, height: int, width: int) -> torch.Tensor:
    """The codec's synthesis in bf16 except its last layer, which runs in fp32."""
    g_s = codec.model.g_s
    gain = torch.exp(codec.model.log_inv_gain_y[quality].detach().double())[None, :, None, None]
    y_hat = ((item["residuals"] + item["means"]) * gain).float().contiguous(memory_format=torch.channels_last)
    with precision.autocast("bf16", codec.device):
        hidden = g_s[:-1](y_hat)
    return g_s[-1](hidden.float())[0, :, :height, :width].clamp(0, 1)


def timed_synthesis(codec, item: dict, quality: int, height: int, width: int, variant: str):
    """(reconstruction, seconds) with the synthesis in `variant` arithmetic."""
    start = time.perf_counter()
    if variant == FP32_TAIL:
        x_hat = synthesise_with_fp32_tail(codec, item, quality, height, width)
    else:
        codec.compute = variant
        x_hat = codec.synthesise(item["residuals"], item["means"], quality, height, width)
    return x_hat, time.perf_counter() - start


def centroid_rows(codec, arrays: list[np.ndarray], latents: list[dict], quality: int) -> dict[str, float]:
    """latents: quantized_latents of every image in arrays, with the encoder in bf16."""
    offsets = fit_centroid_offsets(latents[0::2], len(codec.exact.y_table_scales))
    centre, centroid = [], []
    for pixels, item in zip(arrays[1::2], latents[1::2]):
        height, width = pixels.shape[:2]
        centre.append(psnr(pixels, to_pixels(codec.synthesise(item["residuals"], item["means"], quality,
                                                              height, width))))
        centroid.append(psnr(pixels, to_pixels(codec.synthesise(centroid_residuals(item, offsets), item["means"],
                                                                quality, height, width))))
    return {"bin centres (the codec)": float(np.mean(centre)), "bin centroids": float(np.mean(centroid))}


def precision_rows(codec, arrays: list[np.ndarray], latents: list[dict],
                   quality: int) -> dict[str, tuple[float, float]]:
    """label -> (mean PSNR, mean synthesis seconds) over the odd-numbered images; latents as for
    centroid_rows (the fp32 encoder's are computed here)."""
    scores: dict[str, list[tuple[float, float]]] = {}
    for pixels, bf16_item in zip(arrays[1::2], latents[1::2]):
        height, width = pixels.shape[:2]
        codec.compute = "fp32"
        fp32_item = quantized_latents(codec, pixels, quality)
        for encoder, item in (("bf16", bf16_item), ("fp32", fp32_item)):
            for decoder in ("bf16", FP32_TAIL, "fp32"):
                x_hat, seconds = timed_synthesis(codec, item, quality, height, width, decoder)
                label = f"encoder {encoder}, synthesis {decoder}"
                scores.setdefault(label, []).append((psnr(pixels, to_pixels(x_hat)), seconds))
    return {label: tuple(np.mean(values, axis=0).tolist()) for label, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--weights", type=Path, help="hyper weight file (default: the shipped one)")
    parser.add_argument("--qualities", default="4,5,6")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = zoo.load_codec("hyper", args.weights, compute="bf16").codec
    arrays = [load_rgb_array(p) for p in list_images(args.kodak)]
    for quality in (int(q) - 1 for q in args.qualities.split(",")):
        codec.compute = "bf16"
        latents = [quantized_latents(codec, a, quality) for a in arrays]
        for label, value in centroid_rows(codec, arrays, latents, quality).items():
            print(f"q{quality + 1} | {label} | {value:.3f} dB")
        for label, (value, seconds) in precision_rows(codec, arrays, latents, quality).items():
            print(f"q{quality + 1} | {label} | {value:.3f} dB | synthesis {seconds:.3f} s")


if __name__ == "__main__":
    main()
