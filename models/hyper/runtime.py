"""`hyper` and `hyper-ctx` without torch (``models.runtime``): the exact coding of ``exact.py`` (the
torch codecs code through it too) with the transforms on ONNX Runtime, from the graphs exported
from the torch modules (``models/weights/graphs/``)."""
from __future__ import annotations

import functools

import numpy as np

from ..core.padding import cropped_pixels, padded_unit_image
from ..core.tiles import Tiles
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, check_refine
from ..runtime.graphs import Graph, parameters, synthesis_threads
from ..weight_reader import WeightArrays
from .exact import HyperCoding, HyperCtxCoding, interpolated
from .layout import ANALYSIS_TILES, DOWNSAMPLING, HYPER_ANALYSIS_TILES, LATENT_STRIDE, SYNTHESIS_TILES
from .layout import ENCODER_PREFIXES as LAYOUT_ENCODER_PREFIXES

# The synthesis on ONNX Runtime keeps more full-resolution intermediates alive than the torch path's
# in-place decoder: smaller tiles than SYNTHESIS_TILES (a Kodak photo is still one tile).
RUNTIME_SYNTHESIS_TILES = Tiles(core=48, margin=SYNTHESIS_TILES.margin)


class HyperRuntime:
    """Codes `hyper` files: the hyperprior's exact coding with the transforms' graphs (decoding
    needs only the synthesis; encoding, which also needs the analysis graphs and a weight file with
    the encoder's parameters, is plain: no refinement)."""

    section_names = ("hyperlatent", "latent")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(arrays=True)
    decode_graphs = ("synthesis",)
    encode_graphs = ("analysis", "hyper_analysis")
    coding_class = HyperCoding

    def __init__(self, weights: WeightArrays, graphs: dict[str, bytes], threads: int | None = None):
        network = weights.network
        self.exact = self.coding_class(network, weights.coding, weights.config)
        self.qualities = self.exact.qualities
        self.can_encode = "g_a.0.weight" in network and {"analysis", "hyper_analysis"} <= graphs.keys()
        self.network, self.graphs, self.threads = network, graphs, threads  # for the graphs, built on first use

    @functools.cached_property
    def synthesis(self) -> Graph:
        """The synthesis graph, built on first use (an encoder never needs it), on synthesis_threads()
        whatever `threads` says."""
        return Graph(self.graphs["synthesis"], parameters(self.network, "g_s."), synthesis_threads())

    @functools.cached_property
    def analysis(self) -> Graph:
        return Graph(self.graphs["analysis"], parameters(self.network, "g_a."), self.threads)

    @functools.cached_property
    def hyper_analysis(self) -> Graph:
        return Graph(self.graphs["hyper_analysis"], parameters(self.network, "h_a."), self.threads)

    def encode(self, image: np.ndarray, quality: float, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8 -> the coded sections."""
        check_refine(self.capabilities, options, "the torch-free encoder (use torch: --engine torch)")
        self.qualities.check(quality)
        y, z = self.analyse(image, quality)
        return self.exact.encode(y, np.round(z).astype(np.int64), quality)

    def analyse(self, image: np.ndarray, quality: float) -> tuple[np.ndarray, np.ndarray]:
        """(y, z): gain-scaled latents and hyperlatents, float64, as the torch codec's analyse."""
        features = ANALYSIS_TILES.run(self.analysis, padded_unit_image(image, DOWNSAMPLING), down=LATENT_STRIDE)
        gain_y, gain_z = (np.exp(interpolated(self.network[name].astype(np.float64), quality))[None, :, None, None]
                          for name in ("log_gain_y", "log_gain_z"))
        y = features.astype(np.float64) * gain_y
        z = HYPER_ANALYSIS_TILES.run(self.hyper_analysis, y.astype(np.float32), down=DOWNSAMPLING // LATENT_STRIDE)
        return y, z.astype(np.float64) * gain_z

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: float) -> list[np.ndarray]:
        self.qualities.check(quality)
        z_hat, residuals, _ = self.exact.entropy_decode(sections, geometry.height, geometry.width, quality)
        return [z_hat, residuals]

    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: float) -> np.ndarray:
        """The (3, height, width) uint8 reconstruction."""
        self.qualities.check(quality)
        _, residuals, means = self.exact.entropy_decode(sections, geometry.height, geometry.width, quality)
        return self.synthesise(residuals, means, quality, geometry.height, geometry.width)

    def synthesise(self, residuals: np.ndarray, means: np.ndarray, quality: float, height: int,
                   width: int) -> np.ndarray:
        y_hat = (residuals + means) * self.exact.inv_gain_y_at(quality)[None, :, None, None]
        x_hat = RUNTIME_SYNTHESIS_TILES.run(self.synthesis, y_hat.astype(np.float32), up=LATENT_STRIDE)
        return cropped_pixels(x_hat, height, width)


class HyperCtxRuntime(HyperRuntime):
    """Codes `hyper-ctx` files: the checkerboard passes of its context model in fixed point."""

    coding_class = HyperCtxCoding


RUNTIMES = {"hyper": HyperRuntime, "hyper-ctx": HyperCtxRuntime, "hyper-ctx-graphics": HyperCtxRuntime}
ENCODER_PREFIXES = {name: LAYOUT_ENCODER_PREFIXES for name in RUNTIMES}
