"""Coding cpm's symbols in numpy alone (the torch codec and the torch-free runtime both code through
it): the importance map, then the masked symbols under the exact context model, on one ANS stack,
decoded in wavefronts."""
from __future__ import annotations

import numpy as np

from bitstream.coders import InformationBudget, stack_from_bytes, symbol_costs, words_to_bytes
from bitstream.container import FormatError
from bitstream.tables import TOTAL

from ..runtime import fixed
from .importance_coding import channel_mask, pop_importance, push_importance
from .layout import context_tiles, latent_size
from .wavefront import FixedContext, wavefront_steps


class SymbolCoder:
    """Encodes and decodes a latent section: (coded-channel counts (h, w), symbols (K, h, w))."""

    def __init__(self, context: FixedContext, channels: int):
        self.context = context
        self.channels = channels

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
            tables.append(fixed.integer_softmax(logits[order]))
        return np.concatenate(coded), np.concatenate(tables)

    def decode(self, payload: bytes, image_height: int, image_width: int,
               quality: int) -> tuple[np.ndarray, np.ndarray]:
        """(coded-channel counts (h, w), symbols (K, h, w) with -1 where not coded)."""
        import constriction
        height, width = latent_size(image_height, image_width)
        coder = stack_from_bytes(payload)
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
            tables = fixed.integer_softmax(logits)
            decoded = np.asarray(coder.decode(family, tables / TOTAL), dtype=np.int64)
            budget.spend(symbol_costs(np.take_along_axis(tables, decoded[:, None], axis=1)).sum())
            self.context.set_symbols(volume, positions[wanted], decoded)
            symbols[positions[wanted]] = decoded
        return symbols.reshape(mask.shape)

