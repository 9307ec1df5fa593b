"""`hyper-bb`: the mean-scale hyperprior with lossy bits-back coding of the hyperlatent
(Yang, Bamler, Mandt 2020, section 3.3 and Algorithm 1).

Differences from ``hyper``: the hyper-analysis outputs the mean and log-scale of a Gaussian
q(z|y); p(z) is the learned factorized density itself (no uniform convolution); training
minimises the NELBO, whose hyperlatent term is the *net* cost -log p(z) + log q(z). For coding,
z lives on a grid of step Z_STEP and y on the integers (its lattice must not depend on z, which
is chosen after y). The encoder decodes z from the ANS stack with the discretised q -- borrowing
bits that are already there -- then pushes y and z; the decoder pops them and pushes z back with
the same q, which it can rebuild from y alone with ``reproducible_bbvi``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from bitstream.tables import TOTAL, IntegerTables, quantize_pmfs

from ..core.entropy import gaussian_likelihood, gaussian_scale_table, shifted_gaussian_pmfs
from ..core.layers import conv, ste_round
from .coding import GAIN_FRAC_BITS
from .network import HyperConfig, MeanScaleHyperprior

Z_STEP = 0.125  # grid of z-hat in the gain-scaled domain (a power of two: exact in fixed point)
MEAN_FRACTIONS = 8  # means are snapped to 1/8 of a grid step when they select a table
# Standard deviations of q in units of Z_STEP, a geometric grid with ratio 64**(1/31). Trained
# posteriors are often narrower than half a step, so the grid reaches down to 0.1; weight files
# store their grid ("q_scales"), and files without one use LEGACY_Q_SCALES (0.5 ... 32).
# (Computed as the first grid was, so that files made with it snap q to exactly the same ids.)
Q_SCALE_RATIO = 64.0 ** (1 / 31)
LEGACY_Q_SCALES = np.exp(np.linspace(math.log(0.5), math.log(32.0), 32))
Q_SCALES = np.exp(np.linspace(math.log(0.5) - 12 * math.log(Q_SCALE_RATIO), math.log(32.0), 44))
Y_SCALES = gaussian_scale_table()[gaussian_scale_table() <= 64.0]
LOG_SCALE_RANGE = (-7.0, 3.0)
BBVI_LR = 3e-3  # the paper's reproducible_BBVI learning rate
BBVI_SEED = 0
DEFAULT_BBVI_STEPS = 20  # each step costs the encoder and the decoder alike
PADDING_MARGIN_BITS = 256  # padding target above the expected number of borrowed bits
MAX_PIXELS = 1 << 22  # per image, 4.2 Mpixel (2048x2048): the posterior fit is not tiled


def gaussian_entropy_bits(log_scale: torch.Tensor) -> torch.Tensor:
    return (log_scale + 0.5 * math.log(2 * math.pi * math.e)) / math.log(2)


class BitsBackHyperprior(MeanScaleHyperprior):
    """Same transforms as ``hyper``; h_a's last layer outputs (mean, log-scale) of q(z|y)."""

    def __init__(self, config: HyperConfig | None = None):
        config = config or HyperConfig()
        super().__init__(config)
        n = config.channels
        self.h_a[-1] = conv(n, 2 * n)

    def posterior(self, y: torch.Tensor, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-scale of q(z|y) in the gain-scaled domain (float32)."""
        mean, log_scale = self.h_a(y).float().chunk(2, dim=1)
        log_gain = self.log_gain_z[quality][:, :, None, None]
        return mean * torch.exp(log_gain), log_scale.clamp(*LOG_SCALE_RANGE) + log_gain

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.analysis(x, quality)
        mean, log_scale = self.posterior(y, quality)
        z = mean + torch.exp(log_scale) * torch.randn_like(mean) if self.training else mean
        means, scales = self.hyper_synthesis(z, quality)
        hard = self.straight_through or not self.training
        noisy_y = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else torch.round(y)
        with torch.autocast(device_type=x.device.type, enabled=False):
            y_lik = gaussian_likelihood(noisy_y, means, scales)
            z_bits = self.z_net_bits(z, log_scale)
        y_hat = ste_round(y) if hard else noisy_y
        x_hat = self.synthesis(y_hat, quality)
        return {"x_hat": x_hat, "y_likelihoods": y_lik, "z_bits": z_bits}

    def z_net_bits(self, z: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """-log2 p(z) - H[q] per element: coding z minus the bits its choice carries back."""
        density = self.density.likelihood(z, Z_STEP) / Z_STEP
        return -torch.log2(density) - gaussian_entropy_bits(log_scale)


def adapt_hyper_state(state: dict[str, torch.Tensor], model: BitsBackHyperprior) -> dict[str, torch.Tensor]:
    """Start hyper-bb from trained ``hyper`` weights: q's mean is hyper's z, its log-scale starts at
    log(0.3) (about the std of hyper's uniform training noise)."""
    key_w, key_b = f"h_a.{len(model.h_a) - 1}.weight", f"h_a.{len(model.h_a) - 1}.bias"
    adapted = dict(state)
    weight, bias = state[key_w], state[key_b]
    adapted[key_w] = torch.cat([weight, torch.zeros_like(weight)], dim=0)
    adapted[key_b] = torch.cat([bias, torch.full_like(bias, math.log(0.3))], dim=0)
    return adapted


# ---------------------------------------------------------------------------------------------
# Coding tables
# ---------------------------------------------------------------------------------------------
def freeze_coding_tensors(model: BitsBackHyperprior) -> dict[str, torch.Tensor]:
    z_tables = quantize_pmfs(*model.density.tabulate(step=Z_STEP))
    y_tables = quantize_pmfs(*shifted_gaussian_pmfs(Y_SCALES, MEAN_FRACTIONS))
    inv_gain_z = torch.round(torch.exp(model.log_inv_gain_z.detach().double()) * 2.0**GAIN_FRAC_BITS)
    return {"inv_gain_z": inv_gain_z.to(torch.int32), **_pack_tables(z_tables, "z_tables"),
            **q_coding_tensors(Q_SCALES), **_pack_tables(y_tables, "y_tables")}


def q_coding_tensors(scales: np.ndarray) -> dict[str, torch.Tensor]:
    """The q tables built on a scale grid (in units of Z_STEP), with the grid, as coding tensors."""
    scales = np.asarray(scales, dtype=np.float64)
    tables = quantize_pmfs(*shifted_gaussian_pmfs(scales, MEAN_FRACTIONS))
    return {"q_scales": torch.from_numpy(scales.copy()), **_pack_tables(tables, "q_tables")}


def _pack_tables(tables: IntegerTables, prefix: str) -> dict[str, torch.Tensor]:
    # Counts are 1..65535: stored shifted into int16 to keep the weight file small.
    return {f"{prefix}.offsets": torch.from_numpy(tables.offsets.astype(np.int32)),
            f"{prefix}.lengths": torch.from_numpy(tables.lengths.astype(np.int32)),
            f"{prefix}.counts": torch.from_numpy((tables.counts.astype(np.int32) - 32768).astype(np.int16))}


def _unpack_tables(tensors: dict[str, torch.Tensor], prefix: str) -> IntegerTables:
    counts = tensors[f"{prefix}.counts"].numpy().astype(np.int32) + 32768
    lengths = tensors[f"{prefix}.lengths"].numpy().astype(np.int32)
    used = np.arange(counts.shape[1])[None, :] <= lengths[:, None]
    return IntegerTables(tensors[f"{prefix}.offsets"].numpy().astype(np.int32), lengths,
                         np.where(used, counts, 0).astype(np.int32))


def table_entropies(tables: IntegerTables) -> np.ndarray:
    p = tables.counts.astype(np.float64) / TOTAL
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)
