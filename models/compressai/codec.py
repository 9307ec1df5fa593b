"""The codec of an imported CompressAI model: CompressAI's transforms on torch, lic's exact coding
(``coding.py``, the numpy that the torch-free runtime runs too)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from bitstream.tables import quantize_pmfs

from ..core import precision
from ..core.entropy import gaussian_pmfs, gaussian_scale_table, tables_to_tensors
from ..core.geometry import pad_to_multiple, to_uint8, unit_float
from ..core.layers import run_decoder
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, check_refine
from .coding import coding_class, snapped_medians
from .elic import ElicConfig
from .layout import (
    ANALYSIS_TILES,
    DOWNSAMPLING,
    HYPER_ANALYSIS_TILES,
    LATENT_STRIDE,
    SYNTHESIS_TILES,
    Architecture,
)
from .network import ImportedHyperprior


def freeze_coding_tensors(model: ImportedHyperprior) -> dict[str, torch.Tensor]:
    """The integer tables: each quality's hyperlatent densities around its snapped medians (one
    table per channel, the qualities one after the other) and the Gaussian scale table."""
    offsets, rows = [], []
    for quality, density in enumerate(model.density):
        medians = {f"medians.{quality}": model.medians[quality].detach().cpu().numpy()}
        low, masses = density.tabulate(shift=snapped_medians(medians, quality))
        offsets.extend(low.tolist())
        rows.extend(masses)
    scales = gaussian_scale_table()
    return {
        "y_table_scales": torch.from_numpy(scales),
        **tables_to_tensors(quantize_pmfs(np.asarray(offsets, dtype=np.int64), rows), "z_tables"),
        **tables_to_tensors(quantize_pmfs(*gaussian_pmfs(scales)), "y_tables"),
    }


def architecture_of(model: ImportedHyperprior) -> Architecture:
    config = model.config
    return Architecture(config.mean, config.context, config.residual, elic=isinstance(config, ElicConfig))


class ImportedCodec:
    """Encodes images with one of the imported networks (the quality picks which); the exact
    coding is ``self.exact`` (coding.py), the transforms run on torch."""

    section_names = ("hyperlatent", "latent")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities()

    def __init__(self, model: ImportedHyperprior, coding: dict[str, torch.Tensor], device: torch.device | str = "cpu",
                 compute: str = "auto"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.compute = precision.resolve(compute, self.device)
        architecture = architecture_of(model)
        network = {name: value.detach().cpu().numpy() for name, value in model.state_dict().items()}
        self.exact = coding_class(architecture)(network, {name: value.numpy() for name, value in coding.items()},
                                                dataclasses.asdict(model.config), architecture)
        self.qualities = self.exact.qualities
        self.mean = model.config.mean
        self.lambdas = model.config.lambdas  # the trade-off each network was trained for, if known
        if self.lambdas and not model.config.context:
            self.capabilities = Capabilities(refine=("sga",))
        self.z_coder, self.y_coder = self.exact.z_coder, self.exact.y_coder

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8 -> the coded sections at network `quality`."""
        check_refine(self.capabilities, options, "this imported model (sga needs lic import --lambdas)")
        self.qualities.check(quality)
        if options.refine is not None:
            from .sga import refine

            z_symbols, residuals = refine(self, image, quality, options.refine, options.on_progress)
            _, table_ids = self.latent_distribution(z_symbols, quality)
            return {"hyperlatent": self.exact.encode_hyperlatents(z_symbols.numpy(), quality),
                    "latent": self.y_coder.encode(residuals.numpy(), table_ids)}
        y, z = self.analyse(image, quality)
        return self.exact.encode(y.numpy(), self.exact.hyperlatent_symbols(z.numpy(), quality), quality)

    def hyperlatent_symbols(self, z: torch.Tensor, quality: int) -> torch.Tensor:
        """The coded symbols of continuous hyperlatents: round(z - median), as CompressAI rounds them."""
        return torch.from_numpy(self.exact.hyperlatent_symbols(z.numpy(), quality))

    @torch.inference_mode()
    def analyse(self, image: torch.Tensor, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, z): the analysis and hyper-analysis outputs (float32) of a (3, H, W) image, sides padded
        to multiples of 64."""
        g_a, h_a = self.model.g_a[quality], self.model.h_a[quality]

        def analysis(tile: torch.Tensor) -> torch.Tensor:
            return g_a(unit_float(tile.to(self.device))).float().cpu()

        def hyper_analysis(tile: torch.Tensor) -> torch.Tensor:
            tile = tile.to(self.device)
            return h_a(tile if self.mean else tile.abs()).float().cpu()

        with precision.autocast(self.compute, self.device):
            y = ANALYSIS_TILES.run(analysis, pad_to_multiple(image[None], DOWNSAMPLING), down=LATENT_STRIDE)
            z = HYPER_ANALYSIS_TILES.run(hyper_analysis, y, down=DOWNSAMPLING // LATENT_STRIDE)
        return y, z

    # -- what both sides compute exactly (coding.py) ------------------------------------------
    def latent_distribution(self, z_symbols: torch.Tensor, quality: int) -> tuple[torch.Tensor, np.ndarray]:
        """(means, table ids) of y given the hyperlatent symbols: means float64 on the activation
        grid (zeros for a scale-only model), ids flat in y's order."""
        means, table_ids = self.exact.latent_distribution(z_symbols.numpy(), quality)
        return torch.from_numpy(means), table_ids

    def z_table_ids(self, shape: tuple[int, ...], quality: int) -> np.ndarray:
        return self.exact.z_table_ids(shape, quality)

    # -- decoding ---------------------------------------------------------------------------
    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        self.qualities.check(quality)
        z_symbols, residuals, _ = self.exact.entropy_decode(sections, geometry.height, geometry.width, quality)
        return [z_symbols, residuals]

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        """The (3, height, width) uint8 reconstruction."""
        self.qualities.check(quality)
        _, residuals, means = self.exact.entropy_decode(sections, geometry.height, geometry.width, quality)
        return self.synthesise(torch.from_numpy(residuals), torch.from_numpy(means), quality, geometry.height,
                               geometry.width)

    @torch.inference_mode()
    def synthesise(self, residuals: torch.Tensor, means: torch.Tensor, quality: int, height: int,
                   width: int) -> torch.Tensor:
        """The decoder's 8-bit pixels (3, height, width) of integer residuals and exact means."""
        y_hat = (residuals.to(torch.float64) + means).to(torch.float32)
        g_s = self.model.g_s[quality]

        def synthesis(tile: torch.Tensor) -> torch.Tensor:
            tile = tile.to(self.device).contiguous(memory_format=torch.channels_last)
            return to_uint8(run_decoder(g_s, tile).float().clamp_(0, 1).cpu())

        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            x_hat = SYNTHESIS_TILES.run(synthesis, y_hat, up=LATENT_STRIDE)
        return x_hat[0, :, :height, :width]
