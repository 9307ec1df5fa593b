"""What the hyperprior codecs share: the frozen coding tensors, the quality ladder and the exact
(fixed-point) hyper-synthesis that selects the Gaussian tables."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from bitstream.tables import quantize_pmfs

from ..core import precision
from ..core.entropy import (
    channel_table_ids,
    gaussian_pmfs,
    gaussian_scale_table,
    tables_to_tensors,
)
from ..core.geometry import ceil_div, pad_to_multiple, to_uint8, unit_float
from ..core.layers import run_decoder
from ..interface import Geometry
from .exact import HyperCoding
from .layout import GAIN_FRAC_BITS, ladder_qualities
from .network import (
    ANALYSIS_TILES,
    DOWNSAMPLING,
    HYPER_ANALYSIS_TILES,
    LATENT_STRIDE,
    SYNTHESIS_TILES,
    MeanScaleHyperprior,
    interpolated_rows,
)


# ---------------------------------------------------------------------------------------------
# Coding: frozen integer tables + fixed-point hyper-synthesis, driving the bitstream coders.
# ---------------------------------------------------------------------------------------------
def freeze_coding_tensors(model: MeanScaleHyperprior) -> dict[str, torch.Tensor]:
    """What the entropy coders depend on and cannot be re-derived exactly, for the weight file.

    The fixed-point hyper-synthesis is not stored: rounding the fp16 parameters to its grid is exact
    arithmetic, so ``HyperCodec`` derives the same integers on any machine at load time.
    """
    z_tables = quantize_pmfs(*model.density.tabulate())
    scales = gaussian_scale_table()
    y_tables = quantize_pmfs(*gaussian_pmfs(scales))
    inv_gain_z = torch.round(torch.exp(model.log_inv_gain_z.detach().double()) * 2.0**GAIN_FRAC_BITS)
    tensors = {
        "y_table_scales": torch.from_numpy(scales),
        "inv_gain_z": inv_gain_z.to(torch.int32),
        **tables_to_tensors(z_tables, "z_tables"),
        **tables_to_tensors(y_tables, "y_tables"),
    }
    return tensors


@dataclass(frozen=True)
class Quantised:
    z_hat: torch.Tensor  # int64 hyperlatents
    residuals: torch.Tensor  # int64 round(y - means)
    means: torch.Tensor  # float64, bit-exact (what the decoder adds back)
    table_ids: np.ndarray  # the scale table entry of each latent


class LatentSynthesis:
    """What every codec of this family shares: loading, analysis, and latents-to-pixels."""

    model: MeanScaleHyperprior
    continuous_quality = False  # codes qualities between the trained ones (interpolated gains)

    def __init__(self, model: MeanScaleHyperprior, device: torch.device | str, compute: str):
        self.model = model.eval().to(device).to(memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.compute = precision.resolve(compute, self.device)
        self.qualities = ladder_qualities(model.lambdas.tolist(), self.continuous_quality)

    def quality_tensor(self, quality: float) -> torch.Tensor:
        """(1,) the quality as the model's gain functions take it: an index, or a fraction between two."""
        if float(quality).is_integer():
            return torch.tensor([int(quality)], device=self.device)
        return torch.tensor([quality], dtype=torch.float64, device=self.device)

    def lambda_at(self, quality: float) -> float:
        """The rate-distortion trade-off of a quality (interpolated geometrically between two)."""
        if float(quality).is_integer():
            return float(self.model.lambdas[int(quality)])
        logs = self.model.lambdas.detach().double().log().cpu()[:, None]
        return float(interpolated_rows(logs, self.quality_tensor(quality).cpu()).exp())

    def padded_batch(self, image: torch.Tensor) -> torch.Tensor:
        """A (3, H, W) image as the (1, 3, H', W') batch the analysis takes (sides padded to 64)."""
        return pad_to_multiple(image[None], DOWNSAMPLING)

    def analysis_latents(self, image: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Gain-scaled continuous latents y of a (3, H, W) image, tile by tile (float32, CPU)."""
        return self.gained_latents(self.analysis_features(image), q)

    def analysis_features(self, image: torch.Tensor) -> torch.Tensor:
        """The analysis transform's output before the quality gain (float32, CPU): what every
        quality of one image shares."""
        def analysis(tile: torch.Tensor) -> torch.Tensor:
            tile = unit_float(tile.to(self.device)).contiguous(memory_format=torch.channels_last)
            return self.model.g_a(tile).float().cpu()

        with precision.autocast(self.compute, self.device):
            return ANALYSIS_TILES.run(analysis, self.padded_batch(image), down=LATENT_STRIDE)

    def gained_latents(self, features: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return features * self.model.gain(self.model.log_gain_y.detach().cpu(), q.cpu()).float()

    def latent_shape(self, geometry: Geometry, channels: int, stride: int) -> tuple[int, int, int, int]:
        return (1, channels, ceil_div(geometry.height, stride), ceil_div(geometry.width, stride))

    @torch.inference_mode()
    def synthesise(self, residuals: torch.Tensor, means: torch.Tensor, quality: int, height: int,
                   width: int, pixels: bool = False) -> torch.Tensor:
        """The decoder's reconstruction (3, height, width) from integer residuals and the exact
        means, in [0, 1] (pixels=True: 8-bit, what the decoder writes); the one place that turns
        latents into pixels, for decoding and for SGA's score."""
        y_hat = residuals.to(torch.float64, copy=True)
        y_hat += means
        log_gain = interpolated_rows(self.model.log_inv_gain_y.detach().double().cpu(),
                                     self.quality_tensor(quality).cpu())
        y_hat *= torch.exp(log_gain)[:, :, None, None]
        y_hat = y_hat.to(torch.float32)

        def synthesis(tile: torch.Tensor) -> torch.Tensor:
            tile = tile.to(self.device).contiguous(memory_format=torch.channels_last)
            x_hat = run_decoder(self.model.g_s, tile).float().clamp_(0, 1).cpu()
            return to_uint8(x_hat) if pixels else x_hat

        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            x_hat = SYNTHESIS_TILES.run(synthesis, y_hat, up=LATENT_STRIDE)
        return x_hat[0, :, :height, :width]

    def z_table_ids(self, shape) -> np.ndarray:
        """The table of each hyperlatent of a (1, N, h, w) array: one factorized density per channel."""
        return channel_table_ids(shape)


class HyperpriorCoding(LatentSynthesis):
    """A trained hyperprior ready to code: its exact coding (``exact.py``, the numpy that the
    torch-free runtime runs too) and the analysis; what `hyper` and the codecs built on its latents
    share."""

    exact_class = HyperCoding

    def __init__(self, model: MeanScaleHyperprior, coding: dict[str, torch.Tensor], device: torch.device | str = "cpu",
                 compute: str = "auto"):
        super().__init__(model, device, compute)
        network = {name: value.detach().cpu().numpy() for name, value in model.state_dict().items()}
        self.exact = self.exact_class(network, {name: value.numpy() for name, value in coding.items()},
                                      dataclasses.asdict(model.config))
        if len(self.exact.z_coder.tables) != model.config.channels:
            raise ValueError("coding tables do not match the network")

    @torch.inference_mode()
    def analyse(self, image: torch.Tensor, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The amortized (encoder-network) latents of a (3, H, W) uint8 image: continuous y and z
        in the gain-scaled domain, shapes (1, M, H'/16, W'/16) and (1, N, H'/64, W'/64), H' padded."""
        self.qualities.check(quality)
        return self.latents_at(self.analysis_features(image), quality)

    def latents_at(self, features: torch.Tensor, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, z) of an image's analysis features (before the gain) at one quality."""
        y = self.gained_latents(features, self.quality_tensor(quality))
        return y, self.hyper_analyse(y, quality)

    @torch.inference_mode()
    def prepare(self, image: torch.Tensor) -> PreparedLatents:
        """The analysis of a (3, H, W) image, run once; .encode(quality) then codes it at any quality
        (rate control), repeating only the gain, the hyper-analysis, quantisation and coding."""
        return PreparedLatents(self, self.analysis_features(image))

    def encode_analysed(self, y: torch.Tensor, z: torch.Tensor, quality: float) -> dict[str, bytes]:
        """The coded sections of continuous latents y and hyperlatents z (each family's coding)."""
        raise NotImplementedError

    @torch.inference_mode()
    def hyper_analyse(self, y: torch.Tensor, quality: float) -> torch.Tensor:
        """The continuous hyperlatents z of gain-scaled latents y (as `analyse` returns them)."""
        q = self.quality_tensor(quality)

        def hyper_analysis(tile: torch.Tensor) -> torch.Tensor:
            tile = tile.to(self.device).contiguous(memory_format=torch.channels_last)
            return self.model.hyper_analysis(tile, q).float().cpu()

        with precision.autocast(self.compute, self.device):
            return HYPER_ANALYSIS_TILES.run(hyper_analysis, y, down=DOWNSAMPLING // LATENT_STRIDE)


    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        """Returns the (3, height, width) uint8 reconstruction."""
        _, residuals, means = self.entropy_decode(sections, geometry, quality)
        return self.synthesise(residuals, means, quality, geometry.height, geometry.width, pixels=True)

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """The entropy-decoded integers: hyperlatents and latent residuals."""
        z_hat, residuals, _ = self.entropy_decode(sections, geometry, quality)
        return [z_hat.numpy(), residuals.numpy()]

    def entropy_decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_hat, residuals, exact means) of a file's two sections (the quality checked first)."""
        self.qualities.check(quality)
        arrays = self.exact.entropy_decode(sections, geometry.height, geometry.width, quality)
        return tuple(torch.from_numpy(array) for array in arrays)


@dataclass
class PreparedLatents:
    """An image analysed once by a hyperprior codec (HyperpriorCoding.prepare)."""

    codec: HyperpriorCoding
    features: torch.Tensor  # the analysis transform's output before the quality gain

    @torch.inference_mode()
    def encode(self, quality: float) -> dict[str, bytes]:
        self.codec.qualities.check(quality)
        return self.codec.encode_analysed(*self.codec.latents_at(self.features, quality), quality)
