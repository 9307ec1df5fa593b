"""The multi-scale least-squares discriminator (pix2pixHD) that judges the generator's images."""
from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn


class ScaleDiscriminator(nn.Module):
    """PatchGAN of pix2pixHD: c64 (no norm), c128, c256, c512 (stride 1), 1-channel output."""

    def __init__(self, base: int = 64):
        super().__init__()
        widths = [base, base * 2, base * 4, base * 8]
        blocks = [nn.Sequential(nn.Conv2d(3, widths[0], 4, 2, 2), nn.LeakyReLU(0.2, inplace=True))]
        for i, (cin, cout) in enumerate(pairwise(widths)):
            stride = 1 if i == len(widths) - 2 else 2
            blocks.append(nn.Sequential(nn.Conv2d(cin, cout, 4, stride, 2), _instance_norm(cout),
                                        nn.LeakyReLU(0.2, inplace=True)))
        blocks.append(nn.Sequential(nn.Conv2d(widths[-1], 1, 4, 1, 2)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, scales: int = 3, base: int = 64):
        super().__init__()
        self.base = base
        self.scales = nn.ModuleList(ScaleDiscriminator(base) for _ in range(scales))

    def forward(self, x01: torch.Tensor) -> list[list[torch.Tensor]]:
        x = x01 * 2 - 1
        outputs = []
        for i, discriminator in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
            outputs.append(discriminator(x))
        return outputs


def discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Least squares: (D(x) - 1)^2 + D(G(w))^2, averaged over scales."""
    losses = [torch.mean((r[-1].float() - 1) ** 2) + torch.mean(f[-1].float() ** 2)
              for r, f in zip(real, fake, strict=True)]
    return sum(losses) / len(losses)


def _instance_norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)
