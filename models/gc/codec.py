"""The gc codecs on torch: the encoder and generator networks; W is coded by models.gc.coding."""
from __future__ import annotations

import numpy as np
import torch

from ..core import precision
from ..core.geometry import pad_to_multiple, to_uint8, unit_float
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, Qualities, check_refine
from .coding import LatentCoder, context_layers, decode_sections, encode_sections, synthesis_input
from .context import quantize
from .network import (
    DOWNSAMPLING,
    ENCODER_TILES,
    GENERATOR_TILES,
    MIN_LATENT,
    GenerativeCompression,
)


class GcCodec:
    """Codes W with whichever of the two entropy models gives fewer bytes (one mode byte says which).

    A selective model (config.selective) given a preservation map (EncodeOptions.preserve) codes
    the map (section "preserve", bitstream.binarymap) and only the latents it keeps; the others
    are 0 and the generator synthesises their region."""

    section_names = ("latent",)
    optional_sections: tuple[str, ...] = ()
    qualities = Qualities(1, 0, "1 (one rate, set by the bottleneck)")
    capabilities = Capabilities()

    def __init__(self, model: GenerativeCompression, coding: dict[str, torch.Tensor], device="cpu",
                 compute: str = "auto"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.compute = precision.resolve(compute, self.device)
        network = {f"context.net.{name}": value.detach().cpu().numpy() for name, value
                   in model.context.net.state_dict().items()}
        self.latent_coder = LatentCoder(context_layers(network))
        if model.config.selective != self.capabilities.selective:
            raise ValueError(f"{type(self).__name__} cannot code a model with selective={model.config.selective}")

    @torch.inference_mode()
    def symbols(self, image: torch.Tensor) -> np.ndarray:
        """The (C, h, w) symbols 0..4 of a (3, H, W) uint8 image."""
        def encoder(tile: torch.Tensor) -> torch.Tensor:
            return self.model.features(unit_float(tile.to(self.device))).cpu()

        x = pad_to_multiple(image[None], DOWNSAMPLING, MIN_LATENT)
        with precision.autocast(self.compute, self.device):
            _, symbols = quantize(ENCODER_TILES.run(encoder, x, down=DOWNSAMPLING))
        return symbols[0].numpy().astype(np.int64)

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        self.qualities.check(quality)
        check_refine(self.capabilities, options, "this model")
        return encode_sections(self.latent_coder, self.symbols(image), options.preserve, self.capabilities.selective)

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        symbols, *kept = self.decode_symbols(sections, geometry, quality)
        return self.synthesise(symbols, geometry.height, geometry.width, pixels=True, keep=kept[0] if kept else None)

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """The entropy-decoded (C, h, w) symbols 0..4 of W, and with a preserve section the (h, w)
        map of the latents it keeps (uint8)."""
        self.qualities.check(quality)
        return decode_sections(self.latent_coder, sections, self.model.config.bottleneck, geometry.height,
                               geometry.width)

    @torch.inference_mode()
    def synthesise(self, symbols: np.ndarray, height: int, width: int, pixels: bool = False,
                   keep: np.ndarray | None = None) -> torch.Tensor:
        """The generator's image (3, height, width) in [0, 1] (pixels=True: 8-bit) of (C, h, w)
        symbols; keep (h, w): the latents coded, the rest synthesised (selective models)."""
        # A selective model's map rides along as a last channel through the tiling.
        w_hat = torch.from_numpy(synthesis_input(symbols, keep, self.model.config.selective))
        channels = symbols.shape[0]

        def generator(tile: torch.Tensor) -> torch.Tensor:
            tile = tile.to(self.device)
            preserve = tile[:, channels:] if self.model.config.selective else None
            x_hat = self.model.synthesise(tile[:, :channels], preserve).float().clamp_(0, 1).cpu()
            return to_uint8(x_hat) if pixels else x_hat

        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            x_hat = GENERATOR_TILES.run(generator, w_hat, up=DOWNSAMPLING)
        return x_hat[0, :, :height, :width]


class SelectiveGcCodec(GcCodec):
    """GcCodec of a selective model (gc-c4-sc): takes EncodeOptions.preserve."""

    capabilities = Capabilities(selective=True)
    optional_sections = ("preserve",)

