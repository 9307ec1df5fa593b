"""Differentiable image similarity for training losses (the reported metrics are lic_cli.metrics)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_batch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Differentiable MS-SSIM (B,) of RGB images in [0, 1], as pytorch-msssim computes it (Gaussian
    window, sigma 1.5, five scales, the standard weights), except that each scale's term is
    floored at 1e-4: pytorch-msssim's relu(cs) ** w has an infinite gradient at 0, which turns a
    training step on an unlucky crop into NaN. Smaller images than five scales of an 11-tap window
    allow (validation crops) use a narrower window."""
    side = min(a.shape[-2:])
    size = 11
    while size > 3 and (size - 1) * 16 >= side:
        size -= 2
    coords = torch.arange(size, dtype=a.dtype, device=a.device) - size // 2
    window = torch.exp(-(coords**2) / (2 * 1.5**2))
    window = (window / window.sum()).view(1, 1, 1, size).repeat(a.shape[1], 1, 1, 1)
    terms = []
    for scale in range(len(MS_SSIM_WEIGHTS)):
        similarity, contrast = _ssim_terms(a, b, window)
        last = scale == len(MS_SSIM_WEIGHTS) - 1
        terms.append((similarity if last else contrast).clamp(min=1e-4))
        if not last:
            padding = [s % 2 for s in a.shape[2:]]
            a, b = F.avg_pool2d(a, 2, padding=padding), F.avg_pool2d(b, 2, padding=padding)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=a.dtype, device=a.device).view(-1, 1, 1)
    return torch.prod(torch.stack(terms) ** weights, dim=0).mean(dim=1)


def _ssim_terms(a: torch.Tensor, b: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(SSIM, contrast-structure) per image and channel (B, C), data range 1."""
    def blur(x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if x.shape[3] >= window.shape[-1]:
            x = F.conv2d(x, window, groups=channels)
        if x.shape[2] >= window.shape[-1]:
            x = F.conv2d(x, window.transpose(2, 3), groups=channels)
        return x

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    covariance = blur(a * b) - mu_a * mu_b
    contrast = (2 * covariance + c2) / (var_a + var_b + c2)
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return (luminance * contrast).flatten(2).mean(-1), contrast.flatten(2).mean(-1)
