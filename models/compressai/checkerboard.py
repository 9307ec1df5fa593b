"""ELIC's coding (``elic2022-official``): the hyperprior's, then 2 x groups passes (each channel
group's anchors, then the rest) whose Gaussian parameters are computed in lic's exact fixed point
(``models.runtime.fixed``), so that encoder and decoder agree on every machine. All passes share
one ANS stream, each pass's latents channel-major, in decoding order."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from bitstream.coders import InformationBudget, stack_from_bytes
from bitstream.container import FormatError

from ..runtime import fixed
from .coding import ImportedCoding, fixed_layers
from .layout import AGGREGATION_LAYERS, CHANNEL_CONTEXT_LAYERS, CHANNEL_CONTEXT_REACH, CONTEXT_KERNEL, elic_groups
from .wavefront import gathered_layer

REACH = CONTEXT_KERNEL // 2
# The spatial context's taps that can meet an anchor (odd row + column offset), row-major.
CHECKERBOARD_TAPS = tuple((dr, dc) for dr in range(-REACH, REACH + 1) for dc in range(-REACH, REACH + 1)
                          if (dr + dc) % 2)
BAND_ROWS = 64  # latent rows per band of the channel context (bounds its memory on large images)
POSITION_CHUNK = 16384  # positions per evaluation of a param aggregation

Choose = Callable[[np.ndarray, np.ndarray, tuple[int, int], np.ndarray], np.ndarray]
"""(means (c, P) float64 and exact, their table ids channel-major, the group's channels, the P flat
positions) -> the (c, P) int64 residuals: rounded by the encoder, popped by the decoder."""


def without_first_inputs(layers: list[fixed.FixedConv], count: int) -> list[fixed.FixedConv]:
    """The same network for inputs whose first `count` channels are zero (the anchors' spatial
    context): exactly the same outputs, fewer products."""
    first = layers[0]
    return [dataclasses.replace(first, weight=np.ascontiguousarray(first.weight[:, count:])), *layers[1:]]


def anchor_positions(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the anchors (row + column even) and of the other positions."""
    rows, cols = np.divmod(np.arange(height * width), width)
    anchors = (rows + cols) % 2 == 0
    return np.flatnonzero(anchors), np.flatnonzero(~anchors)


class GroupContext:
    """One quality's context model in fixed point, from a weight file's context.<q>.* arrays."""

    def __init__(self, network: dict[str, np.ndarray], quality: int, groups: tuple[int, ...]):
        prefix = f"context.{quality}"
        self.bounds = [(sum(groups[:k]), sum(groups[: k + 1])) for k in range(len(groups))]
        self.spatial = [gathered_layer(network[f"{prefix}.spatial_context.y{k}.weight"],
                                       network[f"{prefix}.spatial_context.y{k}.bias"], CHECKERBOARD_TAPS)
                        for k in range(len(groups))]
        self.channel = [None] + [fixed_layers(network, f"{prefix}.channel_context.y{k}", CHANNEL_CONTEXT_LAYERS)
                                 for k in range(1, len(groups))]
        self.aggregation = [fixed_layers(network, f"{prefix}.param_aggregation.y{k}", AGGREGATION_LAYERS)
                            for k in range(len(groups))]
        self.anchor_aggregation = [without_first_inputs(layers, 2 * size)
                                   for layers, size in zip(self.aggregation, groups, strict=True)]

    def channel_features(self, group: int, latents: np.ndarray) -> np.ndarray | None:
        """(2c, h, w): g_ch of the earlier groups' decoded latents (M, h, w), in bands of rows."""
        layers = self.channel[group]
        if layers is None:
            return None
        start = self.bounds[group][0]
        height = latents.shape[1]
        bands = []
        for top in range(0, height, BAND_ROWS):
            bottom = min(height, top + BAND_ROWS)
            low, high = max(0, top - CHANNEL_CONTEXT_REACH), min(height, bottom + CHANNEL_CONTEXT_REACH)
            bands.append(fixed.run(layers, latents[:start, low:high])[:, top - low : bottom - low])
        return np.concatenate(bands, axis=1)

    def spatial_features(self, group: int, padded: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(2c, P): the checkerboard convolution of the group's decoded anchors, padded (c, h + 4,
        w + 4) with zeros elsewhere, at P non-anchor positions."""
        patches = np.stack([padded[:, rows + REACH + dr, cols + REACH + dc] for dr, dc in CHECKERBOARD_TAPS], axis=1)
        return fixed.run_pointwise([self.spatial[group]], patches.reshape(-1, len(rows)), on_grid=True)

    def parameters(self, group: int, inputs: list[np.ndarray], first_pass: bool) -> tuple[np.ndarray, np.ndarray]:
        """(scales, means), each (c, P), from the aggregation's inputs in CompressAI's order."""
        layers = self.anchor_aggregation[group] if first_pass else self.aggregation[group]
        out = fixed.run_pointwise(layers, np.concatenate(inputs, axis=0))
        return np.split(out, 2, axis=0)


class ElicCoding(ImportedCoding):
    """ELIC (He et al. 2022), imported from CompressAI's `elic2022-official`."""

    def __init__(self, network: dict[str, np.ndarray], coding: dict[str, np.ndarray], config: dict, architecture):
        super().__init__(network, coding, config, architecture)
        self.contexts = [GroupContext(network, q, groups)
                         for q, groups in enumerate(elic_groups(config, self.widths))]

    def encode(self, y: np.ndarray, z_symbols: np.ndarray, quality: int) -> dict[str, bytes]:
        latents = np.asarray(y[0], dtype=np.float64)
        chunks: list[tuple[np.ndarray, np.ndarray]] = []

        def round_latents(means, table_ids, channels, positions):
            flat = latents[channels[0] : channels[1]].reshape(channels[1] - channels[0], -1)
            residuals = np.round(flat[:, positions] - means).astype(np.int64)
            chunks.append((residuals.ravel(), table_ids))
            return residuals

        self.traverse(z_symbols, quality, latents.shape[1:], round_latents)
        return {"hyperlatent": self.encode_hyperlatents(z_symbols, quality),
                "latent": self.y_coder.encode_chunks(chunks)}

    def entropy_decode(self, sections: dict[str, bytes], height: int, width: int, quality: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z_symbols = self.decode_hyperlatents(sections, height, width, quality)
        coder = stack_from_bytes(sections["latent"])
        budget = InformationBudget(coder)  # one for the whole stream, however many passes pop it

        def pop_latents(means, table_ids, channels, positions):
            return self.y_coder.pop(coder, table_ids, budget).reshape(means.shape)

        residuals, means = self.traverse(z_symbols, quality, self.latent_size(z_symbols), pop_latents)
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        return z_symbols, residuals[None], means[None]

    def traverse(self, z_symbols: np.ndarray, quality: int, size: tuple[int, int], choose: Choose
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Run the passes in decoding order; (residuals int64, exact means float64), each (M, h, w).
        `choose` supplies each pass's residuals."""
        height, width = size
        m = self.widths[quality][1]
        context = self.contexts[quality]
        hyper = self.hyper_parameters(z_symbols, quality).reshape(-1, height * width)
        residuals = np.zeros((m, height * width), dtype=np.int64)
        means = np.zeros((m, height * width))
        latents = np.zeros((m, height, width))  # residuals + means as decoded so far
        anchors, others = anchor_positions(height, width)
        for group, (start, stop) in enumerate(context.bounds):
            channel = context.channel_features(group, latents)
            channel = None if channel is None else channel.reshape(-1, height * width)
            for first_pass, positions in ((True, anchors), (False, others)):
                padded = None if first_pass else np.pad(
                    fixed.snap_array(latents[start:stop].copy()), ((0, 0), (REACH, REACH), (REACH, REACH)))
                for first in range(0, len(positions), POSITION_CHUNK):
                    chunk = positions[first : first + POSITION_CHUNK]
                    inputs = [] if first_pass else [context.spatial_features(group, padded, *np.divmod(chunk, width))]
                    inputs += ([] if channel is None else [channel[:, chunk]]) + [hyper[:, chunk]]
                    scales, pass_means = context.parameters(group, inputs, first_pass)
                    table_ids = self.scale_index(scales).astype(np.uint8).ravel()
                    pass_residuals = choose(pass_means, table_ids, (start, stop), chunk)
                    residuals[start:stop, chunk] = pass_residuals
                    means[start:stop, chunk] = pass_means
                    latents[start:stop].reshape(stop - start, -1)[:, chunk] = pass_residuals + pass_means
        return residuals.reshape(m, height, width), means.reshape(m, height, width)
