"""The gc codecs: W coded with a static or a context-adaptive model, selective generation's map."""
from __future__ import annotations

import numpy as np
import torch

from bitstream import binarymap
from bitstream.coders import InformationBudget, stack_from_bytes, symbol_costs, words_to_bytes
from bitstream.container import FormatError
from bitstream.tables import TOTAL

from ..core import fixedpoint, precision
from ..core.geometry import pad_to_multiple, to_uint8, unit_float
from ..interface import PLAIN, Capabilities, EncodeOptions, Geometry, Qualities, check_refine
from .context import CENTRES, NUM_SYMBOLS, ZERO_SYMBOL, ChannelContext, quantize
from .network import (
    DOWNSAMPLING,
    ENCODER_TILES,
    GENERATOR_TILES,
    MIN_LATENT,
    GenerativeCompression,
    latent_size,
)


# ---------------------------------------------------------------------------------------------
# Exact probabilities for the entropy coder
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------
MODE_STATIC = 0
MODE_CONTEXT = 1


class GcCodec:
    """Codes W with whichever of the two entropy models gives fewer bytes (one mode byte says which).

    A selective model (config.selective) given a preservation map (EncodeOptions.preserve) codes
    the map (section "preserve", bitstream.binarymap) and only the latents it keeps; the others
    are 0 and the generator synthesises their region."""

    section_names = ("latent",)
    optional_sections: tuple[str, ...] = ()
    qualities = Qualities(1, 0, "1 (one rate, set by the bottleneck)")
    capabilities = Capabilities()

    def __init__(self, model: GenerativeCompression, coding: dict[str, torch.Tensor], device="cpu",
                 compute: str = "auto"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.compute = precision.resolve(compute, self.device)
        self.context = fixedpoint.freeze(model.context.net)
        if model.config.selective != self.capabilities.selective:
            raise ValueError(f"{type(self).__name__} cannot code a model with selective={model.config.selective}")

    @torch.inference_mode()
    def symbols(self, image: torch.Tensor) -> np.ndarray:
        """The (C, h, w) symbols 0..4 of a (3, H, W) uint8 image."""
        def encoder(tile: torch.Tensor) -> torch.Tensor:
            return self.model.features(unit_float(tile.to(self.device))).cpu()

        x = pad_to_multiple(image[None], DOWNSAMPLING, MIN_LATENT)
        with precision.autocast(self.compute, self.device):
            _, symbols = quantize(ENCODER_TILES.run(encoder, x, down=DOWNSAMPLING))
        return symbols[0].numpy().astype(np.int64)

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        self.qualities.check(quality)
        check_refine(self.capabilities, options, "this model")
        symbols = self.symbols(image)
        keep = self.kept_latents(options.preserve, symbols.shape[1:])
        sections = {}
        if keep is not None:
            symbols[:, ~keep] = ZERO_SYMBOL
            sections["preserve"] = binarymap.encode(keep)
        candidates = [self.encode_static(symbols, keep), self.encode_context(symbols, keep)]
        return {"latent": min(candidates, key=len), **sections}

    def kept_latents(self, preserve: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
        """The (h, w) latents to code for a pixel preservation map: those whose 16 x 16 block holds
        any pixel to keep. None where everything is kept (the file is then a plain one)."""
        if preserve is None:
            return None
        if not self.capabilities.selective:
            raise ValueError("this model has no selective generation (--preserve)")
        preserve = np.asarray(preserve, dtype=bool)
        padded = np.zeros((shape[0] * DOWNSAMPLING, shape[1] * DOWNSAMPLING), dtype=bool)
        rows, cols = min(preserve.shape[0], padded.shape[0]), min(preserve.shape[1], padded.shape[1])
        padded[:rows, :cols] = preserve[:rows, :cols]
        keep = padded.reshape(shape[0], DOWNSAMPLING, shape[1], DOWNSAMPLING).any(axis=(1, 3))
        return None if keep.all() else keep

    def encode_static(self, symbols: np.ndarray, keep: np.ndarray | None = None) -> bytes:
        import constriction
        kept = _kept_symbols(symbols, keep)
        counts = static_counts(kept)
        coder = constriction.stream.stack.AnsCoder()
        for channel in reversed(range(symbols.shape[0])):
            model = constriction.stream.model.Categorical(counts[channel] / TOTAL, perfect=False)
            coder.encode_reverse(kept[channel].astype(np.int32), model)
        return bytes([MODE_STATIC]) + counts.astype("<u2").tobytes() + words_to_bytes(coder.get_compressed())

    def encode_context(self, symbols: np.ndarray, keep: np.ndarray | None = None) -> bytes:
        import constriction
        w_hat = torch.from_numpy(np.asarray(CENTRES)[symbols])[None]
        coder = constriction.stream.stack.AnsCoder()
        family = constriction.stream.model.Categorical(perfect=False)
        for channel, _, positions, counts in reversed(list(self._context_steps(w_hat, keep))):
            coder.encode_reverse(symbols[channel][positions].astype(np.int32), family, counts / TOTAL)
        return bytes([MODE_CONTEXT]) + words_to_bytes(coder.get_compressed())

    def _context_steps(self, w_hat: torch.Tensor, keep: np.ndarray | None = None):
        """(channel, phase, positions, counts (n, 5)) in decoding order; w_hat may be partly known.
        Only kept positions are coded; the others hold 0 in w_hat from the start."""
        height, width = w_hat.shape[2:]
        for channel in range(w_hat.shape[1]):
            for phase in (0, 1):
                positions = ChannelContext.phase_mask(height, width, phase).numpy().astype(bool)
                if keep is not None:
                    positions &= keep
                inputs = self.model.context.inputs(w_hat.double(), channel, phase)
                logits = fixedpoint.run(self.context, inputs)[0].numpy()  # (5, h, w)
                yield channel, phase, positions, fixedpoint.integer_softmax(logits[:, positions].T)

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        symbols, *kept = self.decode_symbols(sections, geometry, quality)
        return self.synthesise(symbols, geometry.height, geometry.width, pixels=True, keep=kept[0] if kept else None)

    @torch.inference_mode()
    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """The entropy-decoded (C, h, w) symbols 0..4 of W, and with a preserve section the (h, w)
        map of the latents it keeps (uint8)."""
        self.qualities.check(quality)
        shape = (self.model.config.bottleneck, *latent_size(geometry.height, geometry.width))
        keep = None
        if "preserve" in sections:
            keep = binarymap.decode(sections["preserve"], shape[1:])
        symbols = self._decode_latent(sections["latent"], shape, keep)
        return [symbols] if keep is None else [symbols, keep.astype(np.uint8)]

    def _decode_latent(self, payload: bytes, shape: tuple[int, int, int], keep: np.ndarray | None) -> np.ndarray:
        if not payload:
            raise FormatError("empty latent section")
        mode, body = payload[0], payload[1:]
        import constriction
        symbols = np.full(shape, ZERO_SYMBOL, dtype=np.int64)
        kept = int(keep.sum()) if keep is not None else shape[1] * shape[2]
        if mode == MODE_STATIC:
            table_bytes = 2 * NUM_SYMBOLS * shape[0]
            counts = np.frombuffer(body[:table_bytes], dtype="<u2").astype(np.int64)
            if len(counts) != NUM_SYMBOLS * shape[0] or np.any(counts < 1):
                raise FormatError("invalid symbol frequency table")
            counts = counts.reshape(shape[0], NUM_SYMBOLS)
            if np.any(counts.sum(axis=1) != TOTAL):
                raise FormatError("invalid symbol frequency table")
            coder = stack_from_bytes(body[table_bytes:])
            if coder.is_empty() and not np.array_equal(counts, static_counts(np.zeros((shape[0], kept), np.int64))):
                # An empty stream decodes to the first symbol everywhere, which is what only an
                # image of that symbol alone codes to, and its table would say so.
                raise FormatError("empty entropy-coded stream under a table of other symbols (corrupted file?)")
            budget = InformationBudget(coder)
            for channel in range(shape[0]):
                model = constriction.stream.model.Categorical(counts[channel] / TOTAL, perfect=False)
                decoded = np.asarray(coder.decode(model, kept), dtype=np.int64)
                budget.spend(symbol_costs(counts[channel])[decoded].sum())
                if keep is None:
                    symbols[channel] = decoded.reshape(shape[1:])
                else:
                    symbols[channel][keep] = decoded
        elif mode == MODE_CONTEXT:
            coder = stack_from_bytes(body)
            family = constriction.stream.model.Categorical(perfect=False)
            w_hat = torch.zeros((1, *shape), dtype=torch.float64)
            budget = InformationBudget(coder)
            for channel, _, positions, counts in self._context_steps(w_hat, keep):
                decoded = np.asarray(coder.decode(family, counts / TOTAL), dtype=np.int64)
                budget.spend(symbol_costs(np.take_along_axis(counts, decoded[:, None], axis=1)).sum())
                symbols[channel][positions] = decoded
                w_hat[0, channel][torch.from_numpy(positions)] = torch.tensor(CENTRES, dtype=torch.float64)[decoded]
        else:
            raise FormatError(f"unknown latent coding mode {mode}")
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        return symbols

    @torch.inference_mode()
    def synthesise(self, symbols: np.ndarray, height: int, width: int, pixels: bool = False,
                   keep: np.ndarray | None = None) -> torch.Tensor:
        """The generator's image (3, height, width) in [0, 1] (pixels=True: 8-bit) of (C, h, w)
        symbols; keep (h, w): the latents coded, the rest synthesised (selective models)."""
        w_hat = torch.tensor(CENTRES, dtype=torch.float32)[torch.from_numpy(symbols)][None]
        channels = w_hat.shape[1]
        if self.model.config.selective:  # the map rides along as a last channel through the tiling
            plane = torch.ones(1, 1, *w_hat.shape[2:]) if keep is None else torch.from_numpy(keep).float()[None, None]
            w_hat = torch.cat([w_hat, plane], dim=1)

        def generator(tile: torch.Tensor) -> torch.Tensor:
            tile = tile.to(self.device)
            preserve = tile[:, channels:] if self.model.config.selective else None
            x_hat = self.model.synthesise(tile[:, :channels], preserve).float().clamp_(0, 1).cpu()
            return to_uint8(x_hat) if pixels else x_hat

        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            x_hat = GENERATOR_TILES.run(generator, w_hat, up=DOWNSAMPLING)
        return x_hat[0, :, :height, :width]


class SelectiveGcCodec(GcCodec):
    """GcCodec of a selective model (gc-c4-sc): takes EncodeOptions.preserve."""

    capabilities = Capabilities(selective=True)
    optional_sections = ("preserve",)


def _kept_symbols(symbols: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """(C, n) symbols at the kept positions (all of them without a map), in raster order."""
    return symbols.reshape(symbols.shape[0], -1) if keep is None else symbols[:, keep]


