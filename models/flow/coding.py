"""Coding flow's three latent levels in numpy alone (the torch codec and the torch-free runtime both
code through it): z0 on its per-channel grid with its own tables, then z1 and z2 around the means
that the fixed-point priors φ predict from the level below; a missing detail section leaves its
level at those means (a preview)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitstream.coders import TableCoder
from bitstream.container import FormatError
from bitstream.tables import TOTAL

from ..core.tiles import ceil_div
from ..runtime import fixed
from ..runtime.tables import channel_table_ids, tables_from_arrays
from .layout import DOWNSAMPLING, LATENT_CHANNELS, PREVIEW_PROBABILITY, PRIOR_INPUT_SCALE, PRIOR_TILES

SECTIONS = ("latent", "detail1", "detail2")


def prior_layers(network: dict[str, np.ndarray], prefix: str) -> list[fixed.FixedConv]:
    """φ (models.flow.network.prior_net) in fixed point: 3x3, 3x3, a 5x5 transposed convolution of
    stride 2, 3x3, with ReLUs between."""
    conv3 = {"padding": 1}
    up = {"transposed": True, "stride": 2, "padding": 2, "output_padding": 1}
    return [fixed.layer_from(network, f"{prefix}0", relu=True, **conv3),
            fixed.layer_from(network, f"{prefix}2", relu=True, **conv3),
            fixed.layer_from(network, f"{prefix}4", relu=True, **up),
            fixed.layer_from(network, f"{prefix}6", **conv3)]


@dataclass
class Latents:
    """One image's coded integers and the exact latents they stand for."""

    symbols: list[np.ndarray]  # k0 (48, h, w), k1 (12, 2h, 2w), k2 (6, 4h, 4w); 0 where not coded
    table_ids: list[np.ndarray]  # of z1 and z2, shaped like k1 and k2
    values: list[np.ndarray]  # ẑ0, ẑ1, ẑ2 as (1, C, ...) float64


class LatentCoding:
    """The exact coding of an operating point's latents: its steps, the priors φ1 and φ2 and the
    integer tables (of a weight file's network and coding arrays)."""

    def __init__(self, network: dict[str, np.ndarray], coding: dict[str, np.ndarray], quality_count: int):
        self.steps = np.asarray(coding["steps"], dtype=np.float64)
        if self.steps.shape != (quality_count, LATENT_CHANNELS[0] + 2):
            raise ValueError("coding steps do not match the network")
        self.priors = (prior_layers(network, "prior1."), prior_layers(network, "prior2."))
        self.detail_scales = np.asarray(coding["detail_scales"], dtype=np.float64)
        if len(self.detail_scales) > 256:  # table ids are 8-bit
            raise ValueError("coding tables do not match the network")
        detail_tables = tables_from_arrays(coding, "detail_tables")
        self.detail_coder = TableCoder(detail_tables)
        zero = -detail_tables.offsets
        self.predicted_tables = detail_tables.counts[np.arange(len(zero)), zero] > PREVIEW_PROBABILITY * TOTAL
        self.coding = coding
        self._z0_coders: dict[int, TableCoder] = {}
        self._table_indices: dict[tuple[int, int], fixed.TableIndex] = {}

    def z0_coder(self, quality: int) -> TableCoder:
        if quality not in self._z0_coders:
            self._z0_coders[quality] = TableCoder(tables_from_arrays(self.coding, f"z0_tables.{quality}"))
        return self._z0_coders[quality]

    def level_steps(self, quality: int) -> tuple[np.ndarray, float, float]:
        """(Δ0 (1, 48, 1, 1), Δ1, Δ2) of an operating point, float64."""
        c0 = LATENT_CHANNELS[0]
        steps = self.steps[quality]
        return steps[:c0].reshape(1, c0, 1, 1), float(steps[c0]), float(steps[c0 + 1])

    def table_index(self, level: int, quality: int) -> fixed.TableIndex:
        """Scale -> table of z1 (level 1) or z2 (level 2): the first entry with scale / Δ <= entry."""
        key = (level, quality)
        if key not in self._table_indices:
            step = self.level_steps(quality)[level]
            self._table_indices[key] = fixed.TableIndex(self.detail_scales * step)
        return self._table_indices[key]

    def detail_distribution(self, level: int, coarser: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """Bit-exact means (1, C, 2h, 2w) float64 and table ids (C, 2h, 2w) of z1 (level 1) or z2
        (level 2) given the exact coarser latent: the fixed-point φ that encoder and decoder both run."""
        layers, index = self.priors[level - 1], self.table_index(level, quality)

        def prior(tile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            means, scales = np.split(fixed.run(layers, tile[0]), 2)
            return means[None], index(scales).astype(np.uint8)[None]

        means, table_ids = PRIOR_TILES.run(prior, coarser * PRIOR_INPUT_SCALE, up=2)
        return means, table_ids[0]

    def quantise(self, z: tuple[np.ndarray, np.ndarray, np.ndarray], quality: int) -> Latents:
        """What the encoder codes of continuous latents (1, C, ...): z0 rounded to its grid, z1 and
        z2 rounded around their exact predicted means (or left at them, where the table says the
        mean is likely enough)."""
        step0, *detail_steps = self.level_steps(quality)
        k0 = np.round(z[0].astype(np.float64) / step0)
        latents = Latents([k0.astype(np.int64)[0]], [], [k0 * step0])
        for level in (1, 2):
            means, table_ids = self.detail_distribution(level, latents.values[-1], quality)
            coded = ~self.predicted_tables[table_ids][None]
            k = np.round((z[level].astype(np.float64) - means) / detail_steps[level - 1]) * coded
            latents.values.append(means + detail_steps[level - 1] * k)
            latents.symbols.append(k.astype(np.int64)[0])
            latents.table_ids.append(table_ids)
        return latents

    def encode(self, latents: Latents, quality: int) -> dict[str, bytes]:
        k0 = latents.symbols[0]
        sections = {"latent": self.z0_coder(quality).encode(k0, channel_table_ids(k0.shape))}
        for name, k, table_ids in zip(SECTIONS[1:], latents.symbols[1:], latents.table_ids, strict=True):
            coded = ~self.predicted_tables[table_ids]
            sections[name] = self.detail_coder.encode(k[coded], table_ids[coded])
        return sections

    def decode(self, sections: dict[str, bytes], height: int, width: int, quality: int) -> Latents:
        """The latents of a file's sections; a missing "detail2" (or both details) leaves those
        levels at their predicted means."""
        if "detail2" in sections and "detail1" not in sections:
            raise FormatError("a flow file's detail2 section needs its detail1 section")
        shape = (LATENT_CHANNELS[0], ceil_div(height, DOWNSAMPLING), ceil_div(width, DOWNSAMPLING))
        step0, *detail_steps = self.level_steps(quality)
        k0 = self.z0_coder(quality).decode(sections["latent"], channel_table_ids(shape)).reshape(shape)
        latents = Latents([k0], [], [k0[None] * step0])
        for level, name in ((1, "detail1"), (2, "detail2")):
            means, table_ids = self.detail_distribution(level, latents.values[-1], quality)
            k = np.zeros(table_ids.shape, dtype=np.int64)
            if name in sections:
                coded = ~self.predicted_tables[table_ids]
                k[coded] = self.detail_coder.decode(sections[name], table_ids[coded])
            latents.values.append(means + detail_steps[level - 1] * k[None])
            latents.symbols.append(k)
            latents.table_ids.append(table_ids)
        return latents
