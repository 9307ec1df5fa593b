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
