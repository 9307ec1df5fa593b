"""`hyper-ctx`'s codec: the checkerboard passes of the channel-conditional context model in fixed
point, and SGA refinement through them."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bitstream.coders import InformationBudget, stack_from_bytes
from bitstream.container import FormatError

from ..core import fixedpoint, precision
from ..core.annealing import anneal, sga_round
from ..core.entropy import gaussian_likelihood
from ..core.geometry import unit_float
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, ProgressCallback, RefineOptions, check_refine
from .coding import HyperpriorCoding
from .context import BAND_ROWS, SPATIAL_REACH, ContextHyperprior, anchor_mask
from .network import (
    DOWNSAMPLING,
    HYPER_SYNTHESIS_TILES,
    LATENT_STRIDE,
)


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
        return {"hyperlatent": self.z_coder.encode(z_hat.numpy(), self.z_table_ids(z_hat.shape)),
                "latent": self.y_coder.encode_chunks(coded.chunks)}

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
        budget = InformationBudget(coder)  # one for the whole stream, however many passes pop it

        def pop_latents(means: torch.Tensor, table_ids: np.ndarray, channels: tuple[int, int],
                        positions: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(self.y_coder.pop(coder, table_ids, budget)).reshape(means.shape)

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
    """SGA (models/hyper/sga.py) through the context model: the relaxed objective rounds every group's
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
