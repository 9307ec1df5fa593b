"""lic's fixed point in numpy: the arithmetic of every network that selects a probability table.

Weights are rounded to a 2^-14 grid, biases to the 2^-22 product grid (exact operations on the
stored fp16 values, so every machine derives the same integers), and every activation is rounded
to a 2^-8 grid and clamped to +-2^12. Convolutions run in float64, where all products and partial
sums of such numbers are exact integers times 2^-22 below 2^53, so the result does not depend on
summation order, threads, BLAS or CPU: encoder and decoder agree bit for bit. ``FixedConv``
checks that bound for each layer instead of assuming it. The torch path
(``models.core.fixedpoint``) uses the same constants and grid functions.
"""
from __future__ import annotations

import decimal
import math
import sys
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bitstream.tables import TOTAL

WEIGHT_FRAC_BITS = 14
ACT_FRAC_BITS = 8
PRODUCT_FRAC_BITS = WEIGHT_FRAC_BITS + ACT_FRAC_BITS
ACT_LIMIT = 2.0**12
EXACT_LIMIT = 2.0**53
# Elements of an im2col copy above which a stride-1 convolution runs tap by tap instead: one large
# product is faster on small inputs; on large ones the copy (flow's priors: hundreds of MB) costs
# more than it saves.
IM2COL_LIMIT = 2**22


def integer_weight_array(weight: np.ndarray) -> np.ndarray:
    """A layer's weights as integers on the 2^-14 grid (float64 array of whole numbers)."""
    return np.round(np.asarray(weight, dtype=np.float64) * 2.0**WEIGHT_FRAC_BITS)


def integer_bias_array(bias: np.ndarray) -> np.ndarray:
    """A layer's biases as integers on the 2^-22 product grid (float64 array of whole numbers)."""
    return np.round(np.asarray(bias, dtype=np.float64) * 2.0**PRODUCT_FRAC_BITS)


def check_exactness_array(weight: np.ndarray, bias: np.ndarray, output_axis: int = 0) -> None:
    """Refuse integer weights whose worst-case sum (every input at the activation limit) could
    leave the exact float64 range."""
    axes = tuple(d for d in range(weight.ndim) if d != output_axis)
    worst = np.abs(weight).sum(axis=axes) * ACT_LIMIT * 2.0**ACT_FRAC_BITS + np.abs(bias)
    if float(worst.max()) >= EXACT_LIMIT:
        raise ValueError("fixed-point layer could overflow the exact float64 range")


def snap_array(x: np.ndarray) -> np.ndarray:
    """snap_activation for a float64 numpy array (in place where it can)."""
    np.clip(x, -ACT_LIMIT, ACT_LIMIT, out=x)
    x *= 2.0**ACT_FRAC_BITS  # exact: a power of two
    np.round(x, out=x)
    x *= 2.0**-ACT_FRAC_BITS
    return x


def geometric_interpolation(low: np.ndarray, high: np.ndarray, step: int, steps: int) -> np.ndarray:
    """low^(1 - t) · high^t for t = step / steps, elementwise on integers (at least 1), rounded to the
    nearest integer: in decimal arithmetic, whose logarithm and exponential are correctly rounded,
    so every machine derives the same integers (libm's float exp and log need not agree)."""
    with decimal.localcontext() as context:
        context.prec = 40
        t = decimal.Decimal(step) / steps
        out = [int(((1 - t) * decimal.Decimal(max(int(a), 1)).ln() + t * decimal.Decimal(max(int(b), 1)).ln()).exp()
                   .to_integral_value(decimal.ROUND_HALF_EVEN)) for a, b in zip(low.ravel(), high.ravel(), strict=True)]
    return np.asarray(out, dtype=np.int64).reshape(low.shape)


class TableIndex:
    """For values on the activation grid (outputs of ``run``): the index of the first threshold >= v,
    capped at the last one, i.e. np.searchsorted(thresholds, v, side="left") clipped to the table.

    The answer for every grid value in [0, min(max(thresholds), ACT_LIMIT)] is tabulated once, so
    each call is one gather where a binary search per value would cost ~10x more.
    """

    def __init__(self, thresholds: np.ndarray):
        top = min(float(np.max(thresholds)), ACT_LIMIT)
        grid = np.arange(math.ceil(top * 2**ACT_FRAC_BITS) + 1, dtype=np.float64) * 2.0**-ACT_FRAC_BITS
        ids = np.searchsorted(thresholds, grid, side="left")
        self.lookup = np.minimum(ids, len(thresholds) - 1).astype(np.int64)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Indices for grid values (negative ones -> 0, beyond the table -> the last index)."""
        units = np.clip(np.rint(values * 2.0**ACT_FRAC_BITS), 0, len(self.lookup) - 1).astype(np.int64)
        return self.lookup[units]


# 2^(32 - j/16) for j = 0..15, rounded (computed with 60-digit decimals): the integer softmax.
EXP2_TABLE = np.array([4294967296, 4112874773, 3938502376, 3771522796, 3611622603, 3458501653, 3311872529,
                       3171459999, 3037000500, 2908241642, 2784941738, 2666869345, 2553802834, 2445529972,
                       2341847524, 2242560872], dtype=np.int64)
LOGIT_STEPS = 16  # logits (base 2) are floored to 1/16 before the integer softmax
LOGIT_RANGE = 32  # ... and their spread is capped at 32 (probability ratio 2^-32, far below a count of 1)


def integer_softmax(logits_fixed: np.ndarray) -> np.ndarray:
    """Counts (..., n) summing to TOTAL, each >= 1, from base-2 logits, in integer arithmetic only.

    logits_fixed: float64 logits on the fixed-point grid (exact binary fractions), so flooring
    them to 1/16 is exact and machine-independent.
    """
    steps = np.floor(logits_fixed * LOGIT_STEPS).astype(np.int64)
    gap = np.minimum(steps.max(axis=-1, keepdims=True) - steps, LOGIT_RANGE * LOGIT_STEPS)
    weights = EXP2_TABLE[gap % LOGIT_STEPS] >> (gap // LOGIT_STEPS)
    return counts_from_weights(weights)


def counts_from_weights(weights: np.ndarray) -> np.ndarray:
    """Integer counts (..., n) summing to TOTAL, each >= 1, proportional to non-negative integer
    weights (..., n) below 2^47: the remainder goes to the largest weight."""
    spare = TOTAL - weights.shape[-1]
    counts = 1 + (spare * weights) // weights.sum(axis=-1, keepdims=True)
    leftover = TOTAL - counts.sum(axis=-1)
    top = np.argmax(weights, axis=-1)[..., None]
    np.put_along_axis(counts, top, np.take_along_axis(counts, top, -1) + leftover[..., None], -1)
    return counts


@dataclass
class FixedConv:
    """A convolution (or transposed convolution) on the fixed-point grid, then its activation:
    ReLU (leaky where negative_slope is set, the product rounded to the grid like any activation)
    or none, and an optional pixel shuffle. Inputs (C, H, W) float64 on the activation grid."""

    weight: np.ndarray  # float64 whole numbers (the 2^-14 grid), the float layer's layout
    bias: np.ndarray  # float64 whole numbers (the 2^-22 grid)
    transposed: bool = False
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    relu: bool = False
    negative_slope: float = 0.0
    shuffle: int = 1
    matrix: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        check_exactness_array(self.weight, self.bias, output_axis=1 if self.transposed else 0)
        weight = self.weight * 2.0**-WEIGHT_FRAC_BITS
        if self.transposed:  # a transposed convolution is a convolution of the dilated input, kernel flipped
            weight = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        self.kernel = weight.shape[2:]
        self.matrix = weight.reshape(weight.shape[0], -1)
        self.float_bias = (self.bias * 2.0**-PRODUCT_FRAC_BITS)[:, None]  # (outputs, 1)
        self.phases = self.phase_matrices() if self.transposed else []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.linear(x)
        if self.shuffle > 1:
            out = pixel_shuffle(out, self.shuffle)
        return snap_array(self.activate(out))

    def linear(self, x: np.ndarray) -> np.ndarray:
        if self.transposed:
            return self.transposed_linear(x)
        return correlate(x, self.matrix, self.kernel, self.stride, (self.padding, self.padding)) + self.float_bias[
            :, :, None]

    def transposed_linear(self, x: np.ndarray) -> np.ndarray:
        """The transposed convolution as `stride`² small convolutions of the undilated input, one
        per output phase (each sees only the kernel taps that meet input positions): the same
        exact sums as the convolution of the dilated input, a stride² of its work."""
        kh, kw = self.kernel
        s, low = self.stride, kh - 1 - self.padding
        height, width = x.shape[1:]
        out_h = (height - 1) * s + 1 + 2 * low + self.output_padding - kh + 1
        out_w = (width - 1) * s + 1 + 2 * (kw - 1 - self.padding) + self.output_padding - kw + 1
        out = np.empty((self.matrix.shape[0], out_h, out_w))
        for phase_r, phase_c, taps_r, taps_c, sub in self.phases:
            rows, cols = len(range(phase_r, out_h, s)), len(range(phase_c, out_w, s))
            if not rows or not cols:
                continue
            first_r = (phase_r + taps_r[0] - low) // s  # input row of the first tap at output row phase_r
            first_c = (phase_c + taps_c[0] - (kw - 1 - self.padding)) // s
            padded = pad_window(x, first_r, rows + len(taps_r) - 1, first_c, cols + len(taps_c) - 1)
            out[:, phase_r::s, phase_c::s] = correlate(padded, sub, (len(taps_r), len(taps_c)), 1, (0, 0))
        return out + self.float_bias[:, :, None]

    def phase_matrices(self) -> list[tuple[int, int, list[int], list[int], np.ndarray]]:
        """Per output phase (row, column) of a transposed convolution: the kernel taps that meet
        input positions and their weights as a matrix (outputs, channels · taps)."""
        kh, kw = self.kernel
        channels = self.matrix.shape[1] // (kh * kw)
        s, low = self.stride, kh - 1 - self.padding
        weight = self.matrix.reshape(-1, channels, kh, kw)
        phases = []
        for phase_r in range(s):
            taps_r = [k for k in range(kh) if (phase_r + k - low) % s == 0]
            for phase_c in range(s):
                taps_c = [k for k in range(kw) if (phase_c + k - (kw - 1 - self.padding)) % s == 0]
                sub = np.ascontiguousarray(weight[:, :, taps_r][:, :, :, taps_c])
                phases.append((phase_r, phase_c, taps_r, taps_c, sub.reshape(sub.shape[0], -1)))
        return phases

    def activate(self, y: np.ndarray) -> np.ndarray:
        if self.relu and self.negative_slope:
            return np.where(y < 0, y * self.negative_slope, y)
        return np.maximum(y, 0, out=y) if self.relu else y


def layer_from(network: dict[str, np.ndarray], name: str, **kind) -> FixedConv:
    """The fixed-point layer of the convolution `name` (its .weight and .bias) of a weight file's
    parameters; kind: FixedConv's fields (transposed, stride, padding, relu, ...)."""
    return FixedConv(integer_weight_array(network[f"{name}.weight"]), integer_bias_array(network[f"{name}.bias"]),
                     **kind)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b of float64 fixed-point matrices (exact in any summation order, module docstring).
    Where the process has already imported torch (the torch codecs), torch multiplies them: the
    same bits, and numpy's BLAS threads then do not compete with torch's for the cores. Never
    imports torch itself."""
    torch = sys.modules.get("torch")
    if torch is None:
        return a @ b
    a, b = (m if m.dtype == np.float64 and m.flags.writeable and m.strides[-1] == m.itemsize
            else np.array(m, dtype=np.float64, order="C") for m in (a, b))  # (torch takes writable arrays only)
    return torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def correlate(x: np.ndarray, matrix: np.ndarray, kernel: tuple[int, int], stride: int,
              padding: tuple[int, int]) -> np.ndarray:
    """(outputs, H', W'): the convolution (cross-correlation) of x (C, H, W) with weights given as
    a matrix (outputs, C·kh·kw), zero padding on every side, in exact matrix products
    (exact_matmul): one over an im2col copy, or, at stride 1 where that copy would be large, one per
    tap (correlate_by_taps)."""
    channels = x.shape[0]
    kh, kw = kernel
    if stride == 1 and channels * kh * kw * x.shape[1] * x.shape[2] > IM2COL_LIMIT:
        return correlate_by_taps(x, matrix, kernel, padding)
    if any(padding):
        x = np.pad(x, ((0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    out_h, out_w = windows.shape[1:3]
    columns = windows.transpose(0, 3, 4, 1, 2).reshape(channels * kh * kw, out_h * out_w)
    return exact_matmul(matrix, columns).reshape(-1, out_h, out_w)


def correlate_by_taps(x: np.ndarray, matrix: np.ndarray, kernel: tuple[int, int],
                      padding: tuple[int, int]) -> np.ndarray:
    """correlate() at stride 1 without an im2col copy: the padded input flattened row by row, the
    product of each tap's (outputs, C) weights with a view of it shifted by the tap (every output
    row then runs on into the padding columns, which are cropped away). The sums are the same exact
    numbers in another order; the memory is the padded input and the output, where an im2col copy
    is kh·kw times the input (hundreds of MB for flow's priors, most of a decode's time to touch)."""
    kh, kw = kernel
    padded = np.pad(x, ((0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    channels, rows, cols = padded.shape
    out_h, out_w = rows - kh + 1, cols - kw + 1
    flat = padded.reshape(channels, rows * cols)
    span = (out_h - 1) * cols + out_w  # from the first output to the last, along the flattened rows
    weight = matrix.reshape(matrix.shape[0], channels, kh, kw)
    out = np.zeros((matrix.shape[0], out_h * cols))
    for i in range(kh):
        for j in range(kw):
            start = i * cols + j
            out[:, :span] += exact_matmul(np.ascontiguousarray(weight[:, :, i, j]), flat[:, start : start + span])
    return out.reshape(-1, out_h, cols)[:, :, :out_w]


def pad_window(x: np.ndarray, top: int, height: int, left: int, width: int) -> np.ndarray:
    """The (C, height, width) window of x starting at (top, left), zeros where it leaves x."""
    channels, rows, cols = x.shape
    out = np.zeros((channels, height, width))
    r0, r1 = max(top, 0), min(top + height, rows)
    c0, c1 = max(left, 0), min(left + width, cols)
    if r0 < r1 and c0 < c1:
        out[:, r0 - top : r1 - top, c0 - left : c1 - left] = x[:, r0:r1, c0:c1]
    return out


def pixel_shuffle(x: np.ndarray, factor: int) -> np.ndarray:
    channels, height, width = x.shape
    out = x.reshape(channels // factor**2, factor, factor, height, width).transpose(0, 3, 1, 4, 2)
    return out.reshape(channels // factor**2, height * factor, width * factor)


def run(layers: list[FixedConv], x: np.ndarray) -> np.ndarray:
    """A stack of fixed-point layers on a (C, H, W) input (snapped to the grid first)."""
    x = snap_array(np.array(x, dtype=np.float64))
    for layer in layers:
        x = layer(x)
    return x


def run_pointwise(layers: list[FixedConv], x: np.ndarray, on_grid: bool = False) -> np.ndarray:
    """run() for a stack of 1×1 convolutions on a (channels, N) matrix. on_grid: the caller
    guarantees x is float64 on the activation grid already (outputs of fixed-point layers, integer
    residuals plus such means), which saves a copy and a pass over it."""
    x = x if on_grid else snap_array(np.array(x, dtype=np.float64))
    for layer in layers:
        if layer.transposed or layer.kernel != (1, 1) or layer.stride != 1 or layer.padding:
            raise ValueError("run_pointwise takes 1×1 convolutions only")
        x = snap_array(layer.activate(exact_matmul(layer.matrix, x) + layer.float_bias))
    return x
