"""cpm's codec, its qualities and frozen coding tensors."""
from __future__ import annotations

import numpy as np
import torch

from bitstream.coders import InformationBudget, stack_from_bytes, symbol_costs, words_to_bytes
from bitstream.container import FormatError
from bitstream.tables import TOTAL

from ..core import fixedpoint, precision
from ..core.geometry import ceil_div, pad_to_multiple, to_uint8, unit_float
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, Qualities, check_refine
from .importance_coding import channel_mask, pop_importance, push_importance
from .network import (
    CONTEXT_TILE,
    DECODER_TILES,
    DOWNSAMPLING,
    ENCODER_TILES,
    ConditionalProbabilityModel,
    CpmConfig,
    quantize,
)
from .wavefront import FixedContext, wavefront_steps


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------
def latent_size(height: int, width: int) -> tuple[int, int]:
    return ceil_div(height, DOWNSAMPLING), ceil_div(width, DOWNSAMPLING)


def context_tiles(height: int, width: int):
    """(rows, cols) slices of the independently coded context tiles, in coding order."""
    for top in range(0, height, CONTEXT_TILE):
        for left in range(0, width, CONTEXT_TILE):
            yield slice(top, min(height, top + CONTEXT_TILE)), slice(left, min(width, left + CONTEXT_TILE))


def qualities(config: dict | CpmConfig) -> Qualities:
    targets = config.targets if isinstance(config, CpmConfig) else config.get("targets", CpmConfig().targets)
    listed = ", ".join(f"{t:g}" for t in targets)
    return Qualities(len(targets), len(targets) // 2, f"{len(targets)} (MS-SSIM; symbol-rate targets {listed} bpp)")


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
        self.context = FixedContext(model)

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
        return {"latent": self.encode_symbols(counts, symbols, quality)}

    def encode_symbols(self, counts: np.ndarray, symbols: np.ndarray, quality: int) -> bytes:
        import constriction
        coded, probabilities = self.coding_order(counts, symbols, quality)
        coder = constriction.stream.stack.AnsCoder()
        if coded.size:
            family = constriction.stream.model.Categorical(perfect=False)
            coder.encode_reverse(coded.astype(np.int32), family, probabilities / TOTAL)
        push_importance(coder, counts, self.channels)
        return words_to_bytes(coder.get_compressed())

    def coding_order(self, counts: np.ndarray, symbols: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """(coded symbols, their counts (n, L)) in decoding order, the context model run in parallel."""
        mask = channel_mask(counts, self.channels)
        coded, tables = [], []
        for rows, cols in context_tiles(*counts.shape):
            tile_mask, tile_symbols = mask[:, rows, cols], symbols[:, rows, cols]
            volume = self.context.volume(tile_mask.shape, tile_mask, quality)
            known = np.flatnonzero(tile_mask.ravel())
            self.context.set_symbols(volume, known, tile_symbols.ravel()[known])
            logits = np.zeros((tile_mask.size, len(self.context.values)))
            logits[known] = self.context.all_logits(volume)
            order, _ = wavefront_steps(tile_mask.shape)
            order = order[tile_mask.ravel()[order]]
            coded.append(tile_symbols.ravel()[order])
            tables.append(fixedpoint.integer_softmax(logits[order]))
        return np.concatenate(coded), np.concatenate(tables)

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
        import constriction
        self.qualities.check(quality)
        height, width = latent_size(geometry.height, geometry.width)
        coder = stack_from_bytes(sections["latent"])
        budget = InformationBudget(coder)
        counts = pop_importance(coder, budget, height, width, self.channels)
        mask = channel_mask(counts, self.channels)
        symbols = np.full((self.channels, height, width), -1, dtype=np.int64)
        family = constriction.stream.model.Categorical(perfect=False)
        for rows, cols in context_tiles(height, width):
            symbols[:, rows, cols] = self.decode_tile(coder, budget, family, mask[:, rows, cols], quality)
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        return counts, symbols

    def decode_tile(self, coder, budget: InformationBudget, family, mask: np.ndarray, quality: int) -> np.ndarray:
        """One context tile's symbols (-1 where not coded), wavefront by wavefront."""
        volume = self.context.volume(mask.shape, mask, quality)
        coded_flags = mask.ravel()
        symbols = np.full(coded_flags.size, -1, dtype=np.int64)
        order, starts = wavefront_steps(mask.shape)
        for step in range(len(starts) - 1):
            positions = order[starts[step]:starts[step + 1]]
            logits = self.context.logits(volume, positions)
            wanted = coded_flags[positions]
            if not wanted.any():
                continue
            tables = fixedpoint.integer_softmax(logits)
            decoded = np.asarray(coder.decode(family, tables / TOTAL), dtype=np.int64)
            budget.spend(symbol_costs(np.take_along_axis(tables, decoded[:, None], axis=1)).sum())
            self.context.set_symbols(volume, positions[wanted], decoded)
            symbols[positions[wanted]] = decoded
        return symbols.reshape(mask.shape)


def build(config: dict) -> ConditionalProbabilityModel:
    return ConditionalProbabilityModel(CpmConfig(**{**config, "targets": tuple(config.get("targets",
                                                                                          CpmConfig().targets))}))


def freeze_coding_tensors(model: ConditionalProbabilityModel) -> dict[str, torch.Tensor]:
    """Nothing to freeze: the fixed-point context model is derived exactly from the fp16 weights."""
    return {}
