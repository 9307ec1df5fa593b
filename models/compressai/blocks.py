"""The residual blocks of CompressAI's cheng2020-anchor, with its attribute names (so that its
checkpoints' keys fit): 3x3 convolutions, GDN inside the strided blocks, sub-pixel upsampling."""
from __future__ import annotations

import torch
from torch import nn

from ..core.layers import GDN


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def subpel_conv3x3(cin: int, cout: int, factor: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout * factor**2, 3, padding=1), nn.PixelShuffle(factor))


class ResidualBlockWithStride(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 2):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.leaky_relu = nn.LeakyReLU()
        self.conv2 = conv3x3(cout, cout)
        self.gdn = GDN(cout)
        self.skip = nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gdn(self.conv2(self.leaky_relu(self.conv1(x))))
        return out + (self.skip(x) if self.skip is not None else x)


class ResidualBlockUpsample(nn.Module):
    def __init__(self, cin: int, cout: int, factor: int = 2):
        super().__init__()
        self.subpel_conv = subpel_conv3x3(cin, cout, factor)
        self.leaky_relu = nn.LeakyReLU()
        self.conv = conv3x3(cout, cout)
        self.igdn = GDN(cout, inverse=True)
        self.upsample = subpel_conv3x3(cin, cout, factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.igdn(self.conv(self.leaky_relu(self.subpel_conv(x)))) + self.upsample(x)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = conv3x3(cin, cout)
        self.leaky_relu = nn.LeakyReLU()
        self.conv2 = conv3x3(cout, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.leaky_relu(self.conv2(self.leaky_relu(self.conv1(x))))
        return out + (self.skip(x) if self.skip is not None else x)


def cheng_analysis(n: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlockWithStride(3, n), ResidualBlock(n, n), ResidualBlockWithStride(n, n),
                         ResidualBlock(n, n), ResidualBlockWithStride(n, n), ResidualBlock(n, n), conv3x3(n, n, 2))


def cheng_synthesis(n: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(n, n), ResidualBlockUpsample(n, n), ResidualBlock(n, n),
                         ResidualBlockUpsample(n, n), ResidualBlock(n, n), ResidualBlockUpsample(n, n),
                         ResidualBlock(n, n), subpel_conv3x3(n, 3, 2))


def cheng_hyper_analysis(n: int) -> nn.Sequential:
    return nn.Sequential(conv3x3(n, n), nn.LeakyReLU(), conv3x3(n, n), nn.LeakyReLU(), conv3x3(n, n, 2),
                         nn.LeakyReLU(), conv3x3(n, n), nn.LeakyReLU(), conv3x3(n, n, 2))


def cheng_hyper_synthesis(n: int) -> nn.Sequential:
    return nn.Sequential(conv3x3(n, n), nn.LeakyReLU(), subpel_conv3x3(n, n, 2), nn.LeakyReLU(),
                         conv3x3(n, n * 3 // 2), nn.LeakyReLU(), subpel_conv3x3(n * 3 // 2, n * 3 // 2, 2),
                         nn.LeakyReLU(), conv3x3(n * 3 // 2, n * 2))
