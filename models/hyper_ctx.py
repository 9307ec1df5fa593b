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

Every network that selects a CDF runs in the fixed point of ``models/fixedpoint.py``, so encoder
and decoder agree bit for bit; a decoder runs 2 × groups small passes at latent resolution
(10 for the default groups) between the hyper-synthesis and the synthesis.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import constriction
import numpy as np
import torch
from torch import nn

from bitstream.coders import stack_from_bytes, words_to_bytes
from bitstream.container import FormatError

from . import fixedpoint, precision
from .entropy import gaussian_likelihood
from .geometry import unit_float
from .hyper import (
    DOWNSAMPLING,
    HYPER_SYNTHESIS_TILES,
    LATENT_STRIDE,
    HyperConfig,
    HyperpriorCoding,
    MeanScaleHyperprior,
)
from .interface import PLAIN, Capabilities, EncodeOptions, Geometry, ProgressCallback, RefineOptions, check_refine
from .layers import ste_round
from .sga import anneal, sga_round

SPATIAL_REACH = 1  # the 3×3 spatial context convolution sees ±1 latent
BAND_ROWS = 64  # latent rows per band of the coding-time passes, which bounds their memory


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


# ---------------------------------------------------------------------------------------------
# Coding
# ---------------------------------------------------------------------------------------------
@dataclass
class CodedLatents:
    chunks: list[tuple[np.ndarray, np.ndarray]]  # (residuals, table ids) of each pass, in decoding order
    residuals: torch.Tensor  # (1, M, h, w) int64
    means: torch.Tensor  # (1, M, h, w) float64, exact


Choose = Callable[[torch.Tensor, np.ndarray, tuple[int, int], torch.Tensor], torch.Tensor]
"""(means (c, N) of one pass's latents, float64 and exact; their table ids, channel-major; the
group's channels (start, stop); the pass's N flat positions) -> the (c, N) integer residuals: the
encoder rounds its latents, the decoder pops them from the stream."""

POSITION_CHUNK = 16384  # latent positions per evaluation of a parameter network (bounds its memory)


class HyperCtxCodec(HyperpriorCoding):
    """Codes `hyperlatent` as `hyper` does and `latent` as one ANS stream of 2 × groups chunks,
    each chunk one pass: a group's channels at its anchor (then other) positions, channel-major."""

    section_names = ("hyperlatent", "latent")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(refine=("sga",), prepares=True)
    continuous_quality = True

    def __init__(self, model: ContextHyperprior, coding: dict[str, torch.Tensor], device="cpu", compute="auto"):
        super().__init__(model, coding, device, compute)
        self.spatial_layers = [fixedpoint.freeze(nn.Sequential(conv))[0] for conv in model.spatial]
        self.neighbour_layers = [None if model.neighbour_layer(group) is None
                                 else fixedpoint.freeze(nn.Sequential(model.neighbour_layer(group)))
                                 for group in range(len(model.bounds))]
        self.aggregate_layers = [fixedpoint.freeze(network) for network in model.aggregate]
        # The first pass has no spatial context (zeros in training): its first layer without those inputs.
        self.anchor_layers = [without_last_inputs(layers, width)
                              for layers, width in zip(self.aggregate_layers, model.spatial_widths, strict=True)]
        self.id_type = np.uint8 if len(self.y_table_scales) <= 256 else np.int64

    @torch.inference_mode()
    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8. Returns the coded sections; options.refine runs SGA first."""
        check_refine(self.capabilities, options, "this model")
        if options.refine is None:
            return self.encode_analysed(*self.analyse(image, quality), quality)
        with torch.inference_mode(False):
            z_hat, y = refine(self, image, quality, options.refine, options.on_progress)
        return self.encode_coded(z_hat, self.code_latents(z_hat, y, quality))

    def encode_analysed(self, y: torch.Tensor, z: torch.Tensor, quality: float) -> dict[str, bytes]:
        z_hat = torch.round(z).to(torch.int64)
        return self.encode_coded(z_hat, self.code_latents(z_hat, y, quality))

    def encode_coded(self, z_hat: torch.Tensor, coded: CodedLatents) -> dict[str, bytes]:
        """The two sections: z_hat with the factorized tables, the passes' residuals as one stream."""
        coder = constriction.stream.stack.AnsCoder()
        for values, table_ids in reversed(coded.chunks):  # a stack: the first chunk decoded is pushed last
            self.y_coder.push(coder, values, table_ids)
        return {"hyperlatent": self.z_coder.encode(z_hat.numpy(), self.z_table_ids(z_hat.shape)),
                "latent": words_to_bytes(coder.get_compressed())}

    def code_latents(self, z_hat: torch.Tensor, y: torch.Tensor, quality: int) -> CodedLatents:
        """What the encoder codes for integer hyperlatents and continuous latents y: each pass's
        residuals (y rounded around the exact means), in decoding order."""
        chunks: list[tuple[np.ndarray, np.ndarray]] = []
        latents = y.to(torch.float64).flatten(2)[0]

        def round_latents(means: torch.Tensor, table_ids: np.ndarray, channels: tuple[int, int],
                          positions: torch.Tensor) -> torch.Tensor:
            residuals = torch.round(latents[channels[0] : channels[1], positions] - means).to(torch.int64)
            chunks.append((residuals.numpy().ravel(), table_ids))
            return residuals

        residuals, means = self.traverse(self.hyper_features(z_hat, quality), round_latents)
        return CodedLatents(chunks, residuals, means)

    def bits(self, z_hat: torch.Tensor, coded: CodedLatents) -> float:
        """Ideal code length of both sections (what SGA scores)."""
        z_bits = self.z_coder.tables.bits(z_hat.numpy().ravel(), self.z_table_ids(z_hat.shape))
        return z_bits + sum(self.y_coder.tables.bits(values, ids) for values, ids in coded.chunks)

    def entropy_decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_hat, residuals, exact means) of a file's two sections."""
        z_hat = self.decode_hyperlatents(sections, geometry, quality)
        coder = stack_from_bytes(sections["latent"])

        def pop_latents(means: torch.Tensor, table_ids: np.ndarray, channels: tuple[int, int],
                        positions: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(self.y_coder.pop(coder, table_ids)).reshape(means.shape)

        residuals, means = self.traverse(self.hyper_features(z_hat, quality), pop_latents)
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        return z_hat, residuals, means

    def hyper_features(self, z_hat: torch.Tensor, quality: int) -> torch.Tensor:
        """The fixed-point hyper-synthesis output of integer z_hat: (1, 2M, h, w) float64."""
        scaled = z_hat.to(torch.float64) * self.inv_gain_z_at(quality)[None, :, None, None]
        return HYPER_SYNTHESIS_TILES.run(lambda tile: fixedpoint.run(self.hyper_synthesis, tile), scaled,
                                         up=DOWNSAMPLING // LATENT_STRIDE)

    def traverse(self, features: torch.Tensor, choose: Choose) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the 2 × groups passes in decoding order; returns (residuals int64, exact means
        float64), both (1, M, h, w). `choose` supplies each pass's residuals."""
        m = self.model.config.latent_channels
        _, _, height, width = features.shape
        flat_features = features.flatten(2)[0]
        residuals = torch.zeros((m, height * width), dtype=torch.int64)
        means = torch.zeros((m, height * width), dtype=torch.float64)
        latents = torch.zeros((m, height * width), dtype=torch.float64)  # residuals + means, as decoded so far
        anchors = anchor_mask(height, width).flatten()
        for group, (start, stop) in enumerate(self.model.bounds):
            neighbours = self.banded_context(self.neighbour_layers[group], latents[:start], height, width)
            for first_pass in (True, False):
                positions = torch.nonzero(anchors if first_pass else ~anchors).flatten()
                decoded_anchors = None if first_pass else padded_latents(latents[start:stop], height, width)
                pass_means, pass_scales = self.pass_parameters(group, flat_features, latents, positions, neighbours,
                                                               decoded_anchors)
                table_ids = self.scale_index(pass_scales.numpy().ravel()).astype(self.id_type)
                pass_residuals = choose(pass_means, table_ids, (start, stop), positions)
                residuals[start:stop, positions] = pass_residuals
                means[start:stop, positions] = pass_means
                latents[start:stop, positions] = pass_residuals.to(torch.float64) + pass_means
        return residuals.reshape(1, m, height, width), means.reshape(1, m, height, width)

    def pass_parameters(self, group: int, features: torch.Tensor, latents: torch.Tensor, positions: torch.Tensor,
                        neighbours: torch.Tensor | None, anchors: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact (means, scales), each (c, N), of one group at one pass's positions, from the hyper
        features (2M, h·w) and the latents decoded so far (M, h·w). neighbours: the
        flat output of the group's convolution over the earlier groups (None for the first group);
        anchors: for the second pass, the group's latents (c, h + 2, w + 2) with its decoded anchors,
        zero elsewhere and around."""
        start, stop = self.model.bounds[group]
        m = self.model.config.latent_channels
        width = features.shape[-1] if anchors is None else anchors.shape[-1] - 2
        layers = self.anchor_layers[group] if anchors is None else self.aggregate_layers[group]
        out_means, out_scales = [], []
        for first in range(0, len(positions), POSITION_CHUNK):
            chunk = positions[first : first + POSITION_CHUNK]
            own_means, own_scales = features[start:stop, chunk], features[m + start : m + stop, chunk]
            parts = [own_means, own_scales, latents[:start, chunk]]
            if neighbours is not None:
                parts.append(neighbours[:, chunk])
            if anchors is not None:
                parts.append(cross_context(self.spatial_layers[group], anchors, chunk, width))
            correction = fixedpoint.run_pointwise(layers, torch.cat(parts))
            out_means.append(own_means + correction[: stop - start])
            out_scales.append(own_scales + correction[stop - start :])
        return torch.cat(out_means, dim=1), torch.cat(out_scales, dim=1)

    @staticmethod
    def banded_context(layers: list[fixedpoint.FixedLayer] | None, latents: torch.Tensor, height: int,
                       width: int) -> torch.Tensor | None:
        """(outputs, h·w): a 3×3 convolution of decoded latents (c, h·w), in bands of latent rows
        widened by its reach; zero padding at the edges, as in training. None for no layers."""
        if layers is None:
            return None
        latents = latents.reshape(1, -1, height, width)
        bands = []
        for top in range(0, height, BAND_ROWS):
            bottom = min(height, top + BAND_ROWS)
            low, high = max(0, top - SPATIAL_REACH), min(height, bottom + SPATIAL_REACH)
            context = fixedpoint.run(layers, latents[:, :, low:high])
            bands.append(context[0, :, top - low : bottom - low])
        return torch.cat(bands, dim=1).flatten(1)


# The offsets (row, column) of the four anchors next to a position decoded in the second pass.
CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def padded_latents(latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(c, h + 2, w + 2) float64: a group's decoded latents (c, h·w; zero where not decoded yet)
    with a border of zeros, as the input of a fixed-point layer."""
    grid = latents.reshape(-1, height, width)
    return fixedpoint.snap_activation(torch.nn.functional.pad(grid, (SPATIAL_REACH,) * 4))


def cross_context(layer: fixedpoint.FixedLayer, anchors: torch.Tensor, positions: torch.Tensor,
                  width: int) -> torch.Tensor:
    """(outputs, N): the 3×3 spatial convolution of a group's decoded anchors (c, h + 2, w + 2) at N
    second-pass positions (flat indices into h × w). There only the four cross taps meet anchors;
    the centre and the corners see positions that are still zero, so four gathered products give
    the convolution's exact sums at a quarter of its work (and only where they are needed)."""
    rows, cols = positions // width + SPATIAL_REACH, positions % width + SPATIAL_REACH
    flat, padded_width = anchors.flatten(1), width + 2 * SPATIAL_REACH
    weight = layer.float_weight
    out = layer.float_bias[:, None].expand(-1, len(positions))
    for dr, dc in CROSS:
        tap = weight[:, :, SPATIAL_REACH + dr, SPATIAL_REACH + dc]
        out = out + tap @ flat[:, (rows + dr) * padded_width + cols + dc]
    return fixedpoint.snap_activation_(out)


def without_last_inputs(layers: list[fixedpoint.FixedLayer], count: int) -> list[fixedpoint.FixedLayer]:
    """The same network for inputs whose last `count` channels are zero: exactly equal outputs,
    fewer multiplications."""
    first = layers[0]
    trimmed = dataclasses.replace(first, weight=first.weight[:, : first.weight.shape[1] - count].contiguous())
    return [trimmed, *layers[1:]]


def refine(codec: HyperCtxCodec, image: torch.Tensor, quality: int, options: RefineOptions,
           on_progress: ProgressCallback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SGA (models/sga.py) through the context model: the relaxed objective rounds every group's
    latents around the means that the (relaxed) earlier groups predict; candidates are scored by
    their ideal code length under the exact passes and the decoder's pixels. Returns the best
    (z_hat, latents y to code), never worse than the encoder's own."""
    model, q = codec.model, codec.quality_tensor(quality).cpu()
    height, width = image.shape[1:]
    target = unit_float(image.cpu())
    lam = codec.lambda_at(quality)
    y, z = codec.analyse(image, quality)

    def loss(rate_bits, x_hat: torch.Tensor) -> torch.Tensor:
        mse = torch.mean((x_hat[..., :height, :width] - target) ** 2)
        return rate_bits / (height * width) + lam * 255**2 * mse

    def exact(z_hat: torch.Tensor, latents: torch.Tensor) -> float:
        coded = codec.code_latents(z_hat, latents, quality)
        x_hat = codec.synthesise(coded.residuals, coded.means, quality, height, width)
        return float(loss(torch.tensor(codec.bits(z_hat, coded)), torch.round(x_hat * 255) / 255))

    best = {"z_hat": torch.round(z).to(torch.int64), "y": y}
    best["loss"] = exact(best["z_hat"], y)
    z_proxy, y_proxy = z.clone().requires_grad_(True), y.clone().requires_grad_(True)

    def relaxed_loss(tau: float, generator: torch.Generator) -> torch.Tensor:
        z_soft = sga_round(z_proxy, tau, generator)
        with precision.autocast(codec.compute, codec.device):
            features = model.hyper_features(z_soft, q)
        means, scales, y_hat = model.context_passes(y_proxy, features, lambda v: sga_round(v, tau, generator))
        rate = -(torch.log2(gaussian_likelihood(y_hat, means, scales)).sum()
                 + torch.log2(model.density.likelihood(z_soft)).sum())
        with precision.autocast(codec.compute, codec.device):
            x_hat = model.synthesis(y_hat.contiguous(memory_format=torch.channels_last), q)
        return loss(rate, x_hat)

    def score(step: int) -> float:
        with torch.no_grad():
            z_hat, latents = torch.round(z_proxy).to(torch.int64), y_proxy.detach().clone()
            candidate = exact(z_hat, latents)
        if candidate < best["loss"]:
            best.update(z_hat=z_hat, y=latents, loss=candidate)
        return best["loss"]

    anneal(model, [z_proxy, y_proxy], relaxed_loss, score, options, on_progress)
    return best["z_hat"], best["y"]
