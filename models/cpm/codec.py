"""cpm's codec on torch (the networks; the symbols are coded by models.cpm.coding) and its frozen
coding tensors."""
from __future__ import annotations

import numpy as np
import torch

from ..core import precision
from ..core.geometry import pad_to_multiple, to_uint8, unit_float
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, check_refine
from .coding import SymbolCoder
from .importance_coding import channel_mask
from .layout import qualities
from .network import DECODER_TILES, DOWNSAMPLING, ENCODER_TILES, ConditionalProbabilityModel, CpmConfig, quantize
from .wavefront import FixedContext


class CpmCodec:
    """Codes the importance map, then the masked symbols with the exact context model, on one ANS
    stack (section "latent"); decodes the symbols in wavefronts."""

    section_names = ("latent",)
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities()

    def __init__(self, model: ConditionalProbabilityModel, coding: dict[str, torch.Tensor], device="cpu",
                 compute: str = "auto"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.compute = precision.resolve(compute, self.device)
        self.qualities = qualities(model.config)
        self.channels = model.config.latent_channels
        self.symbol_coder = SymbolCoder(FixedContext.of_model(model), self.channels)

    @torch.inference_mode()
    def analyse(self, image: torch.Tensor, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """(coded-channel counts (h, w), symbols (K, h, w)) of a (3, H, W) uint8 image."""
        def encoder(tile: torch.Tensor) -> torch.Tensor:
            return self.model.features(unit_float(tile.to(self.device))).cpu()

        x = pad_to_multiple(image[None], DOWNSAMPLING)
        with precision.autocast(self.compute, self.device):
            features = ENCODER_TILES.run(encoder, x, down=DOWNSAMPLING).float()
        q = torch.tensor([quality])
        importance = self.model.importance(features[:, :1], q)[0, 0]
        counts = torch.clamp(torch.ceil(importance), 0, self.channels).to(torch.int64)
        _, symbols = quantize(self.model.gained(features[:, 1:], q), self.model.centres.detach())
        return counts.numpy(), symbols[0].numpy().astype(np.int64)

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        self.qualities.check(quality)
        check_refine(self.capabilities, options, "this model")
        counts, symbols = self.analyse(image, quality)
        return {"latent": self.symbol_coder.encode_symbols(counts, symbols, quality)}

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        counts, symbols = self._decode_symbols(sections, geometry, quality)
        mask = torch.from_numpy(channel_mask(counts, self.channels))
        centres = self.model.centres.detach().float().cpu()
        coded = (centres[torch.from_numpy(np.maximum(symbols, 0))] * mask)[None]
        q = torch.tensor([quality], device=self.device)

        def decoder(tile: torch.Tensor) -> torch.Tensor:
            return to_uint8(self.model.synthesis(tile.to(self.device), q).cpu())

        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            pixels = DECODER_TILES.run(decoder, coded, up=DOWNSAMPLING)
        return pixels[0, :, :geometry.height, :geometry.width]

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """[coded-channel counts (h, w), symbols (K, h, w) with -1 where not coded]."""
        return list(self._decode_symbols(sections, geometry, quality))

    def _decode_symbols(self, sections: dict[str, bytes], geometry: Geometry,
                        quality: int) -> tuple[np.ndarray, np.ndarray]:
        self.qualities.check(quality)
        return self.symbol_coder.decode(sections["latent"], geometry.height, geometry.width, quality)

def build(config: dict) -> ConditionalProbabilityModel:
    return ConditionalProbabilityModel(CpmConfig(**{**config, "targets": tuple(config.get("targets",
                                                                                          CpmConfig().targets))}))


def freeze_coding_tensors(model: ConditionalProbabilityModel) -> dict[str, torch.Tensor]:
    """Nothing to freeze: the fixed-point context model is derived exactly from the fp16 weights."""
    return {}
