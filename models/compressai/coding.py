"""The exact part of an imported model's coding, in numpy: everything that selects a probability
table (the fixed-point hyper-synthesis around the snapped medians, the context models) and the
table coders. One implementation: the torch codec (``codec.py``) and the torch-free runtime
(``runtime.py``) both code through it, built from a weight file's arrays or a torch model's state.

Workflow of a file: the hyperlatents are coded first, one factorized table per channel (the
qualities' tables one after the other); the fixed-point hyper-synthesis of z_hat = symbols +
medians then gives each latent's Gaussian scale (a table of ``y_table_scales``) and mean, and the
latents are coded as round(y - mean). The context models (``wavefront.py``, ``checkerboard.py``)
refine those parameters from the latents decoded before.
"""
from __future__ import annotations

import numpy as np

from bitstream.coders import TableCoder

from ..core.tiles import ceil_div
from ..runtime import fixed
from ..runtime.tables import tables_from_arrays
from .layout import (
    DOWNSAMPLING,
    HYPER_SYNTHESIS_TILES,
    LATENT_STRIDE,
    Architecture,
    Layer,
    hyper_synthesis_layers,
    qualities,
)


def fixed_layers(network: dict[str, np.ndarray], prefix: str, layers: tuple[Layer, ...]) -> list[fixed.FixedConv]:
    """The fixed-point stack of declared layers whose parameters are <prefix>.<name>.weight/bias."""
    return [fixed.layer_from(network, f"{prefix}.{layer.name}", **layer.fields()) for layer in layers]


def snapped_medians(network: dict[str, np.ndarray], quality: int) -> np.ndarray:
    """(N,) float64: the entropy bottleneck's medians on the fixed-point activation grid, so that
    z_hat = symbol + median enters the fixed-point hyper-synthesis exactly."""
    return fixed.snap_array(np.array(network[f"medians.{quality}"], dtype=np.float64))


class ImportedCoding:
    """The coding of an imported hyperprior (bmshj2018-hyperprior: scales only; mbt2018-mean:
    means and scales), one network per quality. Arrays are numpy; those of one image carry a
    leading batch axis of 1, as the transforms' outputs do."""

    def __init__(self, network: dict[str, np.ndarray], coding: dict[str, np.ndarray], config: dict,
                 architecture: Architecture):
        self.qualities = qualities(config)
        self.widths = [tuple(int(v) for v in pair) for pair in config.get("widths", ((128, 192),))]
        self.mean = architecture.mean
        layers = hyper_synthesis_layers(architecture)
        self.hyper_synthesis = [fixed_layers(network, f"h_s.{q}", layers) for q in range(len(self.widths))]
        self.medians = [snapped_medians(network, q) for q in range(len(self.widths))]
        self.first_table = np.cumsum([0] + [n for n, _ in self.widths]).tolist()
        self.scale_index = fixed.TableIndex(np.asarray(coding["y_table_scales"], dtype=np.float64))
        z_tables = tables_from_arrays(coding, "z_tables")
        if len(z_tables) != self.first_table[-1]:
            raise ValueError("coding tables do not match the network")
        self.z_coder = TableCoder(z_tables)
        self.y_coder = TableCoder(tables_from_arrays(coding, "y_tables"))

    # -- hyperlatents -----------------------------------------------------------------------
    def hyperlatent_symbols(self, z: np.ndarray, quality: int) -> np.ndarray:
        """The coded symbols of continuous hyperlatents (1, N, h, w): round(z - median), as
        CompressAI rounds them."""
        return np.round(np.asarray(z, dtype=np.float64) - self.medians[quality][None, :, None, None]).astype(np.int64)

    def z_table_ids(self, shape: tuple[int, ...], quality: int) -> np.ndarray:
        channels = shape[1]
        ids = np.arange(self.first_table[quality], self.first_table[quality] + channels, dtype=np.int64)
        return np.broadcast_to(ids[:, None, None], shape[1:]).ravel()

    def z_shape(self, height: int, width: int, quality: int) -> tuple[int, int, int, int]:
        return 1, self.widths[quality][0], ceil_div(height, DOWNSAMPLING), ceil_div(width, DOWNSAMPLING)

    def decode_hyperlatents(self, sections: dict[str, bytes], height: int, width: int, quality: int) -> np.ndarray:
        shape = self.z_shape(height, width, quality)
        return self.z_coder.decode(sections["hyperlatent"], self.z_table_ids(shape, quality)).reshape(shape)

    def encode_hyperlatents(self, z_symbols: np.ndarray, quality: int) -> bytes:
        return self.z_coder.encode(z_symbols, self.z_table_ids(z_symbols.shape, quality))

    # -- what both sides compute exactly ----------------------------------------------------
    def hyper_parameters(self, z_symbols: np.ndarray, quality: int) -> np.ndarray:
        """(C, h, w): the fixed-point hyper-synthesis of z_hat = symbols + medians, whole (C = M
        scales, 2M scales and means, or ELIC's 2N features)."""
        z_hat = z_symbols.astype(np.float64) + self.medians[quality][None, :, None, None]
        layers = self.hyper_synthesis[quality]
        out = HYPER_SYNTHESIS_TILES.run(lambda tile: fixed.run(layers, tile[0])[None], z_hat,
                                        up=DOWNSAMPLING // LATENT_STRIDE)
        return out[0]

    def latent_distribution(self, z_symbols: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """(means (1, M, h, w) float64 on the activation grid, zeros for a scale-only model; table
        ids, flat in y's order) of the latents given the hyperlatent symbols."""
        out = self.hyper_parameters(z_symbols, quality)
        scales, means = np.split(out, 2, axis=0) if self.mean else (out, np.zeros_like(out))
        return np.ascontiguousarray(means)[None], self.scale_index(scales).astype(np.uint8).ravel()

    # -- coding -----------------------------------------------------------------------------
    def encode(self, y: np.ndarray, z_symbols: np.ndarray, quality: int) -> dict[str, bytes]:
        """The sections of latents y (1, M, h, w) and hyperlatent symbols."""
        means, table_ids = self.latent_distribution(z_symbols, quality)
        residuals = np.round(np.asarray(y, dtype=np.float64) - means).astype(np.int64)
        return {"hyperlatent": self.encode_hyperlatents(z_symbols, quality),
                "latent": self.y_coder.encode(residuals, table_ids)}

    def entropy_decode(self, sections: dict[str, bytes], height: int, width: int, quality: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hyperlatent symbols, latent residuals int64, exact means float64) of a file's sections;
        y_hat = residuals + means."""
        z_symbols = self.decode_hyperlatents(sections, height, width, quality)
        means, table_ids = self.latent_distribution(z_symbols, quality)
        residuals = self.y_coder.decode(sections["latent"], table_ids).reshape(means.shape)
        return z_symbols, residuals, means

    def latent_size(self, z_symbols: np.ndarray) -> tuple[int, int]:
        scale = DOWNSAMPLING // LATENT_STRIDE
        return z_symbols.shape[2] * scale, z_symbols.shape[3] * scale


def coding_class(architecture: Architecture) -> type[ImportedCoding]:
    """The coding of an architecture: the plain hyperprior's, or with its context model."""
    if architecture.elic:
        from .checkerboard import ElicCoding

        return ElicCoding
    if architecture.context:
        from .wavefront import WavefrontCoding

        return WavefrontCoding
    return ImportedCoding
