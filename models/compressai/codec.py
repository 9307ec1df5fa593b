"""The codec of an imported CompressAI hyperprior: CompressAI's transforms, lic's exact coding."""
from __future__ import annotations

import numpy as np
import torch

from bitstream.coders import TableCoder
from bitstream.tables import quantize_pmfs

from ..core import fixedpoint, precision
from ..core.entropy import gaussian_pmfs, gaussian_scale_table, tables_from_tensors, tables_to_tensors
from ..core.geometry import ceil_div, pad_to_multiple, to_uint8, unit_float
from ..core.layers import run_decoder
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, Qualities, check_refine
from .network import (
    ANALYSIS_TILES,
    DOWNSAMPLING,
    HYPER_ANALYSIS_TILES,
    HYPER_SYNTHESIS_TILES,
    LATENT_STRIDE,
    SYNTHESIS_TILES,
    ImportedHyperprior,
)


def snapped_medians(model: ImportedHyperprior, quality: int) -> torch.Tensor:
    """(N,) float64: the entropy bottleneck's medians on the fixed-point activation grid, so that
    z_hat = symbol + median enters the fixed-point hyper-synthesis exactly."""
    return fixedpoint.snap_activation(model.medians[quality].detach().double().cpu())


def freeze_coding_tensors(model: ImportedHyperprior) -> dict[str, torch.Tensor]:
    """The integer tables: each quality's hyperlatent densities around its snapped medians (one
    table per channel, the qualities one after the other) and the Gaussian scale table."""
    offsets, rows = [], []
    for quality, density in enumerate(model.density):
        low, masses = density.tabulate(shift=snapped_medians(model, quality).numpy())
        offsets.extend(low.tolist())
        rows.extend(masses)
    scales = gaussian_scale_table()
    return {
        "y_table_scales": torch.from_numpy(scales),
        **tables_to_tensors(quantize_pmfs(np.asarray(offsets, dtype=np.int64), rows), "z_tables"),
        **tables_to_tensors(quantize_pmfs(*gaussian_pmfs(scales)), "y_tables"),
    }


def qualities(config: dict) -> Qualities:
    count = len(config.get("widths", ((128, 192),)))
    return Qualities(count, count // 2, f"1-{count} (a network per imported checkpoint)" if count > 1
                     else "one per imported checkpoint")


class ImportedCodec:
    """Encodes images with one of the imported networks (the quality picks which)."""

    section_names = ("hyperlatent", "latent")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities()

    def __init__(self, model: ImportedHyperprior, coding: dict[str, torch.Tensor], device: torch.device | str = "cpu",
                 compute: str = "auto"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.compute = precision.resolve(compute, self.device)
        self.qualities = qualities({"widths": model.config.widths})
        self.mean = model.config.mean
        self.lambdas = model.config.lambdas  # the trade-off each network was trained for, if known
        if self.lambdas and not model.config.context:
            self.capabilities = Capabilities(refine=("sga",))
        self.hyper_synthesis = [fixedpoint.freeze(stack) for stack in model.h_s]
        self.medians = [snapped_medians(model, q) for q in range(model.num_qualities)]
        self.first_table = np.cumsum([0] + [n for n, _ in model.config.widths]).tolist()
        self.scale_index = fixedpoint.TableIndex(coding["y_table_scales"].numpy().astype(np.float64))
        z_tables = tables_from_tensors(coding, "z_tables")
        if len(z_tables) != self.first_table[-1]:
            raise ValueError("coding tables do not match the network")
        self.z_coder = TableCoder(z_tables)
        self.y_coder = TableCoder(tables_from_tensors(coding, "y_tables"))

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8 -> the coded sections at network `quality`."""
        check_refine(self.capabilities, options, "this imported model (sga needs lic import --lambdas)")
        self.qualities.check(quality)
        if options.refine is not None:
            from .sga import refine

            z_symbols, residuals = refine(self, image, quality, options.refine, options.on_progress)
            _, table_ids = self.latent_distribution(z_symbols, quality)
        else:
            y, z = self.analyse(image, quality)
            z_symbols = self.hyperlatent_symbols(z, quality)
            means, table_ids = self.latent_distribution(z_symbols, quality)
            residuals = torch.round(y.double() - means).to(torch.int64)
        return {"hyperlatent": self.z_coder.encode(z_symbols.numpy(), self.z_table_ids(z_symbols.shape, quality)),
                "latent": self.y_coder.encode(residuals.numpy(), table_ids)}

    def hyperlatent_symbols(self, z: torch.Tensor, quality: int) -> torch.Tensor:
        """The coded symbols of continuous hyperlatents: round(z - median), as CompressAI rounds them."""
        return torch.round(z.double() - self.medians[quality][None, :, None, None]).to(torch.int64)

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

    # -- what both sides compute exactly ----------------------------------------------------
    @torch.inference_mode()
    def latent_distribution(self, z_symbols: torch.Tensor, quality: int) -> tuple[torch.Tensor, np.ndarray]:
        """(means, table ids) of y given the hyperlatent symbols: the fixed-point hyper-synthesis
        on z_hat = symbols + medians. Means are float64 on the activation grid (zeros for a
        scale-only model); ids index the scale table, flat in y's order."""
        z_hat = z_symbols.to(torch.float64) + self.medians[quality][None, :, None, None]
        layers = self.hyper_synthesis[quality]

        def hyper_synthesis(tile: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = fixedpoint.run(layers, tile)
            scales, means = out.chunk(2, dim=1) if self.mean else (out, torch.zeros_like(out))
            return means.contiguous(), torch.from_numpy(self.scale_index(scales.numpy()).astype(np.uint8))

        means, table_ids = HYPER_SYNTHESIS_TILES.run(hyper_synthesis, z_hat, up=DOWNSAMPLING // LATENT_STRIDE)
        return means, table_ids.numpy().ravel()

    def hyper_parameters(self, z_symbols: torch.Tensor, quality: int) -> np.ndarray:
        """(C, h, w): the fixed-point hyper-synthesis of z_hat = symbols + medians, whole (C = 2M
        means and scales for mbt2018's context model, 2N features for ELIC's)."""
        z_hat = z_symbols.to(torch.float64) + self.medians[quality][None, :, None, None]
        layers = self.hyper_synthesis[quality]
        out = HYPER_SYNTHESIS_TILES.run(lambda tile: fixedpoint.run(layers, tile), z_hat,
                                        up=DOWNSAMPLING // LATENT_STRIDE)
        return out[0].numpy()

    def z_table_ids(self, shape: tuple[int, ...], quality: int) -> np.ndarray:
        channels = shape[1]
        ids = np.arange(self.first_table[quality], self.first_table[quality] + channels, dtype=np.int64)
        return np.broadcast_to(ids[:, None, None], shape[1:]).ravel()

    # -- decoding ---------------------------------------------------------------------------
    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        z_symbols, residuals, _ = self.entropy_decode(sections, geometry, quality)
        return [z_symbols.numpy(), residuals.numpy()]

    def decode_hyperlatents(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        """The hyperlatent symbols of a file (the quality checked first)."""
        self.qualities.check(quality)
        n = self.model.config.widths[quality][0]
        z_shape = (1, n, ceil_div(geometry.height, DOWNSAMPLING), ceil_div(geometry.width, DOWNSAMPLING))
        return torch.from_numpy(self.z_coder.decode(sections["hyperlatent"], self.z_table_ids(z_shape, quality))
                                .reshape(z_shape))

    def entropy_decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_symbols = self.decode_hyperlatents(sections, geometry, quality)
        means, table_ids = self.latent_distribution(z_symbols, quality)
        residuals = torch.from_numpy(self.y_coder.decode(sections["latent"], table_ids).reshape(means.shape))
        return z_symbols, residuals, means

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        """The (3, height, width) uint8 reconstruction."""
        _, residuals, means = self.entropy_decode(sections, geometry, quality)
        return self.synthesise(residuals, means, quality, geometry.height, geometry.width)

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
