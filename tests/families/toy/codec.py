"""The toy codec: rounded latents, zlib-compressed."""
from __future__ import annotations

import zlib

import numpy as np
import torch

from bitstream.container import FormatError
from models.core.geometry import ceil_div, pad_to_multiple, to_uint8, unit_float
from models.interface import PLAIN, Capabilities, EncodeOptions, Geometry, Qualities, check_refine

from .network import STEPS, STRIDE, ToyNet

NAME = "toy-1layer"


class ToyCodec:
    section_names = ("latent",)
    optional_sections: tuple[str, ...] = ()
    qualities = Qualities(len(STEPS), 0, f"1-{len(STEPS)} (two quantization steps)")
    capabilities = Capabilities()

    def __init__(self, model: ToyNet, coding: dict, device="cpu", compute: str = "auto"):
        self.model = model.eval()

    @torch.inference_mode()
    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        self.qualities.check(quality)
        check_refine(self.capabilities, options, NAME)
        y = self.model.analysis(unit_float(pad_to_multiple(image[None], STRIDE)))
        symbols = torch.round(y / STEPS[quality]).clamp(-127, 127).to(torch.int8)
        return {"latent": zlib.compress(symbols.numpy().tobytes(), 9)}

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        symbols = torch.from_numpy(self.decode_symbols(sections, geometry, quality)[0].astype(np.float32))
        x_hat = self.model.synthesis(symbols * STEPS[quality])
        return to_uint8(x_hat[0, :, : geometry.height, : geometry.width].clamp(0, 1))

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        self.qualities.check(quality)
        shape = (1, self.model.config.channels, ceil_div(geometry.height, STRIDE), ceil_div(geometry.width, STRIDE))
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(sections["latent"], int(np.prod(shape)) + 1)
        except zlib.error:
            raise FormatError("latent section is not valid zlib data") from None
        if len(raw) != int(np.prod(shape)) or not inflater.eof or inflater.unused_data:
            raise FormatError("latent section does not hold exactly the latents of this image")
        return [np.frombuffer(raw, dtype=np.int8).reshape(shape)]

