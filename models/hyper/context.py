"""`hyper`'s transforms with a channel-conditional checkerboard context model (ELIC-style: He et
al. 2022, after Minnen & Singh 2020 and He et al. 2021).

The latents are split into uneven channel groups, decoded one after the other; inside a group,
the "anchor" half of the positions (row + column even) is decoded first, then the other half.
Each of the 2 × groups passes predicts the mean and scale of its latents from

    the hyperprior's mean and scale of those latents (`hyper`'s hyper-synthesis),
    every latent of the earlier groups at the same position, and their 3×3 neighbourhood through
    a convolution (channel context: the earlier groups are complete, so every neighbour is known),
    and for the second pass, the group's own anchors through a 3×3 convolution (spatial context:
    the four nearest anchors of every other position),

with a small network of 1×1 convolutions whose output is added to the hyperprior's own mean and
scale: with its last layer at zero the model is exactly `hyper`, which is where training starts.

Every network that selects a CDF runs in the fixed point of ``models/core/fixedpoint.py``, so encoder
and decoder agree bit for bit; a decoder runs 2 × groups small passes at latent resolution
(10 for the default groups) between the hyper-synthesis and the synthesis.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..core.entropy import gaussian_likelihood
from ..core.layers import ste_round
from .network import (
    HyperConfig,
    MeanScaleHyperprior,
)

SPATIAL_REACH = 1  # the 3×3 spatial context convolution sees ±1 latent


@dataclass(frozen=True)
class HyperCtxConfig(HyperConfig):
    latent_channels: int = 256  # `hyper`'s shipped width, which this model starts from
    hyper_width: int | None = 192
    groups: tuple[int, ...] | None = None  # channel groups in decoding order; None: default_groups(M)
    context_width: int = 96  # hidden width of each group's parameter network
    spatial_width: int = 32  # outputs of a group's spatial context convolution (at most its channels)
    neighbour_width: int = 32  # outputs of a group's 3×3 convolution over the earlier groups (0: none)


def default_groups(channels: int) -> tuple[int, ...]:
    """ELIC's uneven split (16, 16, 32, 64, rest): small groups first, where context pays most."""
    if channels < 160:
        quarter = channels // 4
        return (quarter, quarter, quarter, channels - 3 * quarter)
    return (16, 16, 32, 64, channels - 128)


def anchor_mask(height: int, width: int) -> torch.Tensor:
    """(1, 1, height, width) booleans: True where row + column is even (decoded first)."""
    rows = torch.arange(height)[:, None]
    cols = torch.arange(width)[None, :]
    return ((rows + cols) % 2 == 0)[None, None]


def group_bounds(groups: tuple[int, ...]) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for size in groups:
        bounds.append((start, start + size))
        start += size
    return bounds


class ContextHyperprior(MeanScaleHyperprior):
    """MeanScaleHyperprior whose Gaussian conditional is predicted group by group, pass by pass."""

    def __init__(self, config: HyperCtxConfig = HyperCtxConfig()):
        m = config.latent_channels
        if config.groups is None:
            config = dataclasses.replace(config, groups=default_groups(m))
        super().__init__(config)
        if sum(config.groups) != m or min(config.groups) < 1:
            raise ValueError(f"channel groups {config.groups} do not add up to the {m} latent channels")
        self.bounds = group_bounds(config.groups)
        self.spatial_widths = [min(size, config.spatial_width) for size in config.groups]
        self.spatial = nn.ModuleList(
            nn.Conv2d(size, width, 2 * SPATIAL_REACH + 1, padding=SPATIAL_REACH)
            for size, width in zip(config.groups, self.spatial_widths, strict=True))
        self.neighbour_widths = [config.neighbour_width if start else 0 for start, _ in self.bounds]
        self.neighbours = nn.ModuleList(
            nn.Conv2d(start, width, 2 * SPATIAL_REACH + 1, padding=SPATIAL_REACH)
            for (start, _), width in zip(self.bounds, self.neighbour_widths, strict=True) if width)
        self.aggregate = nn.ModuleList(
            parameter_network(start + 2 * (stop - start) + neighbours + width, config.context_width,
                              2 * (stop - start))
            for (start, stop), neighbours, width in zip(self.bounds, self.neighbour_widths, self.spatial_widths,
                                                        strict=True))
        # Stage one of training: the context model alone, on the frozen transforms of `hyper`.
        self.transforms_frozen = False

    def context_parameters(self) -> list[nn.Parameter]:
        return [*self.spatial.parameters(), *self.neighbours.parameters(), *self.aggregate.parameters()]

    def neighbour_layer(self, group: int) -> nn.Conv2d | None:
        """The group's convolution over the earlier groups' latents (None for the first group)."""
        return self.neighbours[group - 1] if self.neighbour_widths[group] else None

    def hyper_features(self, z_hat: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """The hyper-synthesis output (means then scales of every latent, 2M channels), float."""
        return self.h_s(z_hat * self.gain(self.log_inv_gain_z, quality)).float()

    def group_parameters(self, group: int, features: torch.Tensor, previous: torch.Tensor,
                         spatial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) of one group's latents: the hyperprior's, corrected from the context.
        previous: the earlier groups' latents and their neighbourhood features."""
        start, stop = self.bounds[group]
        m = self.config.latent_channels
        means, scales = features[:, start:stop], features[:, m + start : m + stop]
        correction = self.aggregate[group](torch.cat([means, scales, previous, spatial], dim=1)).float()
        mean_correction, scale_correction = correction.chunk(2, dim=1)
        return means + mean_correction, scales + scale_correction

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training/evaluation pass, as MeanScaleHyperprior.forward, with the context model:
        each pass sees the earlier latents as the decoder will, rounded around their means
        (straight-through, so no gradient flows into the means through them)."""
        transforms_learn = torch.is_grad_enabled() and not self.transforms_frozen
        with torch.set_grad_enabled(transforms_learn):
            y = self.analysis(x, quality)
            z = self.hyper_analysis(y, quality)
        exact = self.exact_quantization or not self.training
        z_hat, noisy_z = self.quantized_hyperlatents(z, exact)
        with torch.set_grad_enabled(transforms_learn):
            features = self.hyper_features(z_hat, quality)
        means, scales, y_hat = self.context_passes(y, features, torch.round if exact else ste_round)
        noisy_y = y_hat if exact else y + torch.empty_like(y).uniform_(-0.5, 0.5)
        with torch.autocast(device_type=x.device.type, enabled=False):
            z_lik = self.density.likelihood(noisy_z)
            y_lik = gaussian_likelihood(noisy_y, means, scales)
        synthesis_input = y_hat if exact or self.straight_through else noisy_y
        with torch.set_grad_enabled(transforms_learn):
            x_hat = self.synthesis(synthesis_input, quality)
        return {"x_hat": x_hat, "y_likelihoods": y_lik, "z_likelihoods": z_lik}

    def context_passes(self, y: torch.Tensor, features: torch.Tensor, rounded: Callable[[torch.Tensor], torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(means, scales, latents rounded around them) of every group, in decoding order.
        rounded: how a latent minus its mean is rounded (exact, straight-through, or SGA's relaxation)."""
        batch, _, height, width = y.shape
        anchors = anchor_mask(height, width).to(y.device)
        all_means, all_scales, y_hat = [], [], []
        for group, (start, stop) in enumerate(self.bounds):
            target = y[:, start:stop]
            previous = torch.cat(y_hat, dim=1) if y_hat else y.new_zeros(batch, 0, height, width)
            neighbours = self.neighbour_layer(group)
            if neighbours is not None:
                previous = torch.cat([previous, neighbours(previous).float()], dim=1)
            nothing = y.new_zeros(batch, self.spatial_widths[group], height, width)
            anchor_means, anchor_scales = self.group_parameters(group, features, previous, nothing)
            anchor_hat = (rounded(target - anchor_means) + anchor_means) * anchors
            spatial = self.spatial[group](anchor_hat).float()
            other_means, other_scales = self.group_parameters(group, features, previous, spatial)
            means = torch.where(anchors, anchor_means, other_means)
            scales = torch.where(anchors, anchor_scales, other_scales)
            all_means.append(means)
            all_scales.append(scales)
            y_hat.append(rounded(target - means) + means)
        return torch.cat(all_means, dim=1), torch.cat(all_scales, dim=1), torch.cat(y_hat, dim=1)


def parameter_network(inputs: int, width: int, outputs: int) -> nn.Sequential:
    """1×1 convolutions; the last starts at zero, so that a fresh context model adds nothing."""
    network = nn.Sequential(nn.Conv2d(inputs, width, 1), nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU(),
                            nn.Conv2d(width, outputs, 1))
    nn.init.zeros_(network[-1].weight)
    nn.init.zeros_(network[-1].bias)
    return network


def build(config: dict) -> ContextHyperprior:
    values = {**config}
    for key in ("lambdas", "groups"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    return ContextHyperprior(HyperCtxConfig(**values))


def adapt_hyper_state(state: dict[str, torch.Tensor], target: ContextHyperprior) -> dict[str, torch.Tensor]:
    """Start from `hyper` weights: its transforms, gains and hyperprior; the context model as built
    (a zero correction, so the start codes exactly as `hyper` does)."""
    return {**target.state_dict(), **state}
