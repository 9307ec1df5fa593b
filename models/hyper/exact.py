"""The exact part of `hyper`'s and `hyper-ctx`'s coding, in numpy: everything that selects a
probability table (the fixed-point hyper-synthesis, the inverse hyperlatent gains, the
checkerboard passes of the context model) and the table coders. One implementation: the torch
codecs (``codec.py``, ``context_codec.py``) and the torch-free runtime (``runtime.py``) both code
through it, built from a weight file's arrays or from a torch model's state."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bitstream.coders import InformationBudget, TableCoder, stack_from_bytes
from bitstream.container import QUALITY_STEPS, FormatError

from ..core.tiles import Tiles, ceil_div
from ..runtime import fixed
from ..runtime.tables import channel_table_ids, tables_from_arrays
from .layout import DOWNSAMPLING, GAIN_FRAC_BITS, HYPER_SYNTHESIS_TILES, LATENT_STRIDE, ladder_qualities

SPATIAL_REACH = 1
CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # the anchors next to a second-pass position
POSITION_CHUNK = 16384  # latent positions per evaluation of a parameter network (bounds its memory)
NEIGHBOUR_TILES = Tiles(core=64, margin=SPATIAL_REACH)  # bounds the memory of the 3x3 channel context

layer = fixed.layer_from

Choose = Callable[[np.ndarray, np.ndarray, tuple[int, int], np.ndarray], np.ndarray]
"""(means (c, N) of one pass's latents, float64 and exact; their table ids, channel-major; the
group's channels (start, stop); the pass's N flat positions) -> the (c, N) integer residuals: the
encoder rounds its latents, the decoder pops them from the stream."""


def hyper_synthesis_layers(network: dict[str, np.ndarray]) -> list[fixed.FixedConv]:
    """h_s: two 5x5 transposed convolutions (stride 2) with ReLUs, then a 3x3 convolution."""
    up = {"transposed": True, "stride": 2, "padding": 2, "output_padding": 1, "relu": True}
    return [layer(network, "h_s.0", **up), layer(network, "h_s.2", **up), layer(network, "h_s.4", padding=1)]


def interpolated(table: np.ndarray, quality: float) -> np.ndarray:
    """A row of a (Q, C) table at a quality: whole ones index it, others mix the two rows around."""
    if float(quality).is_integer():
        return table[int(quality)]
    low = min(math.floor(quality), table.shape[0] - 2)
    fraction = quality - low
    return table[low] * (1 - fraction) + table[low + 1] * fraction


def lambdas_of(network: dict[str, np.ndarray], config: dict) -> list[float]:
    """The quality ladder's lambdas: the network's buffer, or (older files) the configuration's."""
    return [float(v) for v in network["lambdas"]] if "lambdas" in network else list(config["lambdas"])


@dataclass
class CodedLatents:
    """What the context model's encoder codes for one image."""

    chunks: list[tuple[np.ndarray, np.ndarray]]  # (residuals, table ids) of each pass, in decoding order
    residuals: np.ndarray  # (1, M, h, w) int64
    means: np.ndarray  # (1, M, h, w) float64, exact


class HyperCoding:
    """`hyper`'s exact coding: hyperlatents with one factorized table per channel, latents as
    round(y - mean) under the Gaussian table that the fixed-point hyper-synthesis selects.

    network, coding: a weight file's arrays (or a torch model's state as arrays)."""

    def __init__(self, network: dict[str, np.ndarray], coding: dict[str, np.ndarray], config: dict):
        self.qualities = ladder_qualities(lambdas_of(network, config), continuous=True)
        self.latent_channels = int(network["log_inv_gain_y"].shape[1])
        self.y_table_scales = np.asarray(coding["y_table_scales"], dtype=np.float64)
        self.scale_index = fixed.TableIndex(self.y_table_scales)
        self.id_type = np.uint8 if len(self.y_table_scales) <= 256 else np.int64
        self.inv_gain_z_grid = np.asarray(coding["inv_gain_z"]).astype(np.int64)
        self.log_inv_gain_y = network["log_inv_gain_y"].astype(np.float64)
        self.hyper_synthesis = hyper_synthesis_layers(network)
        self.z_coder = TableCoder(tables_from_arrays(coding, "z_tables"))
        self.y_coder = TableCoder(tables_from_arrays(coding, "y_tables"))
        if len(self.y_coder.tables) != len(self.y_table_scales):
            raise ValueError("coding tables do not match the network")

    # -- the values that select tables -------------------------------------------------------
    def inv_gain_z_at(self, quality: float) -> np.ndarray:
        """(N,) float64: the inverse hyperlatent gains on the 2^-12 grid that the fixed-point
        hyper-synthesis takes; between two trained qualities, their geometric interpolation in
        exact decimal arithmetic, so that every machine selects the same tables."""
        if float(quality).is_integer():
            grid = self.inv_gain_z_grid[int(quality)]
        else:
            low = min(int(quality), self.qualities.count - 2)
            grid = fixed.geometric_interpolation(self.inv_gain_z_grid[low], self.inv_gain_z_grid[low + 1],
                                                 round((quality - low) * QUALITY_STEPS), QUALITY_STEPS)
        return grid.astype(np.float64) * 2.0**-GAIN_FRAC_BITS

    def inv_gain_y_at(self, quality: float) -> np.ndarray:
        """exp of the log inverse gains, interpolated linearly between two trained qualities."""
        return np.exp(interpolated(self.log_inv_gain_y, quality))

    def hyper_features(self, z_hat: np.ndarray, quality: float) -> np.ndarray:
        """(1, 2M, h, w): the fixed-point hyper-synthesis of integer hyperlatents (1, N, h/4, w/4)."""
        scaled = np.asarray(z_hat, dtype=np.float64) * self.inv_gain_z_at(quality)[None, :, None, None]
        return HYPER_SYNTHESIS_TILES.run(lambda tile: fixed.run(self.hyper_synthesis, tile[0])[None], scaled,
                                         up=DOWNSAMPLING // LATENT_STRIDE)

    def latent_distribution(self, z_hat: np.ndarray, quality: float) -> tuple[np.ndarray, np.ndarray]:
        """Bit-exact means (1, M, h, w) float64 and the flat scale-table ids of y given integer z_hat."""
        means, scales = np.split(self.hyper_features(z_hat, quality), 2, axis=1)
        return means, self.scale_index(scales).astype(self.id_type).ravel()

    @staticmethod
    def z_table_ids(shape: tuple[int, ...]) -> np.ndarray:
        """The table of each hyperlatent of a (1, N, h, w) array: one factorized density per channel."""
        return channel_table_ids(shape)

    # -- coding --------------------------------------------------------------------------------
    def encode(self, y: np.ndarray, z_hat: np.ndarray, quality: float) -> dict[str, bytes]:
        """The two sections of gain-scaled latents y (1, M, h, w) and integer hyperlatents."""
        means, table_ids = self.latent_distribution(z_hat, quality)
        return self.encode_residuals(z_hat, np.round(np.asarray(y, dtype=np.float64) - means).astype(np.int64),
                                     table_ids)

    def encode_residuals(self, z_hat: np.ndarray, residuals: np.ndarray, table_ids: np.ndarray) -> dict[str, bytes]:
        return {"hyperlatent": self.z_coder.encode(np.asarray(z_hat), self.z_table_ids(z_hat.shape)),
                "latent": self.y_coder.encode(np.asarray(residuals), table_ids)}

    def decode_hyperlatents(self, sections: dict[str, bytes], height: int, width: int) -> np.ndarray:
        """The integer hyperlatents (1, N, h, w) of a file's `hyperlatent` section."""
        shape = (1, len(self.z_coder.tables), ceil_div(height, DOWNSAMPLING), ceil_div(width, DOWNSAMPLING))
        return self.z_coder.decode(sections["hyperlatent"], self.z_table_ids(shape)).reshape(shape)

    def entropy_decode(self, sections: dict[str, bytes], height: int, width: int, quality: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(z_hat, residuals, exact means) of a file's two sections."""
        z_hat = self.decode_hyperlatents(sections, height, width)
        means, table_ids = self.latent_distribution(z_hat, quality)
        residuals = self.y_coder.decode(sections["latent"], table_ids).reshape(means.shape)
        return z_hat, residuals, means


class HyperCtxCoding(HyperCoding):
    """`hyper-ctx`'s exact coding: `latent` is one ANS stream of 2 × groups chunks, each one pass
    of the checkerboard context model (a group's channels at its anchor, then its other
    positions), channel-major, in fixed point."""

    def __init__(self, network: dict[str, np.ndarray], coding: dict[str, np.ndarray], config: dict):
        super().__init__(network, coding, config)
        groups = config["groups"]
        self.bounds = [(sum(groups[:g]), sum(groups[: g + 1])) for g in range(len(groups))]
        conv3 = {"padding": SPATIAL_REACH}
        self.spatial = [layer(network, f"spatial.{g}", **conv3) for g in range(len(groups))]
        self.neighbours = [None] + [layer(network, f"neighbours.{g - 1}", **conv3) if f"neighbours.{g - 1}.weight"
                                    in network else None for g in range(1, len(groups))]
        self.aggregate = [[layer(network, f"aggregate.{g}.{i}", relu=i < 4) for i in (0, 2, 4)]
                          for g in range(len(groups))]
        # The first pass has no spatial context (zeros in training): its first layer without those inputs.
        self.anchor_aggregate = []
        for g, layers in enumerate(self.aggregate):
            width = self.spatial[g].weight.shape[0]
            first = layers[0]
            trimmed = fixed.FixedConv(first.weight[:, : first.weight.shape[1] - width], first.bias, relu=True)
            self.anchor_aggregate.append([trimmed, *layers[1:]])

    def code(self, y: np.ndarray, z_hat: np.ndarray, quality: float) -> CodedLatents:
        """What the encoder codes for gain-scaled latents y and integer hyperlatents: each pass's
        residuals (y rounded around the exact means), in decoding order."""
        latents = np.asarray(y, dtype=np.float64)[0].reshape(y.shape[1], -1)
        chunks = []

        def round_latents(means, table_ids, channels, positions):
            residuals = np.round(latents[channels[0] : channels[1], positions] - means).astype(np.int64)
            chunks.append((residuals.ravel(), table_ids))
            return residuals

        residuals, means = self.traverse(self.hyper_features(z_hat, quality)[0], round_latents)
        return CodedLatents(chunks, residuals, means)

    def encode(self, y: np.ndarray, z_hat: np.ndarray, quality: float) -> dict[str, bytes]:
        return self.encode_coded(z_hat, self.code(y, z_hat, quality))

    def encode_coded(self, z_hat: np.ndarray, coded: CodedLatents) -> dict[str, bytes]:
        """The two sections: z_hat with the factorized tables, the passes' residuals as one stream."""
        return {"hyperlatent": self.z_coder.encode(np.asarray(z_hat), self.z_table_ids(z_hat.shape)),
                "latent": self.y_coder.encode_chunks(coded.chunks)}

    def bits(self, z_hat: np.ndarray, coded: CodedLatents) -> float:
        """Ideal code length of both sections (what SGA scores)."""
        z_bits = self.z_coder.tables.bits(np.asarray(z_hat).ravel(), self.z_table_ids(z_hat.shape))
        return z_bits + sum(self.y_coder.tables.bits(values, ids) for values, ids in coded.chunks)

    def entropy_decode(self, sections: dict[str, bytes], height: int, width: int, quality: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z_hat = self.decode_hyperlatents(sections, height, width)
        coder = stack_from_bytes(sections["latent"])
        budget = InformationBudget(coder)  # one for the whole stream, however many passes pop it

        def pop_latents(means, table_ids, channels, positions):
            return self.y_coder.pop(coder, table_ids, budget).reshape(means.shape)

        residuals, means = self.traverse(self.hyper_features(z_hat, quality)[0], pop_latents)
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        return z_hat, residuals, means

    def traverse(self, features: np.ndarray, choose: Choose) -> tuple[np.ndarray, np.ndarray]:
        """The 2 x groups passes in decoding order over the hyper features (2M, h, w); `choose`
        supplies each chunk's residuals. Returns (residuals int64, exact means float64), each
        (1, M, h, w)."""
        m = self.latent_channels
        _, height, width = features.shape
        flat_features = features.reshape(2 * m, -1)
        residuals = np.zeros((m, height * width), dtype=np.int64)
        means = np.zeros((m, height * width))
        latents = np.zeros((m, height * width))
        rows, cols = np.divmod(np.arange(height * width), width)
        anchors = (rows + cols) % 2 == 0
        for group, (start, stop) in enumerate(self.bounds):
            neighbours = self.neighbour_features(group, latents[:start], height, width)
            for first_pass in (True, False):
                positions = np.flatnonzero(anchors if first_pass else ~anchors)
                padded = None if first_pass else fixed.snap_array(np.pad(
                    latents[start:stop].reshape(-1, height, width), ((0, 0), (1, 1), (1, 1))))
                for first in range(0, len(positions), POSITION_CHUNK):
                    chunk = positions[first : first + POSITION_CHUNK]
                    parts = [flat_features[start:stop, chunk], flat_features[m + start : m + stop, chunk],
                             latents[:start, chunk]]
                    if neighbours is not None:
                        parts.append(neighbours[:, chunk])
                    if padded is not None:
                        parts.append(cross_context(self.spatial[group], padded, chunk, width))
                    layers = self.aggregate[group] if padded is not None else self.anchor_aggregate[group]
                    correction = fixed.run_pointwise(layers, np.concatenate(parts), on_grid=True)
                    pass_means = parts[0] + correction[: stop - start]
                    pass_scales = parts[1] + correction[stop - start :]
                    table_ids = self.scale_index(pass_scales.ravel()).astype(self.id_type)
                    pass_residuals = choose(pass_means, table_ids, (start, stop), chunk)
                    residuals[start:stop, chunk] = pass_residuals
                    means[start:stop, chunk] = pass_means
                    latents[start:stop, chunk] = pass_residuals + pass_means
        return residuals.reshape(1, m, height, width), means.reshape(1, m, height, width)

    def neighbour_features(self, group: int, latents: np.ndarray, height: int, width: int) -> np.ndarray | None:
        """(outputs, h·w): the group's 3x3 convolution of the earlier groups (None for none)."""
        conv = self.neighbours[group]
        if conv is None:
            return None
        grid = latents.reshape(1, -1, height, width)
        out = NEIGHBOUR_TILES.run(lambda tile: fixed.run([conv], tile[0])[None], grid)
        return out.reshape(conv.weight.shape[0], -1)


def cross_context(conv: fixed.FixedConv, padded: np.ndarray, positions: np.ndarray, width: int) -> np.ndarray:
    """(outputs, N): the 3×3 spatial convolution of a group's decoded anchors (c, h + 2, w + 2) at N
    second-pass positions (flat indices into h × w). There only the four cross taps meet anchors;
    the centre and the corners see positions that are still zero, so four gathered products give
    the convolution's exact sums at a quarter of its work (and only where they are needed)."""
    rows, cols = positions // width + SPATIAL_REACH, positions % width + SPATIAL_REACH
    flat, padded_width = padded.reshape(padded.shape[0], -1), width + 2 * SPATIAL_REACH
    weight = conv.weight * 2.0**-fixed.WEIGHT_FRAC_BITS
    out = np.repeat(conv.float_bias, len(positions), axis=1)
    for dr, dc in CROSS:
        taps = flat[:, (rows + dr) * padded_width + cols + dc]
        out = out + fixed.exact_matmul(weight[:, :, SPATIAL_REACH + dr, SPATIAL_REACH + dc], taps)
    return fixed.snap_array(out)
