"""CompressAI's ELIC (`elic2022-official`, He et al. 2022) under lic's module names, one network per
quality: the attention and residual-bottleneck transforms, and the space-channel context model.

The latents are split into uneven channel groups (CompressAI's default 16, 16, 32, 64, M - 128),
decoded one after the other; inside a group the anchors (row + column even) come first, then the
other half. Group k's Gaussian parameters come from its "param aggregation" (1x1 convolutions with
ReLUs) over, in this order,

    the spatial context: a 5x5 checkerboard-masked convolution of the group's decoded anchors
        (zeros for the anchors themselves, without the convolution's bias),
    the channel context (k > 0): three 5x5 convolutions of every earlier group's latents,
    the hyper-synthesis output (2N channels),

and the aggregation's output is the scales, then the means, of the group's latents. The parameter
names are CompressAI's below ``latent_codec`` (``channel_context.y1.0.weight``, ...), so that its
checkpoints' keys map onto them.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from ..core.entropy import FactorizedDensity
from ..core.layers import conv, deconv
from .layout import CONTEXT_KERNEL, elic_groups
from .network import DENSITY_FILTERS, ImportedConfig


@dataclass(frozen=True)
class ElicConfig(ImportedConfig):
    groups: tuple[tuple[int, ...], ...] = ((16, 16, 32, 64, 64),)  # each quality's channel groups
    channel_context_widths: tuple[tuple[int, int], ...] = ((224, 128),)  # hidden widths of g_ch, per quality



def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class ResidualBottleneckBlock(nn.Module):
    """1x1 down to half the width, 3x3, 1x1 back, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        middle = channels // 2
        self.conv1 = conv1x1(channels, middle)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(middle, middle)
        self.relu2 = nn.ReLU()
        self.conv3 = conv1x1(middle, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv3(self.relu2(self.conv2(self.relu1(self.conv1(x)))))


class ResidualUnit(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.conv = nn.Sequential(conv1x1(channels, half), nn.ReLU(), conv3x3(half, half), nn.ReLU(),
                                  conv1x1(half, channels))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.conv(x))


class AttentionBlock(nn.Module):
    """Cheng et al.'s simplified attention: x + trunk(x) · sigmoid(mask branch(x))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_a = nn.Sequential(*(ResidualUnit(channels) for _ in range(3)))
        self.conv_b = nn.Sequential(*(ResidualUnit(channels) for _ in range(3)), conv1x1(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_a(x) * torch.sigmoid(self.conv_b(x))


def blocks(channels: int) -> list[nn.Module]:
    return [ResidualBottleneckBlock(channels) for _ in range(3)]


def analysis(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(conv(3, n), *blocks(n), conv(n, n), *blocks(n), AttentionBlock(n), conv(n, n), *blocks(n),
                         conv(n, m), AttentionBlock(m))


def synthesis(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(AttentionBlock(m), deconv(m, n), *blocks(n), deconv(n, n), AttentionBlock(n), *blocks(n),
                         deconv(n, n), *blocks(n), deconv(n, 3))


def hyper_analysis(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))


def hyper_synthesis(n: int) -> nn.Sequential:
    return nn.Sequential(deconv(n, n), nn.ReLU(), deconv(n, n * 3 // 2), nn.ReLU(), deconv(n * 3 // 2, n * 2, 3, 1))


def channel_context(inputs: int, widths: tuple[int, int], outputs: int) -> nn.Sequential:
    """g_ch: three 5x5 convolutions of the earlier groups' latents."""
    first, second = widths
    return nn.Sequential(conv(inputs, first, CONTEXT_KERNEL, 1), nn.ReLU(), conv(first, second, CONTEXT_KERNEL, 1),
                         nn.ReLU(), conv(second, outputs, CONTEXT_KERNEL, 1))


def aggregation_widths(inputs: int, outputs: int, floor: int, layers: int = 3) -> list[int]:
    """The channel ramp of CompressAI's param aggregation: linear from inputs to outputs, rounded
    down, the hidden widths at least `floor` (2N)."""
    widths = torch.linspace(inputs, outputs, layers + 1).floor().int().tolist()
    return [widths[0], *(max(width, floor) for width in widths[1:-1]), widths[-1]]


def param_aggregation(inputs: int, outputs: int, floor: int) -> nn.Sequential:
    widths = aggregation_widths(inputs, outputs, floor)
    modules: list[nn.Module] = []
    for cin, cout in pairwise(widths):
        modules += [conv1x1(cin, cout), nn.ReLU()]
    return nn.Sequential(*modules[:-1])


def checkerboard_mask(channels_out: int, channels_in: int) -> torch.Tensor:
    """The taps a non-anchor's spatial context sees: odd row + column offsets, i.e. anchors."""
    offsets = torch.arange(CONTEXT_KERNEL)
    odd = ((offsets[:, None] + offsets[None, :]) % 2 == 1).float()
    return odd.expand(channels_out, channels_in, CONTEXT_KERNEL, CONTEXT_KERNEL).clone()


def group_context(n: int, groups: tuple[int, ...], widths: tuple[int, int]) -> nn.ModuleDict:
    """One quality's context model: spatial context and param aggregation of every group, the
    channel context of every group after the first."""
    modules = nn.ModuleDict()
    modules["spatial_context"] = nn.ModuleDict(
        {f"y{k}": nn.Conv2d(size, 2 * size, CONTEXT_KERNEL, padding=CONTEXT_KERNEL // 2)
         for k, size in enumerate(groups)})
    modules["channel_context"] = nn.ModuleDict(
        {f"y{k}": channel_context(sum(groups[:k]), widths, 2 * groups[k]) for k in range(1, len(groups))})
    modules["param_aggregation"] = nn.ModuleDict(
        {f"y{k}": param_aggregation(2 * size + (k > 0) * 2 * size + 2 * n, 2 * size, 2 * n)
         for k, size in enumerate(groups)})
    return modules


class ImportedElic(nn.Module):
    """ELIC's networks, one per quality (``g_a.q`` is CompressAI's ``g_a``, ``context.q`` its
    ``latent_codec.y``). Filled by `lic import compressai`; not trained by lic."""

    def __init__(self, config: ElicConfig):
        super().__init__()
        self.config = config
        widths = config.widths
        self.g_a = nn.ModuleList([analysis(n, m) for n, m in widths])
        self.h_a = nn.ModuleList([hyper_analysis(n, m) for n, m in widths])
        self.h_s = nn.ModuleList([hyper_synthesis(n) for n, _ in widths])
        self.g_s = nn.ModuleList([synthesis(n, m) for n, m in widths])
        self.density = nn.ModuleList([FactorizedDensity(n, DENSITY_FILTERS) for n, _ in widths])
        self.medians = nn.ParameterList([nn.Parameter(torch.zeros(n), requires_grad=False) for n, _ in widths])
        self.context = nn.ModuleList([group_context(n, groups, hidden) for (n, _), groups, hidden
                                      in zip(widths, config.groups, config.channel_context_widths, strict=True)])

    @property
    def num_qualities(self) -> int:
        return len(self.config.widths)


def build(config: dict) -> ImportedElic:
    widths = tuple(tuple(int(v) for v in pair) for pair in config.get("widths", ((192, 320),)))
    groups = elic_groups(config, widths)
    hidden = tuple(tuple(int(v) for v in pair) for pair in config.get("channel_context_widths") or
                   [(224, 128)] * len(widths))
    lambdas = tuple(float(v) for v in config.get("lambdas") or ())
    return ImportedElic(ElicConfig(widths, mean=True, context=True, residual=False, lambdas=lambdas, groups=groups,
                                   channel_context_widths=hidden))
