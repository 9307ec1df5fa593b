"""`--refine sga` for imported hyperpriors without a context model: SGA over this image's hyperlatent
symbols and latent residuals against bpp + lambda · 255² · MSE, with the lambda each network was
trained for (`lic import --lambdas`). Candidates are scored with the real coding objective
(integer-table code lengths, the fixed-point means and tables, the decoder's 8-bit pixels); the
decoder is unchanged."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..core import precision
from ..core.annealing import anneal, sga_round
from ..core.entropy import gaussian_likelihood
from ..core.geometry import unit_float
from ..interface import ProgressCallback, RefineOptions

if TYPE_CHECKING:
    from .codec import ImportedCodec


class ImportedRateDistortion:
    """The R-D objective of one image under one imported network."""

    def __init__(self, codec: ImportedCodec, image: torch.Tensor, quality: int):
        self.codec, self.quality = codec, quality
        self.image = unit_float(image.cpu())
        self.height, self.width = image.shape[1:]
        self.lam = codec.lambdas[quality]
        self.median = codec.model.medians[quality].detach().float()[None, :, None, None]

    def hyper(self, z_symbols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(float means, float scales) of y for (relaxed) hyperlatent symbols."""
        codec = self.codec
        with precision.autocast(codec.compute, codec.device):
            out = codec.model.h_s[self.quality]((z_symbols + self.median).to(codec.device)).float().cpu()
        return (out.chunk(2, dim=1)[::-1]) if codec.mean else (torch.zeros_like(out), out)

    def relaxed(self, z_soft: torch.Tensor, residual_soft: torch.Tensor) -> torch.Tensor:
        codec = self.codec
        means, scales = self.hyper(z_soft)
        rate_bits = -(torch.log2(gaussian_likelihood(residual_soft, torch.zeros_like(scales), scales)).sum()
                      + torch.log2(codec.model.density[self.quality].likelihood(z_soft + self.median)).sum())
        with precision.autocast(codec.compute, codec.device):
            x_hat = codec.model.g_s[self.quality]((means + residual_soft).to(codec.device)).float().cpu()
        return self._loss(rate_bits, x_hat)

    @torch.no_grad()
    def exact(self, z_symbols: torch.Tensor, residuals: torch.Tensor) -> float:
        codec = self.codec
        means, table_ids = codec.latent_distribution(z_symbols, self.quality)
        bits = codec.z_coder.tables.bits(z_symbols.numpy().ravel(), codec.z_table_ids(z_symbols.shape, self.quality))
        bits += codec.y_coder.tables.bits(residuals.numpy().ravel(), table_ids)
        pixels = codec.synthesise(residuals, means, self.quality, self.height, self.width)
        return float(self._loss(torch.tensor(bits), pixels[None].float() / 255))

    def _loss(self, rate_bits: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        mse = torch.mean((x_hat[0, :, : self.height, : self.width].clamp(0, 1) - self.image) ** 2)
        return rate_bits / (self.height * self.width) + self.lam * 255**2 * mse


def refine(codec: ImportedCodec, image: torch.Tensor, quality: int, options: RefineOptions,
           on_progress: ProgressCallback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The best (hyperlatent symbols, latent residuals) found for one image; never worse than the
    plain encoding under the real objective."""
    objective = ImportedRateDistortion(codec, image, quality)
    y, z = codec.analyse(image, quality)
    z_symbols = codec.hyperlatent_symbols(z, quality)
    means, _ = codec.latent_distribution(z_symbols, quality)
    best = {"loss": None, "latents": (z_symbols, torch.round(y.double() - means).to(torch.int64))}
    best["loss"] = objective.exact(*best["latents"])
    with torch.no_grad():
        float_means, _ = objective.hyper(z_symbols.float())
    z_proxy = (z - objective.median).clone().requires_grad_(True)
    residual_proxy = (y - float_means).clone().requires_grad_(True)

    def relaxed_loss(tau: float, generator: torch.Generator) -> torch.Tensor:
        return objective.relaxed(sga_round(z_proxy, tau, generator), sga_round(residual_proxy, tau, generator))

    @torch.no_grad()
    def score(step: int) -> float:
        symbols = torch.round(z_proxy).to(torch.int64)
        float_means, _ = objective.hyper(symbols.float())
        exact_means, _ = codec.latent_distribution(symbols, quality)
        residuals = torch.round(float_means.double() + residual_proxy.double() - exact_means).to(torch.int64)
        loss = objective.exact(symbols, residuals)
        if loss < best["loss"]:
            best["loss"], best["latents"] = loss, (symbols, residuals)
        return best["loss"]

    anneal(codec.model, [z_proxy, residual_proxy], relaxed_loss, score, options, on_progress)
    return best["latents"]


