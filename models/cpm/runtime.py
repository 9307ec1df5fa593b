"""`cpm` without torch (``models.runtime``): the symbols coded by ``coding.py`` as on the torch path,
the encoder and decoder on ONNX Runtime from the graphs exported from the torch modules."""
from __future__ import annotations

import functools

import numpy as np

from ..core.padding import cropped_pixels, padded_unit_image
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, check_refine
from ..runtime.graphs import Graph, parameters, synthesis_threads
from ..weight_reader import WeightArrays
from .coding import SymbolCoder
from .importance_coding import channel_mask
from .layout import DECODER_TILES, DOWNSAMPLING, ENCODER_PREFIXES, ENCODER_TILES, qualities
from .wavefront import FixedContext


class CpmRuntime:
    """Codes cpm files: decoding needs the decoder's graph; encoding also the encoder's graph and a
    weight file with the encoder's parameters (plain encoding: cpm has no refinement)."""

    section_names = ("latent",)
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(arrays=True)
    decode_graphs = ("synthesis",)
    encode_graphs = ("analysis",)

    def __init__(self, weights: WeightArrays, graphs: dict[str, bytes], threads: int | None = None):
        network = weights.network
        self.qualities = qualities(weights.config)
        self.channels = int(network["log_gain"].shape[1])
        self.centres = network["centres"].astype(np.float32)
        self.symbol_coder = SymbolCoder(FixedContext(network, self.qualities.count), self.channels)
        self.can_encode = "encoder.0.weight" in network and "analysis" in graphs
        self.network, self.graphs, self.threads = network, graphs, threads

    @functools.cached_property
    def synthesis(self) -> Graph:
        """The decoder graph, built on first use (an encoder never needs it), on synthesis_threads()
        whatever `threads` says."""
        return Graph(self.graphs["synthesis"], graph_parameters(self.network, "decoder."), synthesis_threads())

    @functools.cached_property
    def analysis(self) -> Graph:
        return Graph(self.graphs["analysis"], graph_parameters(self.network, "encoder."), self.threads)

    def row(self, name: str, quality: int) -> np.ndarray:
        return self.network[name][quality].astype(np.float32)

    def encode(self, image: np.ndarray, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8 -> the coded sections."""
        self.qualities.check(quality)
        check_refine(self.capabilities, options, "cpm")
        features = ENCODER_TILES.run(self.analysis, padded_unit_image(image, DOWNSAMPLING), down=DOWNSAMPLING)[0]
        logit = features[0] * self.row("importance_scale", quality) + self.row("importance_bias", quality)
        importance = self.channels / (1 + np.exp(-logit))
        counts = np.clip(np.ceil(importance), 0, self.channels).astype(np.int64)
        gained = features[1:] * np.exp(self.row("log_gain", quality))[:, None, None]
        symbols = np.argmin(np.abs(gained[..., None] - self.centres), axis=-1).astype(np.int64)
        return {"latent": self.symbol_coder.encode_symbols(counts, symbols, quality)}

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """[coded-channel counts (h, w), symbols (K, h, w) with -1 where not coded]."""
        self.qualities.check(quality)
        return list(self.symbol_coder.decode(sections["latent"], geometry.height, geometry.width, quality))

    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> np.ndarray:
        """The (3, height, width) uint8 reconstruction."""
        counts, symbols = self.decode_symbols(sections, geometry, quality)
        coded = self.centres[np.maximum(symbols, 0)] * channel_mask(counts, self.channels)
        latents = coded * np.exp(self.row("log_inverse_gain", quality))[:, None, None]
        x_hat = DECODER_TILES.run(self.synthesis, latents[None].astype(np.float32), up=DOWNSAMPLING)
        return cropped_pixels(x_hat, geometry.height, geometry.width)


def graph_parameters(network: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """A graph's parameters: those under `prefix` and the pixel statistics around the networks."""
    return {**parameters(network, prefix), **parameters(network, "pixel_")}


RUNTIMES = {"cpm": CpmRuntime}
ENCODER_PREFIXES = {"cpm": ENCODER_PREFIXES}
