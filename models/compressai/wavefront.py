"""mbt2018's context model in exact fixed point, decoded in wavefronts.

The masked 5x5 convolution reads, for latent (r, c), the rows r-2 and r-1 from c-2 to c+2 and
(r, c-2), (r, c-1). With t = 3r + c every one of them has a smaller t (the largest, (r-1, c+2),
has t - 1), so all positions of one t depend only on earlier waves: a Kodak latent (32 x 48)
decodes in 3·31 + 48 = 141 waves instead of 1,536 positions one at a time. Encoder and decoder
both run the waves (the means of a wave depend on the latents decoded before it).

The context convolution and the entropy-parameter network run in numpy float64 on lic's fixed-point
grid (``models.core.fixedpoint``: weights on 2^-14, activations on 2^-8), where every sum is exact
whatever the order: the table and mean of each latent are the same on every machine.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core import fixedpoint
from .network import CONTEXT_KERNEL

REACH = CONTEXT_KERNEL // 2
# (row, column) offsets of the causal taps, in the order of the flattened weights
TAPS = tuple((dr, dc) for dr in range(-REACH, 1) for dc in range(-REACH, REACH + 1) if dr < 0 or dc < 0)
WAVE = (3, 1)  # t = 3·row + column


def wavefronts(height: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, columns) of the positions of each wave, in decoding order; within a wave, by row."""
    rows, cols = np.divmod(np.arange(height * width), width)
    t = WAVE[0] * rows + WAVE[1] * cols
    order = np.lexsort((rows, t))
    bounds = np.flatnonzero(np.diff(t[order])) + 1
    return [(rows[part], cols[part]) for part in np.split(order, bounds)]


class FixedPointLayer:
    """A 1x1 (or gathered) linear layer on the fixed-point grid, in numpy."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, negative_slope: float | None):
        integer = fixedpoint.integer_weight(weight.reshape(weight.shape[0], -1))
        bias = fixedpoint.integer_bias(bias)
        fixedpoint.check_exactness(integer, bias)
        self.weight = integer.numpy() * 2.0**-fixedpoint.WEIGHT_FRAC_BITS
        self.bias = bias.numpy()[:, None] * 2.0**-fixedpoint.PRODUCT_FRAC_BITS
        self.negative_slope = negative_slope  # None: no activation

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: (inputs, positions) on the activation grid -> (outputs, positions) on it."""
        y = self.weight @ x + self.bias
        if self.negative_slope is not None:
            y = np.where(y < 0, y * self.negative_slope, y)
        return fixedpoint.snap_array(y)


class FixedContextModel:
    """The masked convolution and the entropy-parameter network of one quality, exact."""

    def __init__(self, context: nn.Conv2d, parameters: nn.Sequential):
        taps = [(dr + REACH, dc + REACH) for dr, dc in TAPS]
        weight = context.weight.detach().double()
        gathered = torch.stack([weight[:, :, kr, kc] for kr, kc in taps], dim=2)  # (2M, M, taps)
        self.context = FixedPointLayer(gathered, context.bias.detach(), None)
        layers = [module for module in parameters if isinstance(module, nn.Conv2d)]
        slopes = [float(getattr(module, "negative_slope", 0.0)) for module in parameters
                  if isinstance(module, (nn.ReLU, nn.LeakyReLU))]
        self.parameters = [FixedPointLayer(layer.weight.detach(), layer.bias.detach(),
                                           slopes[i] if i < len(slopes) else None) for i, layer in enumerate(layers)]

    def distribution(self, hyper: np.ndarray, padded: np.ndarray, rows: np.ndarray, cols: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """(scales, means), each (M, positions), of the latents at (rows, cols): hyper is the
        hyper-synthesis output (2M, h, w), padded the decoded latents (M, h + 4, w + 4)."""
        patches = np.stack([padded[:, rows + REACH + dr, cols + REACH + dc] for dr, dc in TAPS], axis=1)
        np.clip(patches, -fixedpoint.ACT_LIMIT, fixedpoint.ACT_LIMIT, out=patches)  # the bound check_exactness assumes
        x = np.concatenate([hyper[:, rows, cols], self.context(patches.reshape(-1, len(rows)))], axis=0)
        for layer in self.parameters:
            x = layer(x)
        scales, means = np.split(x, 2, axis=0)
        return scales, means
