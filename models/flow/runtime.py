"""`flow` without torch (``models.runtime``): the latents coded by ``coding.py`` as on the torch path,
the flow in both directions on ONNX Runtime from the graphs exported from the torch module."""
from __future__ import annotations

import functools

import numpy as np

from ..core.padding import cropped_pixels, padded_unit_image
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, check_refine
from ..runtime.graphs import Graph, parameters, synthesis_threads
from ..weight_reader import WeightArrays
from .coding import SECTIONS, LatentCoding
from .layout import (
    DOWNSAMPLING,
    ENCODER_PREFIXES,
    FORWARD_TILES,
    INVERSE_TILES,
    pack_latents,
    qualities,
    unpack_latents,
)


class FlowRuntime:
    """Codes flow files, progressive previews included (a prefix of the sections decodes)."""

    section_names = SECTIONS
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(progressive=True, arrays=True)
    decode_graphs = ("synthesis",)
    encode_graphs = ("analysis",)

    def __init__(self, weights: WeightArrays, graphs: dict[str, bytes], threads: int | None = None):
        network = weights.network
        self.qualities = qualities(weights.config)
        self.latent_coding = LatentCoding(network, weights.coding, self.qualities.count)
        self.can_encode = "analysis" in graphs
        self.network, self.graphs, self.threads = network, graphs, threads

    @functools.cached_property
    def synthesis(self) -> Graph:
        """The inverse graph, built on first use (an encoder never needs it), on synthesis_threads()
        whatever `threads` says."""
        return Graph(self.graphs["synthesis"], flow_parameters(self.network, inverse=True), synthesis_threads())

    @functools.cached_property
    def analysis(self) -> Graph:
        return Graph(self.graphs["analysis"], flow_parameters(self.network, inverse=False), self.threads)

    def encode(self, image: np.ndarray, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8 -> the coded sections."""
        self.qualities.check(quality)
        check_refine(self.capabilities, options, "flow")
        packed = FORWARD_TILES.run(self.analysis, padded_unit_image(image, DOWNSAMPLING), down=DOWNSAMPLING)
        return self.latent_coding.encode(self.latent_coding.quantise(unpack_latents(packed), quality), quality)

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """k0, k1, k2 (0 where a latent was not coded)."""
        self.qualities.check(quality)
        return self.latent_coding.decode(sections, geometry.height, geometry.width, quality).symbols

    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> np.ndarray:
        """The (3, height, width) uint8 image of all sections, or of a prefix of them (a preview)."""
        self.qualities.check(quality)
        values = self.latent_coding.decode(sections, geometry.height, geometry.width, quality).values
        packed = pack_latents(*(value.astype(np.float32) for value in values))
        return cropped_pixels(INVERSE_TILES.run(self.synthesis, packed, up=DOWNSAMPLING), geometry.height,
                              geometry.width)


def flow_parameters(network: dict[str, np.ndarray], inverse: bool) -> dict[str, np.ndarray]:
    """The flow's parameters that one direction's graph takes: each coupling's permutation goes
    forward only, its inverse permutation backward only."""
    unused = ".permutation" if inverse else ".inverse_permutation"
    return {name: array for name, array in parameters(network, "flow.").items() if not name.endswith(unused)}


RUNTIMES = {"flow": FlowRuntime}
ENCODER_PREFIXES = {"flow": ENCODER_PREFIXES}
