"""CompressAI's hyperprior transforms, one network per quality, under lic's module names: quality q's
analysis is ``g_a.q`` (CompressAI's ``g_a``), and so on, so the encoder's parameters share the
prefixes ``g_a.`` and ``h_a.``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.entropy import FactorizedDensity
from ..core.layers import GDN, conv, deconv
from .blocks import cheng_analysis, cheng_hyper_analysis, cheng_hyper_synthesis, cheng_synthesis
from .layout import CONTEXT_KERNEL

DENSITY_FILTERS = (3, 3, 3, 3)  # CompressAI's EntropyBottleneck default


@dataclass(frozen=True)
class ImportedConfig:
    widths: tuple[tuple[int, int], ...] = ((128, 192),)  # (N, M) of each quality's network
    mean: bool = False  # mbt2018-mean: h_s predicts means too, h_a reads y (not |y|), LeakyReLU
    context: bool = False  # mbt2018: a masked 5x5 context model and the entropy-parameter network
    residual: bool = False  # cheng2020-anchor: residual blocks of 3x3 convolutions (M = N), with context
    lambdas: tuple[float, ...] = ()  # the rate-distortion trade-off of each network, where known (for SGA)


def analysis(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))


def synthesis(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True), deconv(n, n),
                         GDN(n, inverse=True), deconv(n, 3))


def hyper_analysis(n: int, m: int, mean: bool) -> nn.Sequential:
    act = nn.LeakyReLU if mean else nn.ReLU
    return nn.Sequential(conv(m, n, 3, 1), act(), conv(n, n), act(), conv(n, n))


def hyper_synthesis(n: int, m: int, mean: bool) -> nn.Sequential:
    if mean:
        return nn.Sequential(deconv(n, m), nn.LeakyReLU(), deconv(m, m * 3 // 2), nn.LeakyReLU(),
                             conv(m * 3 // 2, m * 2, 3, 1))
    return nn.Sequential(deconv(n, n), nn.ReLU(), deconv(n, n), nn.ReLU(), conv(n, m, 3, 1), nn.ReLU())



def causal_mask(channels_out: int, channels_in: int) -> torch.Tensor:
    """The "A" mask of a 5x5 masked convolution: the rows above, and the positions to the left."""
    mask = torch.ones(channels_out, channels_in, CONTEXT_KERNEL, CONTEXT_KERNEL)
    mask[:, :, CONTEXT_KERNEL // 2, CONTEXT_KERNEL // 2:] = 0
    mask[:, :, CONTEXT_KERNEL // 2 + 1:] = 0
    return mask


def masked_context(m: int) -> nn.Conv2d:
    """The context prediction of mbt2018; its weights are stored with the mask applied."""
    return nn.Conv2d(m, 2 * m, CONTEXT_KERNEL, padding=CONTEXT_KERNEL // 2)


def entropy_parameters(m: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(m * 12 // 3, m * 10 // 3, 1), nn.LeakyReLU(), nn.Conv2d(m * 10 // 3, m * 8 // 3, 1),
                         nn.LeakyReLU(), nn.Conv2d(m * 8 // 3, m * 6 // 3, 1))


class ImportedHyperprior(nn.Module):
    """The networks of an imported model, one per quality. Not trained by lic (its drivers need
    its own families' training passes); `lic import compressai` fills it from checkpoints."""

    def __init__(self, config: ImportedConfig):
        super().__init__()
        self.config = config
        if config.residual:
            self.g_a = nn.ModuleList([cheng_analysis(n) for n, _ in config.widths])
            self.h_a = nn.ModuleList([cheng_hyper_analysis(n) for n, _ in config.widths])
            self.h_s = nn.ModuleList([cheng_hyper_synthesis(n) for n, _ in config.widths])
            self.g_s = nn.ModuleList([cheng_synthesis(n) for n, _ in config.widths])
        else:
            self.g_a = nn.ModuleList([analysis(n, m) for n, m in config.widths])
            self.h_a = nn.ModuleList([hyper_analysis(n, m, config.mean) for n, m in config.widths])
            self.h_s = nn.ModuleList([hyper_synthesis(n, m, config.mean) for n, m in config.widths])
            self.g_s = nn.ModuleList([synthesis(n, m) for n, m in config.widths])
        self.density = nn.ModuleList([FactorizedDensity(n, DENSITY_FILTERS) for n, _ in config.widths])
        # The entropy bottleneck's medians, where each channel's hyperlatents are rounded around.
        self.medians = nn.ParameterList([nn.Parameter(torch.zeros(n), requires_grad=False) for n, _ in config.widths])
        if config.context:
            self.context_prediction = nn.ModuleList([masked_context(m) for _, m in config.widths])
            self.entropy_parameters = nn.ModuleList([entropy_parameters(m) for _, m in config.widths])

    @property
    def num_qualities(self) -> int:
        return len(self.config.widths)


def build(config: dict, mean: bool, context: bool = False, residual: bool = False) -> ImportedHyperprior:
    widths = tuple(tuple(int(v) for v in pair) for pair in config.get("widths", ImportedConfig.widths))
    lambdas = tuple(float(v) for v in config.get("lambdas") or ())
    return ImportedHyperprior(ImportedConfig(widths, mean, context, residual, lambdas))
