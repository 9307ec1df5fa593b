"""`hyper`'s codec: the ImageCodec of the plain mean-scale hyperprior."""
from __future__ import annotations

import numpy as np
import torch

from ..core import fixedpoint
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, check_refine
from .coding import HyperpriorCoding, Quantised
from .network import DOWNSAMPLING, HYPER_SYNTHESIS_TILES, LATENT_STRIDE


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
        return {
            "hyperlatent": self.z_coder.encode(z_hat.numpy(), self.z_table_ids(z_hat.shape)),
            "latent": self.y_coder.encode(residuals.numpy(), table_ids),
        }

    def latent_means(self, z_hat: torch.Tensor, quality: int) -> torch.Tensor:
        """The bit-exact means of y given integer z_hat (what the decoder will add back)."""
        return self.latent_distribution(z_hat, quality)[0]

    def entropy_decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_hat, residuals, exact means) of a file's two sections."""
        z_hat = self.decode_hyperlatents(sections, geometry, quality)
        means, table_ids = self.latent_distribution(z_hat, quality)
        residuals = torch.from_numpy(self.y_coder.decode(sections["latent"], table_ids).reshape(means.shape))
        return z_hat, residuals, means

    def latent_distribution(self, z_hat: torch.Tensor, quality: int) -> tuple[torch.Tensor, np.ndarray]:
        """Bit-exact means (float64, CPU) and scale-table indices of y given integer z_hat: the
        fixed-point hyper-synthesis that both encoder and decoder run."""
        scaled = z_hat.to(torch.float64) * self.inv_gain_z_at(quality)[None, :, None, None]
        id_type = np.uint8 if len(self.y_table_scales) <= 256 else np.int64

        def hyper_synthesis(tile: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            means, scales = fixedpoint.run(self.hyper_synthesis, tile).chunk(2, dim=1)
            return means.contiguous(), torch.from_numpy(self.scale_index(scales.numpy()).astype(id_type))

        means, table_ids = HYPER_SYNTHESIS_TILES.run(hyper_synthesis, scaled, up=DOWNSAMPLING // LATENT_STRIDE)
        return means, table_ids.numpy().ravel()
