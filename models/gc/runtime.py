"""The gc models without torch (``models.runtime``): W coded by ``coding.py`` as on the torch path,
the encoder and the generator on ONNX Runtime from the graphs exported from the torch modules."""
from __future__ import annotations

import functools

import numpy as np

from ..core.padding import cropped_pixels, padded_unit_image
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, Qualities, check_refine
from ..runtime.graphs import Graph, parameters, synthesis_threads
from ..weight_reader import WeightArrays
from .coding import LatentCoder, context_layers, decode_sections, encode_sections, symbols_of, synthesis_input
from .layout import DOWNSAMPLING, ENCODER_TILES, GENERATOR_TILES, MIN_LATENT, MODELS
from .layout import ENCODER_PREFIXES as LAYOUT_ENCODER_PREFIXES

QUALITIES = Qualities(1, 0, "1 (one rate, set by the bottleneck)")


class GcRuntime:
    """Codes gc files: decoding needs the generator's graph; encoding also the encoder's graph and
    a weight file with the encoder's parameters. Selective models take EncodeOptions.preserve."""

    section_names = ("latent",)
    qualities = QUALITIES
    decode_graphs = ("synthesis",)
    encode_graphs = ("analysis",)

    def __init__(self, weights: WeightArrays, graphs: dict[str, bytes], threads: int | None = None):
        network = weights.network
        self.channels = int(weights.config["bottleneck"])
        self.selective = bool(weights.config.get("selective", False))
        self.optional_sections = ("preserve",) if self.selective else ()
        self.capabilities = Capabilities(selective=self.selective, arrays=True)
        self.latent_coder = LatentCoder(context_layers(network))
        self.can_encode = "encoder.0.weight" in network and "analysis" in graphs
        self.network, self.graphs, self.threads = network, graphs, threads

    @functools.cached_property
    def synthesis(self) -> Graph:
        """The generator graph, built on first use (an encoder never needs it), on synthesis_threads()
        whatever `threads` says."""
        return Graph(self.graphs["synthesis"], parameters(self.network, "generator."), synthesis_threads())

    @functools.cached_property
    def analysis(self) -> Graph:
        return Graph(self.graphs["analysis"], parameters(self.network, "encoder."), self.threads)

    def encode(self, image: np.ndarray, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8 -> the coded sections."""
        self.qualities.check(quality)
        check_refine(self.capabilities, options, "the torch-free encoder (use torch: --engine torch)")
        x = padded_unit_image(image, DOWNSAMPLING, MIN_LATENT)
        features = ENCODER_TILES.run(self.analysis, x, down=DOWNSAMPLING)
        return encode_sections(self.latent_coder, symbols_of(features), options.preserve, self.selective)

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        self.qualities.check(quality)
        return decode_sections(self.latent_coder, sections, self.channels, geometry.height, geometry.width)

    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> np.ndarray:
        """The (3, height, width) uint8 reconstruction."""
        symbols, *kept = self.decode_symbols(sections, geometry, quality)
        w_hat = synthesis_input(symbols, kept[0] if kept else None, self.selective)
        x_hat = GENERATOR_TILES.run(self.synthesis, w_hat, up=DOWNSAMPLING)
        return cropped_pixels(x_hat, geometry.height, geometry.width)


RUNTIMES = {name: GcRuntime for name in MODELS}
ENCODER_PREFIXES = {name: LAYOUT_ENCODER_PREFIXES for name in MODELS}
