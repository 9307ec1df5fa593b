"""`hyper` and `hyper-ctx` decoding without torch (``models.runtime``): the same symbols as their
torch codecs (``codec.py``, ``context_codec.py``), bit for bit, and pixels within float rounding.

The fixed-point networks below are the runtime's own (numpy, ``models.runtime.fixed``); the test
suite checks them layer by layer against ``fixedpoint.freeze`` of the torch modules. The
synthesis runs the graph exported from the torch module (``models/weights/graphs/``).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from bitstream.coders import InformationBudget, TableCoder, stack_from_bytes
from bitstream.container import QUALITY_STEPS, FormatError

from ..core.padding import cropped_pixels, padded_unit_image
from ..core.tiles import Tiles, ceil_div
from ..defaults import SYNTHESIS_THREADS
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, check_refine
from ..runtime import fixed
from ..runtime.graphs import Graph, parameters
from ..runtime.tables import channel_table_ids, tables_from_arrays
from ..weight_reader import WeightArrays
from .layout import (
    ANALYSIS_TILES,
    DOWNSAMPLING,
    GAIN_FRAC_BITS,
    HYPER_ANALYSIS_TILES,
    HYPER_SYNTHESIS_TILES,
    LATENT_STRIDE,
    SYNTHESIS_TILES,
    ladder_qualities,
)
from .layout import ENCODER_PREFIXES as LAYOUT_ENCODER_PREFIXES

SPATIAL_REACH = 1
CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # the anchors next to a second-pass position
POSITION_CHUNK = 16384
NEIGHBOUR_TILES = Tiles(core=64, margin=SPATIAL_REACH)  # bounds the memory of the 3x3 channel context
# The synthesis on ONNX Runtime keeps more full-resolution intermediates alive than the torch path's
# in-place decoder: smaller tiles than SYNTHESIS_TILES (a Kodak photo is still one tile).
RUNTIME_SYNTHESIS_TILES = Tiles(core=48, margin=SYNTHESIS_TILES.margin)


layer = fixed.layer_from


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


class HyperRuntime:
    """Codes `hyper` files: the hyperprior's coding with the transforms' graphs (decoding needs
    only the synthesis; encoding, which also needs the analysis graphs and a weight file with the
    encoder's parameters, is plain: no refinement)."""

    section_names = ("hyperlatent", "latent")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(arrays=True)
    decode_graphs = ("synthesis",)
    encode_graphs = ("analysis", "hyper_analysis")

    def __init__(self, weights: WeightArrays, graphs: dict[str, bytes], threads: int | None = None):
        network, coding = weights.network, weights.coding
        self.config = weights.config
        self.latent_channels = int(self.config["latent_channels"])
        lambdas = [float(v) for v in network["lambdas"]] if "lambdas" in network else self.config["lambdas"]
        self.qualities = ladder_qualities(lambdas, continuous=True)
        self.y_table_scales = coding["y_table_scales"].astype(np.float64)
        self.scale_index = fixed.TableIndex(self.y_table_scales)
        self.id_type = np.uint8 if len(self.y_table_scales) <= 256 else np.int64
        self.inv_gain_z_grid = coding["inv_gain_z"].astype(np.int64)
        self.log_inv_gain_y = network["log_inv_gain_y"].astype(np.float64)
        self.hyper_synthesis = hyper_synthesis_layers(network)
        self.z_coder = TableCoder(tables_from_arrays(coding, "z_tables"))
        self.y_coder = TableCoder(tables_from_arrays(coding, "y_tables"))
        # The synthesis always runs on SYNTHESIS_THREADS, whatever `threads` says, as on the torch
        # path: the pixels must not depend on the thread count.
        self.synthesis = Graph(graphs["synthesis"], parameters(network, "g_s."), SYNTHESIS_THREADS)
        self.can_encode = "g_a.0.weight" in network and {"analysis", "hyper_analysis"} <= graphs.keys()
        self.network, self.graphs, self.threads = network, graphs, threads  # the encoder's, built on first use

    @functools.cached_property
    def analysis(self) -> Graph:
        return Graph(self.graphs["analysis"], parameters(self.network, "g_a."), self.threads)

    @functools.cached_property
    def hyper_analysis(self) -> Graph:
        return Graph(self.graphs["hyper_analysis"], parameters(self.network, "h_a."), self.threads)

    # -- encoding (plain) -------------------------------------------------------------------------
    def encode(self, image: np.ndarray, quality: float, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8 -> the coded sections."""
        check_refine(self.capabilities, options, "the torch-free encoder (use torch: --engine torch)")
        self.qualities.check(quality)
        y, z = self.analyse(image, quality)
        return self.encode_analysed(y, np.round(z).astype(np.int64), quality)

    def analyse(self, image: np.ndarray, quality: float) -> tuple[np.ndarray, np.ndarray]:
        """(y, z): gain-scaled latents and hyperlatents, float64, as the torch codec's analyse."""
        features = ANALYSIS_TILES.run(self.analysis, padded_unit_image(image, DOWNSAMPLING), down=LATENT_STRIDE)
        gain_y, gain_z = (np.exp(interpolated(self.network[name].astype(np.float64), quality))[None, :, None, None]
                          for name in ("log_gain_y", "log_gain_z"))
        y = features.astype(np.float64) * gain_y
        z = HYPER_ANALYSIS_TILES.run(self.hyper_analysis, y.astype(np.float32), down=DOWNSAMPLING // LATENT_STRIDE)
        return y, z.astype(np.float64) * gain_z

    def encode_analysed(self, y: np.ndarray, z_hat: np.ndarray, quality: float) -> dict[str, bytes]:
        means, scales = np.split(self.hyper_features(z_hat, quality), 2, axis=1)
        table_ids = self.scale_index(scales).astype(self.id_type).ravel()
        residuals = np.round(y - means).astype(np.int64)
        return {"hyperlatent": self.z_coder.encode(z_hat, self.z_table_ids(z_hat.shape)),
                "latent": self.y_coder.encode(residuals, table_ids)}

    @staticmethod
    def z_table_ids(shape: tuple[int, ...]) -> np.ndarray:
        return channel_table_ids(shape)

    # -- what the torch codec computes, in numpy ---------------------------------------------
    def inv_gain_z_at(self, quality: float) -> np.ndarray:
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
        scaled = z_hat.astype(np.float64) * self.inv_gain_z_at(quality)[None, :, None, None]
        return HYPER_SYNTHESIS_TILES.run(lambda tile: fixed.run(self.hyper_synthesis, tile[0])[None], scaled,
                                         up=DOWNSAMPLING // LATENT_STRIDE)

    def decode_hyperlatents(self, sections: dict[str, bytes], geometry: Geometry, quality: float) -> np.ndarray:
        self.qualities.check(quality)
        shape = (1, len(self.z_coder.tables), ceil_div(geometry.height, DOWNSAMPLING),
                 ceil_div(geometry.width, DOWNSAMPLING))
        return self.z_coder.decode(sections["hyperlatent"], self.z_table_ids(shape)).reshape(shape)

    def entropy_decode(self, sections: dict[str, bytes], geometry: Geometry, quality: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(z_hat, residuals, exact means) of a file's two sections."""
        z_hat = self.decode_hyperlatents(sections, geometry, quality)
        features = self.hyper_features(z_hat, quality)
        means, scales = np.split(features, 2, axis=1)
        table_ids = self.scale_index(scales).astype(self.id_type).ravel()
        residuals = self.y_coder.decode(sections["latent"], table_ids).reshape(means.shape)
        return z_hat, residuals, means

    # -- the ImageCodec methods the decoder calls ---------------------------------------------
    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: float) -> list[np.ndarray]:
        z_hat, residuals, _ = self.entropy_decode(sections, geometry, quality)
        return [z_hat, residuals]

    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: float) -> np.ndarray:
        """The (3, height, width) uint8 reconstruction."""
        _, residuals, means = self.entropy_decode(sections, geometry, quality)
        return self.synthesise(residuals, means, quality, geometry.height, geometry.width)

    def synthesise(self, residuals: np.ndarray, means: np.ndarray, quality: float, height: int,
                   width: int) -> np.ndarray:
        y_hat = (residuals + means) * self.inv_gain_y_at(quality)[None, :, None, None]
        x_hat = RUNTIME_SYNTHESIS_TILES.run(self.synthesis, y_hat.astype(np.float32), up=LATENT_STRIDE)
        return cropped_pixels(x_hat, height, width)


class HyperCtxRuntime(HyperRuntime):
    """Decodes `hyper-ctx` files: the checkerboard passes of its context model in fixed point."""

    def __init__(self, weights: WeightArrays, graphs: dict[str, bytes], threads: int | None = None):
        super().__init__(weights, graphs, threads)
        network, config = weights.network, weights.config
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

    def entropy_decode(self, sections: dict[str, bytes], geometry: Geometry, quality: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z_hat = self.decode_hyperlatents(sections, geometry, quality)
        features = self.hyper_features(z_hat, quality)[0]
        coder = stack_from_bytes(sections["latent"])
        budget = InformationBudget(coder)

        def pop_latents(means, table_ids, channels, positions):
            return self.y_coder.pop(coder, table_ids, budget).reshape(means.shape)

        residuals, means = self.traverse(features, pop_latents)
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        return z_hat, residuals, means

    def encode_analysed(self, y: np.ndarray, z_hat: np.ndarray, quality: float) -> dict[str, bytes]:
        latents = y[0].reshape(y.shape[1], -1)
        chunks = []

        def round_latents(means, table_ids, channels, positions):
            residuals = np.round(latents[channels[0] : channels[1], positions] - means).astype(np.int64)
            chunks.append((residuals.ravel(), table_ids))
            return residuals

        self.traverse(self.hyper_features(z_hat, quality)[0], round_latents)
        return {"hyperlatent": self.z_coder.encode(z_hat, self.z_table_ids(z_hat.shape)),
                "latent": self.y_coder.encode_chunks(chunks)}

    def traverse(self, features: np.ndarray, choose) -> tuple[np.ndarray, np.ndarray]:
        """The 2 x groups passes in decoding order (context_codec.HyperCtxCodec.traverse); `choose`
        (means, table ids, channels, positions) supplies each chunk's residuals."""
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
                        parts.append(self.cross_context(group, padded, chunk, width))
                    layers = self.aggregate[group] if padded is not None else self.anchor_aggregate[group]
                    correction = fixed.run_pointwise(layers, np.concatenate(parts))
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

    def cross_context(self, group: int, padded: np.ndarray, positions: np.ndarray, width: int) -> np.ndarray:
        """The spatial convolution at second-pass positions: only its four cross taps meet anchors."""
        conv = self.spatial[group]
        rows, cols = positions // width + SPATIAL_REACH, positions % width + SPATIAL_REACH
        flat, padded_width = padded.reshape(padded.shape[0], -1), width + 2 * SPATIAL_REACH
        weight = conv.weight * 2.0**-fixed.WEIGHT_FRAC_BITS
        out = np.repeat(conv.float_bias, len(positions), axis=1)
        for dr, dc in CROSS:
            out = out + weight[:, :, SPATIAL_REACH + dr, SPATIAL_REACH + dc] @ flat[:, (rows + dr) * padded_width + cols
                                                                                    + dc]
        return fixed.snap_array(out)


RUNTIMES = {"hyper": HyperRuntime, "hyper-ctx": HyperCtxRuntime, "hyper-ctx-graphics": HyperCtxRuntime}
ENCODER_PREFIXES = {name: LAYOUT_ENCODER_PREFIXES for name in RUNTIMES}
