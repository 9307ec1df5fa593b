"""flow's codec: the bijective transform in tiles, escaped latents, progressive sections."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bitstream.coders import TableCoder
from bitstream.container import FormatError
from bitstream.tables import TOTAL, quantize_pmfs

from ..core import fixedpoint, precision
from ..core.entropy import (
    channel_table_ids,
    gaussian_pmfs,
    gaussian_scale_table,
    tables_from_tensors,
    tables_to_tensors,
)
from ..core.geometry import Tiles, ceil_div, pad_to_multiple, to_uint8
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, check_refine
from .network import (
    DOWNSAMPLING,
    LATENT_CHANNELS,
    PRIOR_INPUT_SCALE,
    FlowCompression,
    flow_to_unit,
    pixels_to_flow,
    qualities,
)

# ---------------------------------------------------------------------------------------------
# Coding: frozen integer tables, fixed-point priors, the flow in float.
# ---------------------------------------------------------------------------------------------
SEARCH_RADIUS = 4096  # z0 values (pixel units) beyond this are escaped
PREVIEW_PROBABILITY = 0.9  # a latent whose table gives its mean more than this is not coded
# The flow's receptive field is ±64 z0 positions (6 steps of six 3x3 convolutions at 1/8, 1/4
# and 1/2, plus the squeezes), so tiles overlap by more than that; φ reaches ±3 positions.
FORWARD_TILES = Tiles(core=1024, margin=576)
INVERSE_TILES = Tiles(core=128, margin=72)
PRIOR_TILES = Tiles(core=64, margin=8)


def freeze_coding_tensors(model: FlowCompression) -> dict[str, torch.Tensor]:
    """The exact steps of every operating point (float64), the z0 tables of each (one per channel,
    tabulated on that channel's step), and the zero-mean Gaussian tables of z1 and z2 (indexed by
    scale / step). The fixed-point priors are derived from the fp16 weights at load time."""
    steps = torch.exp(model.log_steps.detach().double())
    tensors = {"steps": steps, "detail_scales": torch.from_numpy(gaussian_scale_table())}
    tensors.update(tables_to_tensors(quantize_pmfs(*gaussian_pmfs(gaussian_scale_table())), "detail_tables"))
    c0 = LATENT_CHANNELS[0]
    for quality in range(steps.shape[0]):
        tables = quantize_pmfs(*model.density.tabulate(SEARCH_RADIUS, steps[quality, :c0].numpy()))
        tensors.update(tables_to_tensors(tables, f"z0_tables.{quality}"))
    return tensors


def pack_latents(z0: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """(z0, z1, z2) as one (B, 192, H/8, W/8) tensor, so that tiles cut all three alike."""
    return torch.cat([z0, F.pixel_unshuffle(z1, 2), F.pixel_unshuffle(z2, 4)], dim=1)


def unpack_latents(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c0, c1, _ = LATENT_CHANNELS
    return (packed[:, :c0], F.pixel_shuffle(packed[:, c0:c0 + 4 * c1], 2),
            F.pixel_shuffle(packed[:, c0 + 4 * c1:], 4))


@dataclass
class Latents:
    """One image's coded integers and the exact latents they stand for."""

    symbols: list[np.ndarray]  # k0 (48, h, w), k1 (12, 2h, 2w), k2 (6, 4h, 4w); 0 where not coded
    table_ids: list[np.ndarray]  # of z1 and z2, shaped like k1 and k2
    values: list[torch.Tensor]  # ẑ0, ẑ1, ẑ2 as (1, C, ...) float64


class FlowCodec:
    """Codes z0, z1, z2 in sections "latent", "detail1", "detail2"; a prefix of them decodes to a
    preview (the missing levels at their predicted means)."""

    section_names = ("latent", "detail1", "detail2")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(progressive=True)

    def __init__(self, model: FlowCompression, coding: dict[str, torch.Tensor], device="cpu", compute: str = "auto"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        # The flow is exact only up to its arithmetic: near-lossless points need float32.
        self.compute = precision.resolve("fp32" if compute == "auto" else compute, self.device)
        self.qualities = qualities(model.config)
        self.steps = coding["steps"].to(torch.float64)
        if self.steps.shape != (self.qualities.count, LATENT_CHANNELS[0] + 2):
            raise ValueError("coding steps do not match the network")
        self.priors = (fixedpoint.freeze(model.prior1), fixedpoint.freeze(model.prior2))
        self.detail_scales = coding["detail_scales"].numpy().astype(np.float64)
        if len(self.detail_scales) > 256:  # table ids are 8-bit
            raise ValueError("coding tables do not match the network")
        detail_tables = tables_from_tensors(coding, "detail_tables")
        self.detail_coder = TableCoder(detail_tables)
        zero = -detail_tables.offsets
        self.predicted_tables = detail_tables.counts[np.arange(len(zero)), zero] > PREVIEW_PROBABILITY * TOTAL
        self.coding = coding
        self._z0_coders: dict[int, TableCoder] = {}
        self._table_indices: dict[tuple[int, int], fixedpoint.TableIndex] = {}

    def z0_coder(self, quality: int) -> TableCoder:
        if quality not in self._z0_coders:
            self._z0_coders[quality] = TableCoder(tables_from_tensors(self.coding, f"z0_tables.{quality}"))
        return self._z0_coders[quality]

    def level_steps(self, quality: int) -> tuple[torch.Tensor, float, float]:
        """(Δ0 (1, 48, 1, 1), Δ1, Δ2) of an operating point, float64."""
        c0 = LATENT_CHANNELS[0]
        steps = self.steps[quality]
        return steps[:c0].reshape(1, c0, 1, 1), float(steps[c0]), float(steps[c0 + 1])

    def table_index(self, level: int, quality: int) -> fixedpoint.TableIndex:
        """Scale -> table of z1 (level 1) or z2 (level 2): the first entry with scale / Δ <= entry."""
        key = (level, quality)
        if key not in self._table_indices:
            step = self.level_steps(quality)[level]
            self._table_indices[key] = fixedpoint.TableIndex(self.detail_scales * step)
        return self._table_indices[key]

    def detail_distribution(self, level: int, coarser: torch.Tensor, quality: int) -> tuple[torch.Tensor, np.ndarray]:
        """Bit-exact means (float64) and table ids of z1 (level 1) or z2 (level 2) given the exact
        coarser latent: the fixed-point φ that encoder and decoder both run."""
        layers, index = self.priors[level - 1], self.table_index(level, quality)

        def prior(tile: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            means, scales = fixedpoint.run(layers, tile).chunk(2, dim=1)
            return means.contiguous(), torch.from_numpy(index(scales.numpy()).astype(np.uint8))

        means, table_ids = PRIOR_TILES.run(prior, coarser * PRIOR_INPUT_SCALE, up=2)
        return means, table_ids.numpy()[0]

    @torch.inference_mode()
    def analyse(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The continuous latents (z0, z1, z2) of a (3, H, W) uint8 image (sides padded to 8)."""
        def forward(tile: torch.Tensor) -> torch.Tensor:
            pixels = pixels_to_flow(tile.to(self.device).float() / 255)
            return pack_latents(*self.model.flow(pixels)).float().cpu()

        with precision.autocast(self.compute, self.device):
            packed = FORWARD_TILES.run(forward, pad_to_multiple(image[None], DOWNSAMPLING), down=DOWNSAMPLING)
        return unpack_latents(packed)

    def quantise(self, z: tuple[torch.Tensor, torch.Tensor, torch.Tensor], quality: int) -> Latents:
        """What the encoder codes: z0 rounded to its grid, z1 and z2 rounded around their exact
        predicted means (or left at them, where the table says the mean is likely enough)."""
        self.qualities.check(quality)
        step0, *detail_steps = self.level_steps(quality)
        k0 = torch.round(z[0].double() / step0)
        latents = Latents([k0.to(torch.int64).numpy()[0]], [], [k0 * step0])
        for level in (1, 2):
            means, table_ids = self.detail_distribution(level, latents.values[-1], quality)
            coded = torch.from_numpy(~self.predicted_tables[table_ids])[None]
            k = torch.round((z[level].double() - means) / detail_steps[level - 1]) * coded
            latents.values.append(means + detail_steps[level - 1] * k)
            latents.symbols.append(k.to(torch.int64).numpy()[0])
            latents.table_ids.append(table_ids)
        return latents

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        check_refine(self.capabilities, options, "this model")
        return self.encode_latents(self.quantise(self.analyse(image), quality), quality)

    def encode_latents(self, latents: Latents, quality: int) -> dict[str, bytes]:
        k0 = latents.symbols[0]
        sections = {"latent": self.z0_coder(quality).encode(k0, channel_table_ids(k0.shape))}
        for name, k, table_ids in zip(self.section_names[1:], latents.symbols[1:], latents.table_ids, strict=True):
            coded = ~self.predicted_tables[table_ids]
            sections[name] = self.detail_coder.encode(k[coded], table_ids[coded])
        return sections

    def decode_latents(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> Latents:
        """The latents of a file's sections; a missing "detail2" (or both details) leaves those
        levels at their predicted means."""
        self.qualities.check(quality)
        if "detail2" in sections and "detail1" not in sections:
            raise FormatError("a flow file's detail2 section needs its detail1 section")
        height, width = ceil_div(geometry.height, DOWNSAMPLING), ceil_div(geometry.width, DOWNSAMPLING)
        shape = (LATENT_CHANNELS[0], height, width)
        step0, *detail_steps = self.level_steps(quality)
        k0 = self.z0_coder(quality).decode(sections["latent"], channel_table_ids(shape)).reshape(shape)
        latents = Latents([k0], [], [torch.from_numpy(k0)[None] * step0])
        for level, name in ((1, "detail1"), (2, "detail2")):
            means, table_ids = self.detail_distribution(level, latents.values[-1], quality)
            k = np.zeros(table_ids.shape, dtype=np.int64)
            if name in sections:
                coded = ~self.predicted_tables[table_ids]
                k[coded] = self.detail_coder.decode(sections[name], table_ids[coded])
            latents.values.append(means + detail_steps[level - 1] * torch.from_numpy(k)[None])
            latents.symbols.append(k)
            latents.table_ids.append(table_ids)
        return latents

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        """The (3, height, width) uint8 image of all sections, or of a prefix of them (a preview)."""
        return self.synthesise(self.decode_latents(sections, geometry, quality).values, geometry)

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """k0, k1, k2 (0 where a latent was not coded)."""
        return self.decode_latents(sections, geometry, quality).symbols

    @torch.inference_mode()
    def synthesise(self, values: list[torch.Tensor], geometry: Geometry) -> torch.Tensor:
        """The inverse flow of exact latents, as 8-bit pixels cropped to the image."""
        def inverse(tile: torch.Tensor) -> torch.Tensor:
            pixels = self.model.flow.inverse(*unpack_latents(tile.to(self.device)))
            return to_uint8(flow_to_unit(pixels.float()).clamp_(0, 1)).cpu()

        packed = pack_latents(*(v.to(torch.float32) for v in values))
        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            pixels = INVERSE_TILES.run(inverse, packed, up=DOWNSAMPLING)
        return pixels[0, :, :geometry.height, :geometry.width]
