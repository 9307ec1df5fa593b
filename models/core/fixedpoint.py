"""Bit-exact evaluation of small conv stacks, for the parts of a model that select CDFs.

Weights are rounded to a 2^-14 grid, biases to the 2^-22 product grid (exact operations on the
stored fp16 values, so every machine derives the same integers), and every
activation is rounded to a 2^-8 grid and clamped to +-2^12. Convolutions run in float64, where
all products and partial sums of such numbers are exact integers times 2^-22 below 2^53, so the
result does not depend on summation order, threads, BLAS or CPU: encoder and decoder agree bit
for bit. ``freeze`` proves that bound for each layer instead of assuming it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.fixed import (  # noqa: F401 (the grid and its torch-free helpers, one implementation)
    ACT_FRAC_BITS,
    ACT_LIMIT,
    EXACT_LIMIT,
    EXP2_TABLE,
    LOGIT_RANGE,
    LOGIT_STEPS,
    PRODUCT_FRAC_BITS,
    WEIGHT_FRAC_BITS,
    TableIndex,
    counts_from_weights,
    geometric_interpolation,
    integer_softmax,
    snap_array,
)


def snap_activation(x: torch.Tensor) -> torch.Tensor:
    scale = 2.0**ACT_FRAC_BITS
    return torch.round(torch.clamp(x, -ACT_LIMIT, ACT_LIMIT) * scale) / scale


def snap_activation_(x: torch.Tensor) -> torch.Tensor:
    """snap_activation in place (x: a float64 tensor this code owns)."""
    return x.clamp_(-ACT_LIMIT, ACT_LIMIT).mul_(2.0**ACT_FRAC_BITS).round_().mul_(2.0**-ACT_FRAC_BITS)


@dataclass
class FixedLayer:
    weight: torch.Tensor  # int32, same layout as the float layer's weight
    bias: torch.Tensor  # int64 on the product grid
    transposed: bool
    stride: int
    padding: int
    output_padding: int
    relu: bool
    negative_slope: float = 0.0  # with relu: a leaky ReLU (the product is rounded to the grid like any activation)
    shuffle: int = 1  # a sub-pixel convolution: PixelShuffle(shuffle) after the convolution

    def __post_init__(self):
        # The exact float64 values of the integers, made once: every call would otherwise convert them.
        self.float_weight = self.weight.to(torch.float64) * 2.0**-WEIGHT_FRAC_BITS
        self.float_bias = self.bias.to(torch.float64) * 2.0**-PRODUCT_FRAC_BITS

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.float_weight, self.float_bias
        if self.transposed:
            y = F.conv_transpose2d(x, weight, bias, self.stride, self.padding, self.output_padding)
        else:
            y = F.conv2d(x, weight, bias, self.stride, self.padding)
        if self.shuffle > 1:
            y = F.pixel_shuffle(y, self.shuffle)
        return snap_activation_(self.activate(y))

    def activate(self, y: torch.Tensor) -> torch.Tensor:
        """The layer's ReLU (leaky where negative_slope is set) on float64 pre-activations."""
        if self.relu and self.negative_slope:
            return torch.where(y < 0, y * self.negative_slope, y)
        return y.relu_() if self.relu else y


def freeze(stack: nn.Sequential) -> list[FixedLayer]:
    """Quantise a Sequential of Conv2d / ConvTranspose2d / ReLU / LeakyReLU / PixelShuffle (nested
    Sequentials flattened) to fixed-point layers."""
    layers: list[FixedLayer] = []
    for module in _flattened(stack):
        if isinstance(module, nn.PixelShuffle):
            layers[-1].shuffle = module.upscale_factor
            continue
        if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
            layers[-1].relu = True
            layers[-1].negative_slope = float(getattr(module, "negative_slope", 0.0))
            continue
        if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            raise TypeError(f"cannot freeze {type(module).__name__} to fixed point")
        weight, bias = integer_weight(module.weight), integer_bias(module.bias)
        transposed = isinstance(module, nn.ConvTranspose2d)
        check_exactness(weight, bias, output_axis=1 if transposed else 0)
        layers.append(FixedLayer(weight.to(torch.int32), bias.to(torch.int64), transposed, module.stride[0],
                                 module.padding[0], module.output_padding[0] if transposed else 0, relu=False))
    return layers


def _flattened(stack: nn.Module):
    for module in stack:
        if isinstance(module, nn.Sequential):
            yield from _flattened(module)
        else:
            yield module


def integer_weight(weight: torch.Tensor) -> torch.Tensor:
    """A layer's weights as integers on the 2^-14 grid (float64 tensor of whole numbers)."""
    return torch.round(weight.detach().double().cpu() * 2.0**WEIGHT_FRAC_BITS)


def integer_bias(bias: torch.Tensor) -> torch.Tensor:
    """A layer's biases as integers on the 2^-22 product grid (float64 tensor of whole numbers)."""
    return torch.round(bias.detach().double().cpu() * 2.0**PRODUCT_FRAC_BITS)


def check_exactness(weight: torch.Tensor, bias: torch.Tensor, output_axis: int = 0) -> None:
    """Refuse integer weights whose worst-case sum (every input at the activation limit) could
    leave the exact float64 range."""
    magnitudes = weight.abs().to(torch.float64)
    per_output = magnitudes.sum(dim=[d for d in range(weight.dim()) if d != output_axis])
    worst = per_output * ACT_LIMIT * 2.0**ACT_FRAC_BITS + bias.abs().to(torch.float64)
    if float(worst.max()) >= EXACT_LIMIT:
        raise ValueError("fixed-point layer could overflow the exact float64 range")


def run(layers: list[FixedLayer], x: torch.Tensor) -> torch.Tensor:
    x = snap_activation(x.to(torch.float64).cpu())
    for layer in layers:
        x = layer(x)
    return x


def run_pointwise(layers: list[FixedLayer], x: torch.Tensor) -> torch.Tensor:
    """run() for a stack of 1×1 convolutions on a (channels, N) matrix: matrix products instead of
    convolutions over an N × 1 image, with the same exact sums."""
    x = snap_activation(x.to(torch.float64))
    for layer in layers:
        if layer.transposed or layer.weight.shape[2:] != (1, 1) or layer.stride != 1 or layer.padding:
            raise ValueError("run_pointwise takes 1×1 convolutions only")
        x = torch.addmm(layer.float_bias[:, None], layer.float_weight[:, :, 0, 0], x)
        x = snap_activation_(layer.activate(x))
    return x


