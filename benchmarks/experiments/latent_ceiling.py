"""Showed: at q6 most of hyper's distortion comes from the transforms, not from rounding
(docs/notes/2026-11-high-rate-gap.md).

How much of the distortion at each quality comes from quantization, and how much from the
transforms themselves: Kodak PSNR of `hyper` with its latents rounded (what the codec does) and
not rounded at all (the transforms' ceiling at that quality's gains), in fp32. Also how many
rounded latent values are nonzero in each block of 64 channels (a grown latent's new channels are
the last block).

A linear reference for the latent width: a PCA of the 16x16x3 pixel blocks of the same images
(the latent has M values per such block), keeping the first M components. It is an oracle fitted
to the test images themselves, so only its trend with M means something.

    python benchmarks/experiments/latent_ceiling.py --kodak ../shared/data/kodak [--weights FILE] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lic_cli.imageio import list_images, load_rgb_array
from lic_cli.metrics import psnr
from models import zoo
from models.hyper.network import DOWNSAMPLING

BLOCK = 16  # total stride of the analysis transform: one latent vector per 16x16 block
CHANNEL_GROUP = 64  # channels per row of the nonzero count


def to_pixels(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Values in [0, 1] as the 8-bit pixels a decoder would write (PSNR is measured on those)."""
    return np.round(np.clip(np.asarray(x, dtype=np.float64), 0, 1) * 255).astype(np.uint8)


@torch.inference_mode()
def transform_psnr(model, pixels: np.ndarray) -> list[tuple[float, float, list[float]]]:
    """Per quality: (PSNR with rounded latents, PSNR with unrounded latents, share of nonzero
    rounded values per block of CHANNEL_GROUP channels) of one (H, W, 3) uint8 image whose sides
    are multiples of 64."""
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    return [_quality_psnr(model, image, pixels, quality) for quality in range(model.num_qualities)]


def _quality_psnr(model, image: torch.Tensor, pixels: np.ndarray, quality: int) -> tuple[float, float, list[float]]:
    q = torch.tensor([quality])
    y = model.g_a(image) * model.gain(model.log_gain_y, q)
    z_hat = torch.round(model.h_a(y) * model.gain(model.log_gain_z, q))
    means, _ = model.h_s(z_hat * model.gain(model.log_inv_gain_z, q)).chunk(2, dim=1)
    residuals = torch.round(y - means)
    results = []
    for latent in (residuals + means, y):
        x_hat = model.g_s(latent * model.gain(model.log_inv_gain_y, q))[0].permute(1, 2, 0)
        results.append(psnr(pixels, to_pixels(x_hat)))
    nonzero = [float((group != 0).float().mean()) for group in residuals.split(CHANNEL_GROUP, dim=1)]
    return results[0], results[1], nonzero


def blocks(array: np.ndarray) -> np.ndarray:
    """The image's whole 16x16 blocks as rows of 768 values in [0, 1]."""
    h, w = array.shape[0] // BLOCK * BLOCK, array.shape[1] // BLOCK * BLOCK
    a = array[:h, :w].astype(np.float64) / 255
    return a.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK, 3).transpose(0, 2, 1, 3, 4).reshape(-1, BLOCK * BLOCK * 3)


def pca_psnr(arrays: list[np.ndarray], widths: list[int]) -> dict[int, float]:
    """Mean PSNR over the images when each block keeps its first `width` principal components."""
    data = [blocks(a) for a in arrays]
    everything = np.concatenate(data)
    mean = everything.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((everything - mean).T))
    vectors = vectors[:, ::-1]
    result = {}
    for width in widths:
        basis = vectors[:, :width]
        scores = [psnr(to_pixels(d), to_pixels((d - mean) @ basis @ basis.T + mean)) for d in data]
        result[width] = float(np.mean(scores))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--weights", type=Path, help="hyper weight file (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pca", default="192,256,320", help="latent widths for the PCA reference")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = zoo.load_codec("hyper", args.weights, compute="fp32")
    model = loaded.codec.model
    arrays = [load_rgb_array(p) for p in list_images(args.kodak)]
    # Cropped, not padded, to whole 64x64 cells (Kodak needs neither): padding would score pixels
    # that are not in the image.
    cell = DOWNSAMPLING
    crops = [np.ascontiguousarray(a[: a.shape[0] // cell * cell, : a.shape[1] // cell * cell]) for a in arrays]
    per_image = [transform_psnr(model, crop) for crop in crops]
    rows = {}
    for quality in range(model.num_qualities):
        rounded, ceiling = (float(np.mean([image[quality][i] for image in per_image])) for i in (0, 1))
        nonzero = np.mean([image[quality][2] for image in per_image], axis=0).tolist()
        rows[quality + 1] = {"rounded_psnr": rounded, "unrounded_psnr": ceiling, "nonzero_share": nonzero}
        groups = ", ".join(f"{100 * share:.1f}%" for share in nonzero)
        print(f"q{quality + 1}: rounded latents {rounded:.2f} dB, unrounded {ceiling:.2f} dB; "
              f"nonzero values per {CHANNEL_GROUP} channels: {groups}")
    pca = pca_psnr(arrays, [int(v) for v in args.pca.split(",")])
    for width, value in pca.items():
        print(f"PCA of 16x16x3 blocks, {width} components: {value:.2f} dB")
    result = {"weights": loaded.path.name, "weights_hash": loaded.weights_id.hex(),
              "latent_channels": model.config.latent_channels, "qualities": rows, "pca_psnr": pca}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
