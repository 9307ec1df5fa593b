"""Coding W, the gc models' five-level latent, in numpy alone (the torch codec and the torch-free
runtime both code through it): a static per-channel model or the channel-autoregressive context
model in fixed point, whichever is shorter (one mode byte says which)."""
from __future__ import annotations

import numpy as np

from bitstream import binarymap
from bitstream.coders import InformationBudget, stack_from_bytes, symbol_costs, words_to_bytes
from bitstream.container import FormatError
from bitstream.tables import TOTAL

from ..runtime import fixed
from .layout import DOWNSAMPLING, latent_size
from .symbols import CENTRES, NUM_SYMBOLS, ZERO_SYMBOL

MODE_STATIC = 0
MODE_CONTEXT = 1
CONTEXT_LAYERS = (0, 2, 4, 6)  # the convolutions of ChannelContext.net (ReLUs between)


def static_counts(symbols: np.ndarray) -> np.ndarray:
    """Per-channel counts (C, 5) summing to TOTAL with every count >= 1, from a (C, ...) array."""
    channels = symbols.shape[0]
    histogram = np.stack([np.bincount(symbols[c].ravel(), minlength=NUM_SYMBOLS) for c in range(channels)])
    weights = histogram.astype(np.int64) * 1024 + 1
    spare = TOTAL - NUM_SYMBOLS
    counts = 1 + (spare * weights) // weights.sum(axis=1, keepdims=True)
    top = np.argmax(counts, axis=1)
    counts[np.arange(channels), top] += TOTAL - counts.sum(axis=1)
    return counts


def phase_mask(height: int, width: int, phase: int) -> np.ndarray:
    """The checkerboard half (h, w) bool coded in `phase` (0: the anchors, rows + cols even)."""
    return (np.add.outer(np.arange(height), np.arange(width)) % 2) == phase


def context_inputs(w_hat: np.ndarray, channel: int, phase: int) -> np.ndarray:
    """What the decoder knows before coding (channel, phase) of w_hat (C, h, w), as the context
    model's 3C + 1 input planes (models.gc.context.ChannelContext.inputs, one image)."""
    channels, height, width = w_hat.shape
    known = np.zeros((channels, height, width))
    known[:channel] = 1
    if phase == 1:
        known[channel] = phase_mask(height, width, 0)
    target = np.zeros((channels, height, width))
    target[channel] = 1
    return np.concatenate([w_hat * known, known, target, phase_mask(height, width, phase)[None]])


def context_layers(network: dict[str, np.ndarray], prefix: str = "context.net.") -> list[fixed.FixedConv]:
    """The context model's fixed-point layers from its parameters (3x3, 3x3, 1x1, 1x1)."""
    kinds = ({"padding": 1, "relu": True}, {"padding": 1, "relu": True}, {"relu": True}, {})
    return [fixed.layer_from(network, f"{prefix}{index}", **kind) for index, kind in zip(CONTEXT_LAYERS, kinds,
                                                                                          strict=True)]


class LatentCoder:
    """Encodes and decodes the symbols (C, h, w) in 0..4 of W, all of them or those where a map
    `keep` (h, w) is set (the others are the zero symbol, synthesised by a selective model)."""

    def __init__(self, layers: list[fixed.FixedConv]):
        self.layers = layers
        self.centres = np.asarray(CENTRES)

    def encode(self, symbols: np.ndarray, keep: np.ndarray | None = None) -> bytes:
        return min(self.encode_static(symbols, keep), self.encode_context(symbols, keep), key=len)

    def encode_static(self, symbols: np.ndarray, keep: np.ndarray | None = None) -> bytes:
        import constriction
        kept = kept_symbols(symbols, keep)
        counts = static_counts(kept)
        coder = constriction.stream.stack.AnsCoder()
        for channel in reversed(range(symbols.shape[0])):
            model = constriction.stream.model.Categorical(counts[channel] / TOTAL, perfect=False)
            coder.encode_reverse(kept[channel].astype(np.int32), model)
        return bytes([MODE_STATIC]) + counts.astype("<u2").tobytes() + words_to_bytes(coder.get_compressed())

    def encode_context(self, symbols: np.ndarray, keep: np.ndarray | None = None) -> bytes:
        import constriction
        w_hat = self.centres[symbols]
        coder = constriction.stream.stack.AnsCoder()
        family = constriction.stream.model.Categorical(perfect=False)
        for channel, positions, counts in reversed(list(self.context_steps(w_hat, keep))):
            coder.encode_reverse(symbols[channel][positions].astype(np.int32), family, counts / TOTAL)
        return bytes([MODE_CONTEXT]) + words_to_bytes(coder.get_compressed())

    def context_steps(self, w_hat: np.ndarray, keep: np.ndarray | None = None):
        """(channel, positions (h, w) bool, counts (n, 5)) in decoding order; w_hat (C, h, w) may be
        partly known (a decoder fills it in between steps). Only kept positions are coded."""
        channels, height, width = w_hat.shape
        for channel in range(channels):
            for phase in (0, 1):
                positions = phase_mask(height, width, phase)
                if keep is not None:
                    positions &= keep
                logits = fixed.run(self.layers, context_inputs(w_hat, channel, phase))  # (5, h, w)
                yield channel, positions, fixed.integer_softmax(logits[:, positions].T)

    def decode(self, payload: bytes, shape: tuple[int, int, int], keep: np.ndarray | None = None) -> np.ndarray:
        """The symbols (C, h, w) of a latent section; the zero symbol where `keep` is not set."""
        if not payload:
            raise FormatError("empty latent section")
        mode, body = payload[0], payload[1:]
        symbols = np.full(shape, ZERO_SYMBOL, dtype=np.int64)
        if mode == MODE_STATIC:
            coder = self.decode_static(body, symbols, keep)
        elif mode == MODE_CONTEXT:
            coder = self.decode_context(body, symbols, keep)
        else:
            raise FormatError(f"unknown latent coding mode {mode}")
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        return symbols

    @staticmethod
    def decode_static(body: bytes, symbols: np.ndarray, keep: np.ndarray | None):
        import constriction
        channels = symbols.shape[0]
        kept = int(keep.sum()) if keep is not None else symbols[0].size
        table_bytes = 2 * NUM_SYMBOLS * channels
        counts = np.frombuffer(body[:table_bytes], dtype="<u2").astype(np.int64)
        if len(counts) != NUM_SYMBOLS * channels or np.any(counts < 1):
            raise FormatError("invalid symbol frequency table")
        counts = counts.reshape(channels, NUM_SYMBOLS)
        if np.any(counts.sum(axis=1) != TOTAL):
            raise FormatError("invalid symbol frequency table")
        coder = stack_from_bytes(body[table_bytes:])
        if coder.is_empty() and not np.array_equal(counts, static_counts(np.zeros((channels, kept), np.int64))):
            # An empty stream decodes to the first symbol everywhere, which is what only an image
            # of that symbol alone codes to, and its table would say so.
            raise FormatError("empty entropy-coded stream under a table of other symbols (corrupted file?)")
        budget = InformationBudget(coder)
        for channel in range(channels):
            model = constriction.stream.model.Categorical(counts[channel] / TOTAL, perfect=False)
            decoded = np.asarray(coder.decode(model, kept), dtype=np.int64)
            budget.spend(symbol_costs(counts[channel])[decoded].sum())
            if keep is None:
                symbols[channel] = decoded.reshape(symbols.shape[1:])
            else:
                symbols[channel][keep] = decoded
        return coder

    def decode_context(self, body: bytes, symbols: np.ndarray, keep: np.ndarray | None):
        import constriction
        coder = stack_from_bytes(body)
        family = constriction.stream.model.Categorical(perfect=False)
        w_hat = np.zeros(symbols.shape)
        budget = InformationBudget(coder)
        for channel, positions, counts in self.context_steps(w_hat, keep):
            decoded = np.asarray(coder.decode(family, counts / TOTAL), dtype=np.int64)
            budget.spend(symbol_costs(np.take_along_axis(counts, decoded[:, None], axis=1)).sum())
            symbols[channel][positions] = decoded
            w_hat[channel][positions] = self.centres[decoded]
        return coder


def kept_symbols(symbols: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """(C, n) symbols at the kept positions (all of them without a map), in raster order."""
    return symbols.reshape(symbols.shape[0], -1) if keep is None else symbols[:, keep]


def kept_latents(preserve: np.ndarray | None, shape: tuple[int, int], selective: bool) -> np.ndarray | None:
    """The (h, w) latents to code for a pixel preservation map: those whose 16 x 16 block holds any
    pixel to keep. None where everything is kept (the file is then a plain one)."""
    if preserve is None:
        return None
    if not selective:
        raise ValueError("this model has no selective generation (--preserve)")
    preserve = np.asarray(preserve, dtype=bool)
    padded = np.zeros((shape[0] * DOWNSAMPLING, shape[1] * DOWNSAMPLING), dtype=bool)
    rows, cols = min(preserve.shape[0], padded.shape[0]), min(preserve.shape[1], padded.shape[1])
    padded[:rows, :cols] = preserve[:rows, :cols]
    keep = padded.reshape(shape[0], DOWNSAMPLING, shape[1], DOWNSAMPLING).any(axis=(1, 3))
    return None if keep.all() else keep


def encode_sections(coder: LatentCoder, symbols: np.ndarray, preserve: np.ndarray | None,
                    selective: bool) -> dict[str, bytes]:
    """The sections of an image's symbols (C, h, w): "latent", and "preserve" (bitstream.binarymap)
    where a map keeps only part of it (the other latents become the zero symbol)."""
    keep = kept_latents(preserve, symbols.shape[1:], selective)
    if keep is None:
        return {"latent": coder.encode(symbols)}
    symbols = np.where(keep, symbols, ZERO_SYMBOL)
    return {"latent": coder.encode(symbols, keep), "preserve": binarymap.encode(keep)}


def decode_sections(coder: LatentCoder, sections: dict[str, bytes], channels: int, height: int,
                    width: int) -> list[np.ndarray]:
    """The symbols (C, h, w) 0..4 of W, and with a preserve section the (h, w) map of the latents
    it keeps (uint8)."""
    shape = (channels, *latent_size(height, width))
    if "preserve" not in sections:
        return [coder.decode(sections["latent"], shape)]
    keep = binarymap.decode(sections["preserve"], shape[1:])
    return [coder.decode(sections["latent"], shape, keep), keep.astype(np.uint8)]


def symbols_of(features: np.ndarray) -> np.ndarray:
    """The nearest centre's index (C, h, w) of each continuous W value (1, C, h, w) (ties: the lower)."""
    return np.argmin(np.abs(features[0][..., None] - np.asarray(CENTRES)), axis=-1).astype(np.int64)


def synthesis_input(symbols: np.ndarray, keep: np.ndarray | None, selective: bool) -> np.ndarray:
    """(1, C (+1), h, w) float32: the centres of the symbols, and for a selective model the map of
    the coded latents as a last plane (all ones without a map)."""
    w_hat = np.asarray(CENTRES, dtype=np.float32)[symbols][None]
    if not selective:
        return w_hat
    plane = np.ones((1, 1, *symbols.shape[1:]), np.float32) if keep is None else keep.astype(np.float32)[None, None]
    return np.concatenate([w_hat, plane], axis=1)
