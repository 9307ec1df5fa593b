"""The codec of an imported mbt2018: the hyperprior's coding plus the autoregressive context model,
both sides in wavefronts (``wavefront.py``)."""
from __future__ import annotations

import numpy as np
import torch

from bitstream.coders import InformationBudget, stack_from_bytes
from bitstream.container import FormatError

from ..interface import PLAIN, EncodeOptions, Geometry, check_refine
from .codec import ImportedCodec
from .network import DOWNSAMPLING, LATENT_STRIDE, ImportedHyperprior
from .wavefront import REACH, FixedContextModel, wavefronts


class ImportedContextCodec(ImportedCodec):
    """mbt2018 (Minnen et al. 2018, with the context model), imported from CompressAI."""

    def __init__(self, model: ImportedHyperprior, coding: dict[str, torch.Tensor], device: torch.device | str = "cpu",
                 compute: str = "auto"):
        super().__init__(model, coding, device, compute)
        self.context_models = [FixedContextModel(context, parameters) for context, parameters
                               in zip(model.context_prediction, model.entropy_parameters, strict=True)]

    @torch.inference_mode()
    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        check_refine(self.capabilities, options, "an imported model")
        self.qualities.check(quality)
        y, z = self.analyse(image, quality)
        z_symbols = self.hyperlatent_symbols(z, quality)
        latents = y[0].double().numpy()
        waves, _ = self.waves(z_symbols, quality, latents.shape[1:], latents)
        return {"hyperlatent": self.z_coder.encode(z_symbols.numpy(), self.z_table_ids(z_symbols.shape, quality)),
                "latent": self.y_coder.encode_chunks(waves)}

    def waves(self, z_symbols: torch.Tensor, quality: int, size: tuple[int, int], latents: np.ndarray | None = None,
              coder=None, budget: InformationBudget | None = None
              ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """([(residuals, table ids) of each wave in decoding order], the latents y_hat (M, h, w)).
        Encoding: `latents` given, residuals = round(y - mean); decoding: residuals popped from
        `coder` with each wave's tables."""
        height, width = size
        hyper = self.hyper_parameters(z_symbols, quality)
        context = self.context_models[quality]
        padded = np.zeros((hyper.shape[0] // 2, height + 2 * REACH, width + 2 * REACH))
        coded = []
        for rows, cols in wavefronts(height, width):
            scales, means = context.distribution(hyper, padded, rows, cols)
            table_ids = self.scale_index(scales).astype(np.uint8)
            if latents is not None:
                residuals = np.round(latents[:, rows, cols] - means).astype(np.int64)
            else:
                residuals = self.y_coder.pop(coder, table_ids, budget).reshape(means.shape)
            padded[:, rows + REACH, cols + REACH] = residuals + means
            coded.append((residuals, table_ids))
        return coded, padded[:, REACH : REACH + height, REACH : REACH + width]

    def entropy_decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_symbols = self.decode_hyperlatents(sections, geometry, quality)
        m = self.model.config.widths[quality][1]
        size = (z_symbols.shape[2] * DOWNSAMPLING // LATENT_STRIDE, z_symbols.shape[3] * DOWNSAMPLING // LATENT_STRIDE)
        coder = stack_from_bytes(sections["latent"])
        waves, y_hat = self.waves(z_symbols, quality, size, coder=coder, budget=InformationBudget(coder))
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        residuals = np.zeros((m, *size), dtype=np.int64)
        for (rows, cols), (decoded, _) in zip(wavefronts(*size), waves, strict=True):
            residuals[:, rows, cols] = decoded
        return z_symbols, torch.from_numpy(residuals[None]), torch.from_numpy(y_hat[None] - residuals[None])
