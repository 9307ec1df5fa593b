"""flow's codec on torch: the bijective transform in tiles; the latents are coded by
models.flow.coding, and the coding tensors frozen here."""
from __future__ import annotations

import numpy as np
import torch

from bitstream.tables import quantize_pmfs

from ..core import precision
from ..core.entropy import gaussian_pmfs, gaussian_scale_table, tables_to_tensors
from ..core.geometry import pad_to_multiple, to_uint8
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, check_refine
from .coding import SECTIONS, LatentCoding, Latents
from .layout import (
    DOWNSAMPLING,
    FORWARD_TILES,
    INVERSE_TILES,
    LATENT_CHANNELS,
    SEARCH_RADIUS,
    pack_latents,
    unpack_latents,
)
from .network import FlowCompression, flow_to_unit, pixels_to_flow, qualities


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


class FlowCodec:
    """Codes z0, z1, z2 in sections "latent", "detail1", "detail2"; a prefix of them decodes to a
    preview (the missing levels at their predicted means)."""

    section_names = SECTIONS
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(progressive=True)

    def __init__(self, model: FlowCompression, coding: dict[str, torch.Tensor], device="cpu", compute: str = "auto"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        # The flow is exact only up to its arithmetic: near-lossless points need float32.
        self.compute = precision.resolve("fp32" if compute == "auto" else compute, self.device)
        self.qualities = qualities(model.config)
        network = {name: value.detach().cpu().numpy() for name, value in model.state_dict().items()
                   if name.startswith(("prior1.", "prior2."))}
        self.latent_coding = LatentCoding(network, {name: value.numpy() for name, value in coding.items()},
                                          self.qualities.count)

    @property
    def steps(self) -> torch.Tensor:
        """The exact steps (Q, 48 + 2) of every operating point, float64."""
        return torch.from_numpy(self.latent_coding.steps)

    @property
    def predicted_tables(self) -> np.ndarray:
        return self.latent_coding.predicted_tables

    @torch.inference_mode()
    def analyse(self, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The continuous latents (z0, z1, z2) of a (3, H, W) uint8 image (sides padded to 8)."""
        def forward(tile: torch.Tensor) -> torch.Tensor:
            pixels = pixels_to_flow(tile.to(self.device).float() / 255)
            z0, z1, z2 = (z.float().cpu().numpy() for z in self.model.flow(pixels))
            return torch.from_numpy(pack_latents(z0, z1, z2))

        with precision.autocast(self.compute, self.device):
            packed = FORWARD_TILES.run(forward, pad_to_multiple(image[None], DOWNSAMPLING), down=DOWNSAMPLING)
        return unpack_latents(packed.numpy())

    def quantise(self, z: tuple[np.ndarray, np.ndarray, np.ndarray], quality: int) -> Latents:
        self.qualities.check(quality)
        return self.latent_coding.quantise(z, quality)

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        check_refine(self.capabilities, options, "this model")
        return self.encode_latents(self.quantise(self.analyse(image), quality), quality)

    def encode_latents(self, latents: Latents, quality: int) -> dict[str, bytes]:
        return self.latent_coding.encode(latents, quality)

    def decode_latents(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> Latents:
        self.qualities.check(quality)
        return self.latent_coding.decode(sections, geometry.height, geometry.width, quality)

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        """The (3, height, width) uint8 image of all sections, or of a prefix of them (a preview)."""
        return self.synthesise(self.decode_latents(sections, geometry, quality).values, geometry)

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """k0, k1, k2 (0 where a latent was not coded)."""
        return self.decode_latents(sections, geometry, quality).symbols

    @torch.inference_mode()
    def synthesise(self, values: list[np.ndarray], geometry: Geometry) -> torch.Tensor:
        """The inverse flow of exact latents, as 8-bit pixels cropped to the image."""
        def inverse(tile: np.ndarray) -> np.ndarray:
            z = (torch.from_numpy(np.ascontiguousarray(level)).to(self.device) for level in unpack_latents(tile))
            pixels = self.model.flow.inverse(*z)
            return to_uint8(flow_to_unit(pixels.float()).clamp_(0, 1)).cpu().numpy()

        packed = pack_latents(*(value.astype(np.float32) for value in values))
        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            pixels = INVERSE_TILES.run(inverse, packed, up=DOWNSAMPLING)
        return torch.from_numpy(np.ascontiguousarray(pixels[0, :, :geometry.height, :geometry.width]))
