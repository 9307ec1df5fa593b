"""`hyper`'s codec: the ImageCodec of the plain mean-scale hyperprior."""
from __future__ import annotations

import numpy as np
import torch

from ..interface import PLAIN, Capabilities, EncodeOptions, check_refine
from .coding import HyperpriorCoding, Quantised


class HyperCodec(HyperpriorCoding):
    """Encodes images to named byte sections and back with a trained MeanScaleHyperprior."""

    section_names = ("hyperlatent", "latent")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(refine=("sga",), prepares=True)
    continuous_quality = True

    def quantise(self, y: torch.Tensor, z: torch.Tensor, quality: int) -> Quantised:
        """What plain encoding codes for continuous latents: z rounded, y rounded around the exact
        means that z_hat predicts."""
        z_hat = torch.round(z).to(torch.int64)
        means, table_ids = self.latent_distribution(z_hat, quality)
        residuals = y.to(torch.float64, copy=True)
        residuals -= means
        return Quantised(z_hat, residuals.round_().to(torch.int64), means, table_ids)

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8. Returns the coded sections; options.refine runs SGA first."""
        check_refine(self.capabilities, options, "this model")
        if options.refine is not None:
            from .sga import refine
            result = refine(self, image, quality, options.refine, options.on_progress)
            return self.encode_latents(result.z_hat, result.residuals, quality)
        return self.encode_analysed(*self.analyse(image, quality), quality)

    def encode_analysed(self, y: torch.Tensor, z: torch.Tensor, quality: float) -> dict[str, bytes]:
        coded = self.quantise(y, z, quality)
        z_hat, residuals, table_ids = coded.z_hat, coded.residuals, coded.table_ids
        del coded  # the means: as large as the latents, and not needed for coding
        return self.encode_latents(z_hat, residuals, quality, table_ids)

    def encode_latents(self, z_hat: torch.Tensor, residuals: torch.Tensor, quality: int,
                       table_ids: np.ndarray | None = None) -> dict[str, bytes]:
        """Entropy-code integer hyperlatents and latent residuals round(y - mean(z_hat)).

        table_ids may be passed when the caller already ran the hyper-synthesis for z_hat."""
        if table_ids is None:
            _, table_ids = self.latent_distribution(z_hat, quality)
        return self.exact.encode_residuals(z_hat.numpy(), residuals.numpy(), table_ids)

    def latent_means(self, z_hat: torch.Tensor, quality: int) -> torch.Tensor:
        """The bit-exact means of y given integer z_hat (what the decoder will add back)."""
        return self.latent_distribution(z_hat, quality)[0]

    def latent_distribution(self, z_hat: torch.Tensor, quality: int) -> tuple[torch.Tensor, np.ndarray]:
        """Bit-exact means (float64, CPU) and scale-table indices of y given integer z_hat: the
        fixed-point hyper-synthesis that both encoder and decoder run (exact.py)."""
        means, table_ids = self.exact.latent_distribution(z_hat.numpy(), quality)
        return torch.from_numpy(means), table_ids
