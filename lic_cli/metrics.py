"""Image quality metrics on 8-bit pixels."""
from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim

MS_SSIM_MIN_SIDE = 161  # five scales of an 11-tap window


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM over RGB with data range 255; None where the image is too small for five scales."""
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    ta = torch.from_numpy(a[:, :, :3].astype(np.float32)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(b[:, :, :3].astype(np.float32)).permute(2, 0, 1)[None]
    return float(_ms_ssim(ta, tb, data_range=255, size_average=True))


HAARPSI_C = 30.0
HAARPSI_ALPHA = 4.2
HAARPSI_SCALES = 3


def haarpsi(a: np.ndarray, b: np.ndarray) -> float:
    """HaarPSI (Reisenhofer et al. 2018), colour version, on 8-bit RGB: 1 = identical, lower = worse.

    Our own implementation from the paper (no downloaded weights): YIQ, 2x2 mean + 2x subsampling,
    Haar filters at 3 scales; similarity of the two finest scales per orientation, weighted by the
    coarsest, chroma similarity of 2x2-averaged I/Q, logistic pooling with C=30, alpha=4.2.
    """
    both = _haarpsi_subsample(_yiq(torch.from_numpy(np.stack([a[:, :, :3], b[:, :, :3]]).astype(np.float32))))
    coeffs = _haar_decompose(both[:, 0:1])
    coeffs_ref, coeffs_dist = coeffs[0:1], coeffs[1:2]
    n = HAARPSI_SCALES
    similarities, weights = [], []
    for orientation in range(2):
        first = orientation * n
        sims = [_similarity(coeffs_ref[:, first + s].abs(), coeffs_dist[:, first + s].abs()) for s in range(2)]
        similarities.append((sims[0] + sims[1]) / 2)
        weights.append(torch.maximum(coeffs_ref[:, first + 2].abs(), coeffs_dist[:, first + 2].abs()))
    chroma = []
    box = torch.full((1, 1, 2, 2), 0.25, dtype=both.dtype)
    for channel in (1, 2):
        means = _same_conv(both[:, channel : channel + 1], box).abs()
        chroma.append(_similarity(means[0:1], means[1:2])[:, 0])
    similarities.append((chroma[0] + chroma[1]) / 2)
    weights.append((weights[0] + weights[1]) / 2)
    sim = torch.stack(similarities)
    weight = torch.stack(weights).double()
    pooled = (torch.sigmoid(HAARPSI_ALPHA * sim).double() * weight).sum() / weight.sum().clamp(min=1e-12)
    return float((torch.log(pooled / (1 - pooled)) / HAARPSI_ALPHA) ** 2)


def _yiq(rgb: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) RGB -> (N, 3, H, W) YIQ."""
    matrix = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=rgb.dtype)
    return (rgb @ matrix.T).permute(0, 3, 1, 2)


def _haarpsi_subsample(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.full((1, 1, 2, 2), 0.25, dtype=x.dtype)
    channels = [_same_conv(x[:, c : c + 1], kernel) for c in range(x.shape[1])]
    return torch.cat(channels, dim=1)[:, :, ::2, ::2]


def _haar_decompose(x: torch.Tensor) -> torch.Tensor:
    """Horizontal then vertical Haar responses at scales 1..N: (1, 2N, H, W)."""
    responses = []
    for transpose in (False, True):
        for scale in range(1, HAARPSI_SCALES + 1):
            size = 2**scale
            kernel = torch.full((size, size), 2.0**-scale, dtype=x.dtype)
            kernel[: size // 2] *= -1
            kernel = kernel.T if transpose else kernel
            responses.append(_same_conv(x, kernel[None, None]))
    return torch.cat(responses, dim=1)


def _same_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Full convolution cropped to the input size ('same', zero padding), like scipy's convolve2d."""
    kh, kw = kernel.shape[2:]
    padded = torch.nn.functional.pad(x, (kw - 1, kw - 1, kh - 1, kh - 1))
    full = torch.nn.functional.conv2d(padded, kernel.flip(2, 3))
    top, left = (kh - 1) // 2, (kw - 1) // 2
    return full[:, :, top : top + x.shape[2], left : left + x.shape[3]]


def _similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (2 * a * b + HAARPSI_C) / (a * a + b * b + HAARPSI_C)
