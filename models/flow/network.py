"""The multi-scale normalizing flow, its priors and its training pass."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.entropy import (
    FactorizedDensity,
    gaussian_likelihood,
)
from ..core.layers import deconv, ste_round
from .layout import (  # noqa: F401 (re-exported)
    DEFAULT_LADDER,
    DOWNSAMPLING,
    LATENT_CHANNELS,
    LEVELS,
    PIXEL_OFFSET,
    PIXEL_SCALE,
    PRIOR_INPUT_SCALE,
    SQUEEZE,
    qualities,
)

COUPLING_INPUT_SCALE = 1 / 64  # pixel-unit activations into the translation nets at a unit scale


@dataclass(frozen=True)
class FlowConfig:
    widths: tuple[int, ...] = (32, 64, 96)  # translation-net channels, finest level first (paper: 128)
    steps_per_level: int = 6  # coupling steps per level (paper: 8)
    blocks: int = 2  # residual blocks per translation net (paper: 3)
    prior_width: int = 64  # channels of φ1, φ2
    # Quantization steps of the operating points, coarse to fine (users' -q 1 is the coarsest). The
    # per-level steps start at these and are fitted after training (fit_steps).
    ladder: tuple[float, ...] = DEFAULT_LADDER
    noise_range: tuple[float, float] = (0.7, 64.0)  # training draws s log-uniformly in this range
    # 3 pixel values per pixel, each costing about log2(1/s) bits: at the slope of a uniform
    # quantizer, d(bits)/d(MSE) = 3 * 6 / (ln 2 * s^2) per pixel.
    distortion_weight: float = 18 / math.log(2)
    preview_weight: float = 0.002  # on MSE(x, x̃), whatever s


class TranslationNet(nn.Module):
    """t(·) of an additive coupling: conv, residual blocks, and a zero-initialised output conv
    (every coupling starts as the identity)."""

    def __init__(self, channels_in: int, channels_out: int, width: int, blocks: int):
        super().__init__()
        self.head = nn.Conv2d(channels_in, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(width, width, 3, padding=1)) for _ in range(blocks))
        self.tail = nn.Conv2d(width, channels_out, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x * COUPLING_INPUT_SCALE)
        for block in self.blocks:
            h = h + block(h)
        return self.tail(torch.relu(h)).float()


class AdditiveCoupling(nn.Module):
    """A fixed channel permutation, then b += t(a) for the halves (a, b): volume preserving."""

    def __init__(self, channels: int, width: int, blocks: int, seed: int):
        super().__init__()
        permutation = torch.from_numpy(np.random.default_rng(seed).permutation(channels))
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))
        self.half = channels // 2
        self.translation = TranslationNet(self.half, channels - self.half, width, blocks)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h[:, self.permutation]
        a, b = h[:, :self.half], h[:, self.half:]
        return torch.cat([a, b + self.translation(a)], dim=1)

    def inverse(self, h: torch.Tensor) -> torch.Tensor:
        a, b = h[:, :self.half], h[:, self.half:]
        return torch.cat([a, b - self.translation(a)], dim=1)[:, self.inverse_permutation]


class MultiScaleFlow(nn.Module):
    """Pixels (B, 3, H, W) in pixel units, H and W multiples of 8 <-> (z0, z1, z2)."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.levels = nn.ModuleList()
        channels = 3
        for level in range(LEVELS):
            channels *= SQUEEZE**2
            self.levels.append(nn.ModuleList(
                AdditiveCoupling(channels, config.widths[level], config.blocks, seed=1000 * level + step)
                for step in range(config.steps_per_level)))
            channels //= 2  # half the channels leave at each level but the last
        self.factored = (6, 12)  # channels of z2 and z1, factored out after levels 1 and 2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        factored = []
        h = x
        for level, steps in enumerate(self.levels):
            h = F.pixel_unshuffle(h, SQUEEZE)
            for step in steps:
                h = step(h)
            if level < LEVELS - 1:
                out = self.factored[level]
                factored.append(h[:, :out])
                h = h[:, out:]
        z2, z1 = factored
        return h, z1, z2

    def inverse(self, z0: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        h = z0
        for level in reversed(range(LEVELS)):
            if level < LEVELS - 1:
                h = torch.cat([(z2, z1)[level], h], dim=1)
            for step in reversed(self.levels[level]):
                h = step.inverse(h)
            h = F.pixel_shuffle(h, SQUEEZE)
        return h


def prior_net(channels_in: int, channels_out: int, width: int) -> nn.Sequential:
    """φ: a coarser latent -> (means; scales) of the next finer one, at twice the resolution.
    Only conv/deconv/ReLU, so that ``fixedpoint.freeze`` can run it exactly."""
    return nn.Sequential(
        nn.Conv2d(channels_in, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        deconv(width, width), nn.ReLU(),
        nn.Conv2d(width, 2 * channels_out, 3, padding=1))


def pixels_to_flow(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the flow's pixel units (centred 8-bit values)."""
    return x * PIXEL_SCALE - PIXEL_OFFSET


def flow_to_unit(h: torch.Tensor) -> torch.Tensor:
    return (h + PIXEL_OFFSET) / PIXEL_SCALE


class FlowCompression(nn.Module):
    def __init__(self, config: FlowConfig = FlowConfig()):
        super().__init__()
        self.config = config
        self.flow = MultiScaleFlow(config)
        c0, c1, c2 = LATENT_CHANNELS
        self.density = FactorizedDensity(c0, init_scale=64.0)
        self.prior1 = prior_net(c0, c1, config.prior_width)
        self.prior2 = prior_net(c1, c2, config.prior_width)
        # log of each operating point's steps: [Δ0 of each z0 channel, Δ1, Δ2] (fit_steps tunes them).
        ladder = torch.tensor(config.ladder, dtype=torch.float32)
        self.register_buffer("ladder", ladder)  # the nominal steps the fitted ones started from
        self.register_buffer("log_steps", ladder.log()[:, None].repeat(1, c0 + 2))
        self.straight_through = False
        self.training_options: object = None  # the family's training options, set by the training driver
        self.exact_quantization = False

    @property
    def num_qualities(self) -> int:
        return len(self.config.ladder)

    def steps(self, quality: torch.Tensor, log_steps: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Δ0 (B, 48, 1, 1), Δ1 (B, 1, 1, 1), Δ2 (B, 1, 1, 1)) of a batch of qualities, from the
        model's log steps or from others of the same shape (being fitted)."""
        table = self.log_steps if log_steps is None else log_steps
        steps = torch.exp(table[quality].float())[:, :, None, None]
        c0 = LATENT_CHANNELS[0]
        return steps[:, :c0], steps[:, c0:c0 + 1], steps[:, c0 + 1:]

    def prior(self, net: nn.Sequential, coarser: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) of the next finer latent."""
        return net(coarser * PRIOR_INPUT_SCALE).float().chunk(2, dim=1)

    def training_steps(self, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        low, high = (math.log(v) for v in self.config.noise_range)
        s = torch.exp(torch.empty(batch, 1, 1, 1, device=device).uniform_(low, high))
        return s, s, s

    def quantise(self, z: torch.Tensor, step: torch.Tensor, mean: torch.Tensor | float, noisy: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(value for the rate, value for the synthesis) of latents z on the grid mean + step·k."""
        if noisy:
            rated = z + step * torch.empty_like(z).uniform_(-0.5, 0.5)
            return rated, (mean + step * ste_round((z - mean) / step)) if self.straight_through else rated
        hard = mean + step * torch.round((z - mean) / step)
        return hard, hard

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 3, H, W) in [0, 1], sides multiples of 8. Training: a random noise step per sample
        (``quality`` is ignored); evaluation: the steps of ``quality``, latents rounded as coded."""
        noisy = self.training and not self.exact_quantization
        steps = self.training_steps(x.shape[0], x.device) if noisy else self.steps(quality)
        out = self.relaxed(self.flow(pixels_to_flow(x)), steps, noisy)
        return {**out, "noise_step": steps[1].flatten()}

    def relaxed(self, z: tuple[torch.Tensor, ...], steps: tuple[torch.Tensor, ...], noisy: bool,
                preview: bool = True) -> dict[str, torch.Tensor]:
        """Quantise (noisy: add uniform noise of the step's width) latents z with steps (Δ0, Δ1, Δ2)
        -> likelihoods, the reconstruction x̂ and (preview) x̃ from z0 alone, both in [0, 1]."""
        s0, s1, s2 = steps
        z0, z1, z2 = (v.float() for v in z)
        rated0, z0_hat = self.quantise(z0, s0, 0.0, noisy)
        means1, scales1 = self.prior(self.prior1, z0_hat)
        rated1, z1_hat = self.quantise(z1, s1, means1, noisy)
        means2, scales2 = self.prior(self.prior2, z1_hat)
        rated2, z2_hat = self.quantise(z2, s2, means2, noisy)
        with torch.autocast(device_type=z0.device.type, enabled=False):
            likelihoods = (
                self.density.likelihood(rated0.float(), width=s0.expand_as(rated0)),
                gaussian_likelihood(rated1 / s1, means1 / s1, scales1 / s1),
                gaussian_likelihood(rated2 / s2, means2 / s2, scales2 / s2),
            )
        out = {"x_hat": flow_to_unit(self.flow.inverse(z0_hat, z1_hat, z2_hat).float()), "likelihoods": likelihoods}
        if preview:
            preview_means2, _ = self.prior(self.prior2, means1)
            out["x_preview"] = flow_to_unit(self.flow.inverse(z0_hat, means1, preview_means2).float())
        return out

    def rate_distortion(self, x: torch.Tensor, quality: torch.Tensor, out: dict[str, torch.Tensor],
                        channel_rate_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-sample bpp + distortion_weight / s^2 * MSE(x̂) + preview_weight * MSE(x̃), MSE in
        8-bit pixel units; PSNR of x̂ (as coded: 8-bit clamp) and bpp for the logs."""
        bpp, mse = rate_and_mse(x, out)
        preview_mse = torch.mean((out["x_preview"] - x) ** 2, dim=(1, 2, 3)) * PIXEL_SCALE**2
        weight = self.config.distortion_weight / out["noise_step"] ** 2
        loss = bpp + weight * mse + self.config.preview_weight * preview_mse
        if getattr(self.training_options, "normalise_per_step", False):
            loss = loss / loss.detach().clamp(min=1e-3)
        coded = torch.round(out["x_hat"].detach().clamp(0, 1) * 255) / 255
        coded_mse = torch.mean((coded - x) ** 2, dim=(1, 2, 3))
        return {"loss": loss.mean(), "bpp": bpp.mean(), "mse": mse.mean(),
                "psnr": (10 * torch.log10(1 / coded_mse.clamp(min=1e-10))).mean(),
                "preview_psnr": (10 * torch.log10(PIXEL_SCALE**2 / preview_mse.clamp(min=1e-10))).mean()}


def rate_and_mse(x: torch.Tensor, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: estimated bits per pixel of all three levels, and MSE(x, x̂) in 8-bit units."""
    bits = sum(-torch.log2(lik).sum(dim=(1, 2, 3)) for lik in out["likelihoods"])
    mse = torch.mean((out["x_hat"] - x) ** 2, dim=(1, 2, 3)) * PIXEL_SCALE**2
    return bits / (x.shape[2] * x.shape[3]), mse



def build(config: dict) -> FlowCompression:
    fields = {**config}
    for key in ("widths", "ladder", "noise_range"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return FlowCompression(FlowConfig(**fields))

