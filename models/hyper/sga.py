"""Encode-time inference: Stochastic Gumbel Annealing (Yang, Bamler, Mandt 2020, section 3.2).

Starting from the encoder's latents, optimise this image's rate-distortion objective over the
discrete latents with tempered stochastic rounding. The decoder is unchanged: the result is coded
with the same tables and fixed-point means as plain encoding. Candidates are scored with the real
coding objective (integer-table code lengths, exact means, the actual decoder) and the best one
seen is returned, so refinement never does worse than the amortized encoding under that score.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..core import precision
from ..core.entropy import gaussian_likelihood
from ..core.geometry import unit_float
from ..interface import ProgressCallback, RefineOptions

if TYPE_CHECKING:
    from .codec import HyperCodec

TAU_MAX = 0.5
EDGE = 1e-6
SgaOptions = RefineOptions


@dataclass
class SgaResult:
    z_hat: torch.Tensor  # int64 hyperlatents
    residuals: torch.Tensor  # int64 round(y - mean(z_hat))
    initial_loss: float  # true R-D loss of the amortized encoding
    best_loss: float
    steps: int
    history: list[tuple[int, float]] = field(default_factory=list)


def temperature(step: int, total: int) -> float:
    """tau(t) = min(0.5, 0.5 exp(-c (t - t0))): the paper's schedule (t0 = 700, c = 0.002 at
    2000 steps) stretched to `total` steps, so a short run still anneals to tau ~ 0.04."""
    t0 = 0.35 * total
    c = 2.6 / max(1.0, total - t0)
    return min(TAU_MAX, TAU_MAX * math.exp(-c * (step - t0)))


def sga_round(proxy: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """A relaxed sample of rounding each entry down or up (Gumbel-softmax, psi = atanh)."""
    down = torch.floor(proxy).detach()
    fraction = proxy - down
    logits = torch.stack([-torch.atanh(fraction.clamp(0, 1 - EDGE)) / tau,
                          -torch.atanh((1 - fraction).clamp(0, 1 - EDGE)) / tau], dim=-1)
    uniform = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp(EDGE, 1 - EDGE)
    gumbel = -torch.log(-torch.log(uniform))
    weights = torch.softmax((logits + gumbel) / tau, dim=-1)
    return down + weights[..., 1]


def anneal(model: nn.Module, variables: Sequence[torch.Tensor],
           relaxed_loss: Callable[[float, torch.Generator], torch.Tensor], score: Callable[[int], float],
           options: RefineOptions, on_progress: ProgressCallback | None = None) -> int:
    """The annealing loop every family's SGA shares: Adam on `variables` (leaf tensors) against
    relaxed_loss(tau, generator) while the temperature falls, the network frozen. score(step)
    rounds the current variables, scores them with the real coding objective, keeps the best
    candidate and returns the best loss so far; it runs every options.evaluate_every steps and
    after the last step. Returns the number of steps taken (fewer when options.seconds runs out)."""
    generator = torch.Generator().manual_seed(options.seed)
    optimizer = torch.optim.Adam(list(variables), lr=options.lr)
    model.requires_grad_(False)
    started = time.monotonic()
    step = scored = 0
    try:
        while step < options.steps:
            if options.seconds is not None and time.monotonic() - started > options.seconds:
                break
            loss = relaxed_loss(temperature(step, options.steps), generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % options.evaluate_every == 0 or step == options.steps:
                best, scored = score(step), step
                if on_progress is not None:
                    on_progress(step, best)
    finally:
        model.requires_grad_(True)
    if scored != step:  # stopped by the clock between two scorings
        score(step)
    return step


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
        bits = codec.z_coder.tables.bits(z_hat.numpy().ravel(), codec.z_table_ids(z_hat.shape))
        bits += codec.y_coder.tables.bits(residuals.numpy().ravel(), table_ids)
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
