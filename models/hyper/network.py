"""The mean-scale hyperprior network: analysis, hyper-analysis, hyper-synthesis and synthesis with
per-quality gains, in training and in inference."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..core.entropy import (
    FactorizedDensity,
    gaussian_likelihood,
)
from ..core.layers import GDN, conv, deconv, ste_round
from .layout import (  # noqa: F401 (the family's geometry, re-exported)
    ANALYSIS_TILES,
    DOWNSAMPLING,
    ENCODER_PREFIXES,
    GAIN_KEYS,
    HYPER_ANALYSIS_TILES,
    HYPER_SYNTHESIS_TILES,
    LATENT_STRIDE,
    SYNTHESIS_TILES,
)
from .loss import rate_distortion_loss

# Distortion weights per quality, for MSE on images scaled to [0, 1]: loss = bpp + lambda * 255^2 * MSE.
# CompressAI's ladder is 0.0018 ... 0.0940 (x2.2 per step). Ours is placed so that -q 1 ... 6 land
# near 0.1, 0.17, 0.3, 0.5, 0.9, 1.5 bpp on Kodak (x1.7 per step in rate): the CPU-budget weights
# spend more bits than a converged model at a given lambda, and rate grows ever more slowly with
# lambda at the top, hence the wider steps there (see docs/models.md).
LAMBDAS = (0.0006, 0.0012, 0.0025, 0.0065, 0.0240, 0.1000)


@dataclass(frozen=True)
class HyperConfig:
    channels: int = 128  # N: width of the transforms and of z
    latent_channels: int = 192  # M: channels of y
    lambdas: tuple[float, ...] = LAMBDAS
    # Width of the hyper-synthesis hidden layers (w, 3w/2); None: M, the layout of Minnen et al.
    # A wider latent with hyper_width=192 keeps the weight file under 16 MiB.
    hyper_width: int | None = None


class MeanScaleHyperprior(nn.Module):
    def __init__(self, config: HyperConfig = HyperConfig()):
        super().__init__()
        self.config = config
        n, m, q = config.channels, config.latent_channels, len(config.lambdas)
        w = config.hyper_width or m
        self.g_a = nn.Sequential(
            conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))
        self.g_s = nn.Sequential(
            deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
            deconv(n, n), GDN(n, inverse=True), deconv(n, 3))
        self.h_a = nn.Sequential(conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
        self.h_s = nn.Sequential(
            deconv(n, w), nn.ReLU(), deconv(w, w * 3 // 2), nn.ReLU(), conv(w * 3 // 2, 2 * m, 3, 1))
        self.density = FactorizedDensity(n)
        # Higher quality -> larger gain -> finer quantization of y. Spread so that neighbouring
        # qualities start roughly a factor sqrt(lambda ratio) apart; training refines them.
        spread = math.log(1.45) * (torch.arange(q, dtype=torch.float32) - (q - 1) / 2)
        self.log_gain_y = nn.Parameter(spread[:, None].repeat(1, m))
        self.log_inv_gain_y = nn.Parameter(-spread[:, None].repeat(1, m))
        self.log_gain_z = nn.Parameter(torch.zeros(q, n))
        self.log_inv_gain_z = nn.Parameter(torch.zeros(q, n))
        self.register_buffer("lambdas", torch.tensor(config.lambdas, dtype=torch.float32))
        self.straight_through = False
        self.training_options: object = None  # the family's training options, set by the training driver
        # Train on exactly what the coder does (see forward); for a decoder side fine-tuned under a
        # frozen encoder, the second stage of "soft then hard" training (Guo et al. 2021).
        self.exact_quantization = False

    @property
    def num_qualities(self) -> int:
        return len(self.config.lambdas)

    @staticmethod
    def gain(log_gain: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) gains of a batch of 0-based qualities (B,) from a log-gain table; a
        floating-point quality between two trained ones interpolates their log gains linearly
        (a geometric interpolation of the gains, as continuously variable-rate models do)."""
        return torch.exp(interpolated_rows(log_gain, quality))[:, :, None, None]

    # The four stages, gains applied (float32 out; callers choose autocast). quality: (B,) indices.
    def analysis(self, x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """x in [0, 1], sides multiples of 64 -> continuous latents y in the gain-scaled domain."""
        return self.g_a(x).float() * self.gain(self.log_gain_y, quality)

    def hyper_analysis(self, y: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """Gain-scaled y -> continuous hyperlatents z in the gain-scaled domain."""
        return self.h_a(y).float() * self.gain(self.log_gain_z, quality)

    def hyper_synthesis(self, z_hat: torch.Tensor, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain-scaled hyperlatents -> (means, scales) of the Gaussian of each latent (float, not
        the fixed-point version that selects coding tables)."""
        return self.h_s(z_hat * self.gain(self.log_inv_gain_z, quality)).float().chunk(2, dim=1)

    def synthesis(self, y_hat: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """Gain-scaled latents -> reconstruction (unclamped)."""
        return self.g_s(y_hat * self.gain(self.log_inv_gain_y, quality)).float()

    def rate_distortion(self, x: torch.Tensor, quality: torch.Tensor, out: dict[str, torch.Tensor],
                        channel_rate_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The training objective of a forward pass (see rate_distortion_loss)."""
        return rate_distortion_loss(self, x, quality, out, channel_rate_weights)

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The parameters that decoding reads (synthesis, hyper-synthesis, z density, inverse gains)."""
        return [p for name, p in self.named_parameters() if not name.startswith(ENCODER_PREFIXES)]

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training/evaluation pass with the noise relaxation.

        x: (B, 3, H, W) in [0, 1], H and W multiples of 64; quality: (B,) long indices.
        Rates use additive uniform noise. The synthesis sees the noisy latents too, unless
        ``straight_through`` is set: then it sees rounded latents with identity gradients ("mixed"
        quantization, Minnen & Singh 2020), which matches coding better but starves a fresh
        network of information, so the trainer switches it on only late in a run.
        In evaluation, or with ``exact_quantization``, everything is what the coder does: latents
        rounded (around the predicted means for y), rates of the rounded values. No gradient
        reaches the analysis transforms then; the decoder side gets exact ones.
        """
        # Transforms may run under autocast (bf16); latents, rounding and likelihoods stay float32.
        y = self.analysis(x, quality)
        z = self.hyper_analysis(y, quality)
        exact = self.exact_quantization or not self.training
        z_hat, noisy_z = self.quantized_hyperlatents(z, exact)
        means, scales = self.hyper_synthesis(z_hat, quality)
        if exact:
            # The rounding grid is not differentiable: a step of the means moves values near a bin
            # edge into the next bin, which a gradient through y_hat = means + round(y - means)
            # misses (it pulls the means towards bin centroids; that measured worse, see
            # docs/results.md). So only the scales, the density and the synthesis learn here.
            means = means.detach()
            y_hat = noisy_y = torch.round(y - means) + means
        else:
            noisy_y = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            y_hat = ste_round(y - means) + means if self.straight_through else noisy_y
        with torch.autocast(device_type=x.device.type, enabled=False):
            z_lik = self.density.likelihood(noisy_z)
            y_lik = gaussian_likelihood(noisy_y, means, scales)
        x_hat = self.synthesis(y_hat, quality)
        return {"x_hat": x_hat, "y_likelihoods": y_lik, "z_likelihoods": z_lik}


    def quantized_hyperlatents(self, z: torch.Tensor, exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the hyper-synthesis sees, what the rate is measured on): both rounded z when exact,
        else z plus uniform noise (the synthesis sees rounded z with straight-through instead, when
        ``straight_through`` is set)."""
        if exact:
            z_hat = torch.round(z)
            return z_hat, z_hat
        noisy_z = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        return (ste_round(z) if self.straight_through else noisy_z), noisy_z


def interpolated_rows(table: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Rows (B, C) of a (Q, C) table at qualities (B,): whole ones index it, fractional ones mix the
    two rows around them linearly."""
    if not quality.is_floating_point():
        return table[quality]
    low = quality.floor().long().clamp(0, table.shape[0] - 2)
    fraction = (quality - low).to(table.dtype)[:, None]
    return table[low] * (1 - fraction) + table[low + 1] * fraction


