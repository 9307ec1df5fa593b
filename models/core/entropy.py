"""Entropy models: the factorized density for hyperlatents and the Gaussian conditional for latents.

Training uses differentiable likelihoods. Coding uses integer probability tables that are frozen
into the weight file (``freeze_tables``) so that encoder and decoder never recompute a float CDF.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bitstream.tables import IntegerTables

from ..runtime.tables import channel_table_ids, tables_from_arrays  # noqa: F401 (re-exported)
from .layers import LowerBound

LIKELIHOOD_FLOOR = 1e-9
SCALE_MIN = 0.11
SCALE_MAX = 256.0
NUM_SCALES = 64
TAIL_MASS = 1e-6  # beyond this, values are coded through the escape symbol


class FactorizedDensity(nn.Module):
    """Per-channel univariate density with a learned monotone CDF (Balle et al. 2018, appendix 6.1)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        widths = (1, *filters, 1)
        scale = init_scale ** (1 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = math.log(math.expm1(1 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, widths[i + 1], 1) - 0.5))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))

    def cdf_logits(self, values: torch.Tensor) -> torch.Tensor:
        """values: (C, 1, N) -> logits of the CDF at those points, same shape."""
        x = values
        for i, matrix in enumerate(self.matrices):
            x = torch.matmul(F.softplus(matrix), x) + self.biases[i]
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def interval_mass(self, centres: torch.Tensor, width: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Probability of [c - width/2, c + width/2] for centres of shape (C, 1, N) (width: a number
        or a tensor that broadcasts to them)."""
        lower = self.cdf_logits(centres - width / 2)
        upper = self.cdf_logits(centres + width / 2)
        # Evaluate in the tail where the sigmoid is not saturated, for accuracy.
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def likelihood(self, z: torch.Tensor, width: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Mass of the bin of the given width (a number, or a tensor shaped like z) centred on each
        element of z (B, C, H, W)."""
        channels = z.shape[1]

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.transpose(0, 1).reshape(channels, 1, -1)

        widths = flat(width) if isinstance(width, torch.Tensor) else width
        mass = self.interval_mass(flat(z), widths).reshape(channels, z.shape[0], *z.shape[2:]).transpose(0, 1)
        return LowerBound.apply(mass, LIKELIHOOD_FLOOR)

    @torch.no_grad()
    def tabulate(self, search_radius: int = 512, step: float | np.ndarray = 1.0,
                 shift: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per channel, the support [lo, hi] (in units of `step`) holding all but TAIL_MASS of the mass.

        step: the bin width, one for all channels or one per channel; shift: per channel, where bin 0
        is centred (default 0). Returns (offsets, rows): offsets[c] = lo and
        rows[c][k] = P(bin centred on (lo + k) * step[c] + shift[c]), float64.
        """
        channels = self.matrices[0].shape[0]
        steps = np.broadcast_to(np.asarray(step, dtype=np.float64), (channels,))
        reach = round(search_radius / float(steps.min()))
        grid = torch.arange(-reach, reach + 1, dtype=torch.float64)
        step_column = torch.tensor(steps, dtype=torch.float64)[:, None, None]
        density = self.double()
        try:
            centres = grid * step_column
            if shift is not None:
                centres = centres + torch.as_tensor(np.asarray(shift, dtype=np.float64))[:, None, None]
            mass = density.interval_mass(centres, step_column)[:, 0, :].numpy()
        finally:
            self.float()
        offsets, rows = [], []
        for c in range(channels):
            cdf = np.cumsum(mass[c])
            inside = np.nonzero((cdf > TAIL_MASS) & (cdf - mass[c] < 1 - TAIL_MASS))[0]
            lo, hi = (inside[0], inside[-1]) if inside.size else (reach, reach)
            offsets.append(int(grid[lo]))
            rows.append(mass[c, lo : hi + 1])
        return np.asarray(offsets, dtype=np.int64), rows


def gaussian_likelihood(values: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Mass of N(mean, scale) on [v - 1/2, v + 1/2].

    Both bounds let gradients through when they point back into the valid range: a plain clamp
    would freeze every scale predicted below SCALE_MIN (and every latent whose likelihood is
    below the floor) for good, which collapses the latents of low-rate qualities.
    """
    scales = LowerBound.apply(scales, SCALE_MIN)
    centred = torch.abs(values - means)
    upper = _std_normal_cdf((0.5 - centred) / scales)
    lower = _std_normal_cdf((-0.5 - centred) / scales)
    return LowerBound.apply(upper - lower, LIKELIHOOD_FLOOR)


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def gaussian_scale_table() -> np.ndarray:
    """The scales whose CDFs are tabulated; a predicted scale uses the smallest entry >= it."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), NUM_SCALES))


def gaussian_pmfs(scales: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Zero-mean discretised Gaussians, one row per scale, as (offsets, rows) like ``tabulate``."""
    offsets, rows = [], []
    for scale in scales:
        radius = max(1, math.ceil(-_normal_ppf(TAIL_MASS / 2) * scale))
        k = np.arange(-radius, radius + 1, dtype=np.float64)
        upper = np.array([0.5 * math.erfc(-(v + 0.5) / (scale * math.sqrt(2))) for v in k])
        lower = np.array([0.5 * math.erfc(-(v - 0.5) / (scale * math.sqrt(2))) for v in k])
        offsets.append(-radius)
        rows.append(upper - lower)
    return np.asarray(offsets, dtype=np.int64), rows


def shifted_gaussian_pmfs(scales: np.ndarray, fractions: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Discretised Gaussians on the integers with a mean f / fractions above an integer.

    Table ``scale_index * fractions + f`` holds P(n + r) for N(n + f/fractions, scale), as a row over
    r in [offset, offset + len); n is any integer (the coder codes r = value - n).
    """
    offsets, rows = [], []
    for scale in scales:
        radius = max(1, math.ceil(-_normal_ppf(TAIL_MASS / 2) * scale))
        k = np.arange(-radius, radius + 2, dtype=np.float64)
        for f in range(fractions):
            shift = f / fractions
            upper = np.array([0.5 * math.erfc(-(v + 0.5 - shift) / (scale * math.sqrt(2))) for v in k])
            lower = np.array([0.5 * math.erfc(-(v - 0.5 - shift) / (scale * math.sqrt(2))) for v in k])
            offsets.append(-radius)
            rows.append(upper - lower)
    return np.asarray(offsets, dtype=np.int64), rows


def _normal_ppf(p: float) -> float:
    """Inverse standard normal CDF by bisection (only used to size tables)."""
    lo, hi = -40.0, 0.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return hi


def tables_to_tensors(tables: IntegerTables, prefix: str) -> dict[str, torch.Tensor]:
    """Integer tables as coding tensors of a weight file (prefix.offsets, .lengths, .counts). The
    counts (0..2^16 - 1: every table keeps mass for its escape symbol) are stored in 16 bits, as
    int16 bit patterns (torch has no portable uint16); files written before that hold int32."""
    tensors = {f"{prefix}.{name}": torch.from_numpy(getattr(tables, name).astype(np.int32))
               for name in ("offsets", "lengths")}
    counts = np.asarray(tables.counts)
    if counts.max() >= 1 << 16 or counts.min() < 0:
        raise ValueError("table counts do not fit in 16 bits")
    tensors[f"{prefix}.counts"] = torch.from_numpy(counts.astype(np.uint16).view(np.int16))
    return tensors


def tables_from_tensors(tensors: dict[str, torch.Tensor], prefix: str) -> IntegerTables:
    return tables_from_arrays({name: tensor.numpy() for name, tensor in tensors.items() if name.startswith(prefix)},
                              prefix)
