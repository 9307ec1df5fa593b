"""The conditional source entropy regularizer (Zhang et al., "An Information-Theoretic Regularizer
for Lossy Neural Image Compression"): an auxiliary model q(x | x̂) of the 8-bit source given the
reconstruction, used only in training.

Workflow, once per training step::

    penalty = source.bits_per_pixel(x, x_hat)       # q frozen, gradient into x_hat only
    loss = rate + lambda * distortion - alpha * penalty.mean()   # i.e. + alpha * E[log2 q(x | x_hat)]
    ... codec step ...
    fit = source.bits_per_pixel(x, x_hat.detach())  # q trained by maximum likelihood
    fit.mean().backward(); source_optimizer.step()

Maximising H(X | X̂) is, for a fixed source, the other half of minimising the latent rate
(the paper's Theorem 2); the regularizer adds that pressure explicitly. The paper's finding is
that q must mirror the latent entropy model: a factorized Gaussian whose mean and scale come
from a small network on x̂ for hyperprior-like models ("factorized"), plus a causal 5×5 masked
convolution over x itself for models with a spatial context model ("context"). Neither is in
a weight file: there is no inference cost.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("factorized", "context")
LEVELS = 255  # 8-bit source on [0, 1]
MIN_SCALE = 0.1 / LEVELS
MIN_LIKELIHOOD = 1e-9
OPEN_END = 40.0  # standard deviations: beyond it the normal tail is below float precision


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only positions before the centre in raster order (mask type A)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones_like(self.weight)
        centre = kernel_size // 2
        mask[:, :, centre, centre:] = 0
        mask[:, :, centre + 1 :, :] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ConditionalSourceModel(nn.Module):
    """q(x | x̂): a discretized Gaussian per sub-pixel over the 256 levels of an 8-bit image.

    The mean is x̂ plus a learned correction, the scale comes from the same network; kind
    "context" adds features of the already-seen pixels of x (a masked 5×5 convolution)."""

    def __init__(self, kind: str = "factorized", width: int = 16):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"source model kind must be one of {', '.join(KINDS)}")
        self.kind = kind
        self.reconstruction = nn.Sequential(
            nn.Conv2d(3, width, 5, padding=2), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 5, padding=2), nn.LeakyReLU(0.2),
        )
        self.context = MaskedConv2d(3, width, 5) if kind == "context" else None
        self.head = nn.Conv2d(width, 6, 1)  # 1×1: a wider head would read the context of later pixels
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # A start near the truth: mean x̂, scale about 4 grey levels.
        self.log_scale_offset = math.log(4 / LEVELS)

    def mean_and_scale(self, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.reconstruction(x_hat - 0.5)
        if self.context is not None:
            features = features + self.context(x - 0.5)
        correction, log_scale = self.head(F.leaky_relu(features, 0.2)).float().chunk(2, dim=1)
        scale = torch.exp(log_scale + self.log_scale_offset).clamp(min=MIN_SCALE)
        return x_hat + correction, scale

    def bits_per_pixel(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """(B,) −log2 q(x | x̂) per pixel (all three channels), x on the 8-bit grid in [0, 1]. The
        network runs in the caller's autocast (bf16 halves its cost on CPUs that have it); the
        likelihoods are always float32."""
        x, x_hat = x.float(), x_hat.float()
        mean, scale = self.mean_and_scale(x, x_hat)
        with torch.autocast(device_type=x.device.type, enabled=False):
            likelihood = discretized_gaussian_likelihood(x, mean, scale)
            bits = -torch.log2(likelihood).sum(dim=(1, 2, 3))
        return bits / (x.shape[2] * x.shape[3])


def discretized_gaussian_likelihood(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(level of x) under N(mean, scale²) binned at the 256 levels, the end bins open."""
    half_bin = 0.5 / LEVELS
    # Standardised bin edges; the open ends are a finite "infinity" (an inf here would make NaN gradients).
    upper = torch.where(x >= 1 - half_bin, OPEN_END, (x + half_bin - mean) / scale)
    lower = torch.where(x <= half_bin, -OPEN_END, (x - half_bin - mean) / scale)
    # Above the mean, the difference of upper tails is more accurate than that of CDFs near 1.
    flip = torch.where(upper + lower > 0, -1.0, 1.0)
    probability = (standard_normal_cdf(flip * upper) - standard_normal_cdf(flip * lower)).abs()
    return probability.clamp(min=MIN_LIKELIHOOD)


def standard_normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2))
