"""Encode-time inference: Stochastic Gumbel Annealing (Yang, Bamler, Mandt 2020, section 3.2).

Starting from the encoder's latents, optimise this image's rate-distortion objective over the
discrete latents with tempered stochastic rounding. The decoder is unchanged: the result is coded
with the same tables and fixed-point means as plain encoding. Candidates are scored with the real
coding objective (integer-table code lengths, exact means, the actual decoder) and the best one
seen is returned, so refinement never does worse than the amortized encoding under that score.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ..core import precision
from ..core.annealing import anneal, sga_round
from ..core.entropy import gaussian_likelihood
from ..core.geometry import unit_float
from ..interface import ProgressCallback, RefineOptions

if TYPE_CHECKING:
    from .codec import HyperCodec

SgaOptions = RefineOptions


@dataclass
class SgaResult:
    z_hat: torch.Tensor  # int64 hyperlatents
    residuals: torch.Tensor  # int64 round(y - mean(z_hat))
    initial_loss: float  # true R-D loss of the amortized encoding
    best_loss: float
    steps: int
    history: list[tuple[int, float]] = field(default_factory=list)


class RateDistortion:
    """The R-D objective of one image under one quality of a HyperCodec (bpp + lambda 255^2 MSE)."""

    def __init__(self, codec: HyperCodec, image: torch.Tensor, quality: int):
        self.codec = codec
        self.model = codec.model
        self.quality = quality
        self.image = unit_float(image.cpu())
        self.height, self.width = image.shape[1:]
        self.lam = codec.lambda_at(quality)
        q = codec.quality_tensor(quality).cpu()
        self.inv_gain_y = self.model.gain(self.model.log_inv_gain_y, q).detach().float()
        self.inv_gain_z = self.model.gain(self.model.log_inv_gain_z, q).detach().float()

    def relaxed(self, z_soft: torch.Tensor, residual_soft: torch.Tensor) -> torch.Tensor:
        codec = self.codec
        with precision.autocast(codec.compute, codec.device):
            hyper_input = z_soft.to(codec.device) * self.inv_gain_z.to(codec.device)
            means, scales = self.model.h_s(hyper_input).float().chunk(2, dim=1)
        means, scales = means.cpu(), scales.cpu()
        rate_bits = -(torch.log2(gaussian_likelihood(residual_soft, torch.zeros_like(scales), scales)).sum()
                      + torch.log2(self.model.density.likelihood(z_soft)).sum())
        y_hat = ((means + residual_soft) * self.inv_gain_y).to(codec.device)
        y_hat = y_hat.contiguous(memory_format=torch.channels_last)
        with precision.autocast(codec.compute, codec.device):
            x_hat = self.model.g_s(y_hat).float().cpu()
        return self._loss(rate_bits, x_hat)

    @torch.no_grad()
    def exact(self, z_hat: torch.Tensor, residuals: torch.Tensor) -> float:
        """What coding (z_hat, residuals) really costs: integer-table bits and the decoder's pixels."""
        codec = self.codec
        means, table_ids = codec.latent_distribution(z_hat, self.quality)
        bits = codec.exact.z_coder.tables.bits(z_hat.numpy().ravel(), codec.z_table_ids(z_hat.shape))
        bits += codec.exact.y_coder.tables.bits(residuals.numpy().ravel(), table_ids)
        x_hat = codec.synthesise(residuals, means, self.quality, self.height, self.width)
        x_hat = torch.round(x_hat * 255) / 255  # the 8-bit pixels the decoder writes
        return float(self._loss(torch.tensor(bits), x_hat[None]))

    def _loss(self, rate_bits: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        mse = torch.mean((x_hat[0, :, : self.height, : self.width] - self.image) ** 2)
        return rate_bits / (self.height * self.width) + self.lam * 255**2 * mse


def refine(codec: HyperCodec, image: torch.Tensor, quality: int, options: RefineOptions | None = None,
           on_progress: ProgressCallback | None = None) -> SgaResult:
    """Run SGA for one image; returns the best integer latents found (never worse than the start)."""
    options = options or RefineOptions()
    objective = RateDistortion(codec, image, quality)
    y, z = codec.analyse(image, quality)
    start = codec.quantise(y, z, quality)
    initial = objective.exact(start.z_hat, start.residuals)
    result = SgaResult(start.z_hat, start.residuals, initial, initial, 0, [(0, initial)])
    with torch.no_grad():
        float_means, _ = codec.model.hyper_synthesis(torch.round(z), torch.tensor([quality]))
    z_proxy = z.clone().requires_grad_(True)
    residual_proxy = (y - float_means).clone().requires_grad_(True)

    def relaxed_loss(tau: float, generator: torch.Generator) -> torch.Tensor:
        return objective.relaxed(sga_round(z_proxy, tau, generator), sga_round(residual_proxy, tau, generator))

    def score(step: int) -> float:
        z_hat, residuals = _rounded(objective, codec, quality, z_proxy, residual_proxy)
        loss = objective.exact(z_hat, residuals)
        result.history.append((step, loss))
        if loss < result.best_loss:
            result.best_loss, result.z_hat, result.residuals = loss, z_hat, residuals
        return result.best_loss

    result.steps = anneal(codec.model, [z_proxy, residual_proxy], relaxed_loss, score, options, on_progress)
    return result


@torch.no_grad()
def _rounded(objective: RateDistortion, codec: HyperCodec, quality: int, z_proxy: torch.Tensor,
             residual_proxy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer latents of the current proxies. The proxy residual is relative to the float
    means of the relaxed z; it is re-anchored on the exact means the decoder will use for z_hat."""
    z_hat = torch.round(z_proxy).to(torch.int64)
    float_means, _ = objective.model.hyper_synthesis(z_hat.float(), torch.tensor([quality]))
    target = float_means.double() + residual_proxy.double()
    return z_hat, torch.round(target - codec.latent_means(z_hat, quality)).to(torch.int64)
