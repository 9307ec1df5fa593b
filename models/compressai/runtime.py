"""Imported CompressAI models without torch (``models.runtime``): the exact coding of ``coding.py``
(the torch codec codes through it too) with the transforms on ONNX Runtime. The graphs
(``models/weights/graphs/<architecture>.<part>.onnx``) take parameters of any width, so one graph
per architecture serves every checkpoint `lic import` converts; each quality binds its own network's
parameters (``g_s.<quality>.*`` as ``g_s.*``)."""
from __future__ import annotations

import numpy as np

from ..core.padding import cropped_pixels, padded_unit_image
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, check_refine
from ..runtime.graphs import Graph, synthesis_threads
from ..weight_reader import WeightArrays
from .coding import coding_class
from .layout import (
    ANALYSIS_TILES,
    ARCHITECTURES,
    DOWNSAMPLING,
    HYPER_ANALYSIS_TILES,
    LATENT_STRIDE,
    SYNTHESIS_TILES,
)
from .layout import (
    ENCODER_PREFIXES as LAYOUT_ENCODER_PREFIXES,
)

PREFIXES = {"synthesis": "g_s.", "analysis": "g_a.", "hyper_analysis": "h_a."}  # each graph's parameters


def quality_parameters(network: dict[str, np.ndarray], prefix: str, quality: int) -> dict[str, np.ndarray]:
    """The parameters of one quality's network under `prefix`, named as in the graph (g_s.3.0.weight
    as g_s.0.weight)."""
    own = f"{prefix}{quality}."
    return {prefix + name[len(own):]: array for name, array in network.items()
            if name.startswith(own) and not name.endswith(".num_batches_tracked")}


class ImportedRuntime:
    """Codes the files of an imported model (plain encoding: no refinement)."""

    section_names = ("hyperlatent", "latent")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(arrays=True)
    decode_graphs = ("synthesis",)
    encode_graphs = ("analysis", "hyper_analysis")

    def __init__(self, weights: WeightArrays, graphs: dict[str, bytes], threads: int | None = None):
        architecture = ARCHITECTURES[weights.model]
        self.exact = coding_class(architecture)(weights.network, weights.coding, weights.config, architecture)
        self.qualities = self.exact.qualities
        self.can_encode = any(name.startswith("g_a.") for name in weights.network) and \
            set(self.encode_graphs) <= graphs.keys()
        self.network, self.graphs, self.threads = weights.network, graphs, threads
        self._built: dict[tuple[str, int], Graph] = {}

    def graph(self, part: str, quality: int) -> Graph:
        """One quality's graph of `part`, built on first use (the synthesis on synthesis_threads())."""
        key = (part, quality)
        if key not in self._built:
            threads = synthesis_threads() if part == "synthesis" else self.threads
            self._built[key] = Graph(self.graphs[part], quality_parameters(self.network, PREFIXES[part], quality),
                                     threads, any_widths=True)
        return self._built[key]

    def check_graphs(self, encoding: bool = False) -> None:
        """Build the first quality's graphs that decoding (encoding) needs now (GraphMismatch where
        they do not take these weights)."""
        for part in self.encode_graphs if encoding else self.decode_graphs:
            self.graph(part, 0)

    def encode(self, image: np.ndarray, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8 -> the coded sections at network `quality`."""
        check_refine(self.capabilities, options, "the torch-free encoder (use torch: --engine torch)")
        self.qualities.check(quality)
        y, z = self.analyse(image, quality)
        return self.exact.encode(y, self.exact.hyperlatent_symbols(z, quality), quality)

    def analyse(self, image: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """(y, z): the analysis and hyper-analysis outputs (float32), as the torch codec's analyse."""
        y = ANALYSIS_TILES.run(self.graph("analysis", quality), padded_unit_image(image, DOWNSAMPLING),
                               down=LATENT_STRIDE)
        z = HYPER_ANALYSIS_TILES.run(self.graph("hyper_analysis", quality), y if self.exact.mean else np.abs(y),
                                     down=DOWNSAMPLING // LATENT_STRIDE)
        return y, z

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        self.qualities.check(quality)
        z_symbols, residuals, _ = self.exact.entropy_decode(sections, geometry.height, geometry.width, quality)
        return [z_symbols, residuals]

    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> np.ndarray:
        """The (3, height, width) uint8 reconstruction."""
        self.qualities.check(quality)
        _, residuals, means = self.exact.entropy_decode(sections, geometry.height, geometry.width, quality)
        y_hat = (residuals + means).astype(np.float32)
        x_hat = SYNTHESIS_TILES.run(self.graph("synthesis", quality), y_hat, up=LATENT_STRIDE)
        return cropped_pixels(x_hat, geometry.height, geometry.width)


RUNTIMES = {name: ImportedRuntime for name in ARCHITECTURES}
ENCODER_PREFIXES = {name: LAYOUT_ENCODER_PREFIXES for name in ARCHITECTURES}
