"""mbt2018's context model in exact fixed point, decoded in wavefronts (numpy only).

The masked 5x5 convolution reads, for latent (r, c), the rows r-2 and r-1 from c-2 to c+2 and
(r, c-2), (r, c-1). With t = 3r + c every one of them has a smaller t (the largest, (r-1, c+2),
has t - 1), so all positions of one t depend only on earlier waves: a Kodak latent (32 x 48)
decodes in 3·31 + 48 = 141 waves instead of 1,536 positions one at a time. Encoder and decoder
both run the waves (the means of a wave depend on the latents decoded before it).

The context convolution and the entropy-parameter network run in float64 on lic's fixed-point
grid (``models.runtime.fixed``: weights on 2^-14, activations on 2^-8), where every sum is exact
whatever the order: the table and mean of each latent are the same on every machine.
"""
from __future__ import annotations

import numpy as np

from bitstream.coders import InformationBudget, stack_from_bytes
from bitstream.container import FormatError

from ..runtime import fixed
from .coding import ImportedCoding, fixed_layers
from .layout import CONTEXT_KERNEL, ENTROPY_PARAMETER_LAYERS

REACH = CONTEXT_KERNEL // 2
# (row, column) offsets of the causal taps, in the order of the flattened weights
TAPS = tuple((dr, dc) for dr in range(-REACH, 1) for dc in range(-REACH, REACH + 1) if dr < 0 or dc < 0)
WAVE = (3, 1)  # t = 3·row + column


def wavefronts(height: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, columns) of the positions of each wave, in decoding order; within a wave, by row."""
    rows, cols = np.divmod(np.arange(height * width), width)
    t = WAVE[0] * rows + WAVE[1] * cols
    order = np.lexsort((rows, t))
    bounds = np.flatnonzero(np.diff(t[order])) + 1
    return [(rows[part], cols[part]) for part in np.split(order, bounds)]


def gathered_layer(weight: np.ndarray, bias: np.ndarray, taps: tuple[tuple[int, int], ...]) -> fixed.FixedConv:
    """A 5x5 convolution's weights at the (row, column) offsets `taps` as one 1x1 fixed-point layer
    over the gathered patches (inputs·taps channels, no activation): what fixed.run_pointwise runs
    on the (inputs·taps, positions) stack of those patches."""
    weight = np.asarray(weight, dtype=np.float64)
    gathered = np.stack([weight[:, :, REACH + dr, REACH + dc] for dr, dc in taps], axis=2)
    return fixed.FixedConv(fixed.integer_weight_array(gathered.reshape(weight.shape[0], -1, 1, 1)),
                           fixed.integer_bias_array(bias))


class FixedContextModel:
    """The masked convolution and the entropy-parameter network of one quality, exact, from a
    weight file's arrays (context_prediction.<q>.*, entropy_parameters.<q>.*)."""

    def __init__(self, network: dict[str, np.ndarray], quality: int):
        prefix = f"context_prediction.{quality}"
        self.context = gathered_layer(network[f"{prefix}.weight"], network[f"{prefix}.bias"], TAPS)
        self.parameters = fixed_layers(network, f"entropy_parameters.{quality}", ENTROPY_PARAMETER_LAYERS)

    def distribution(self, hyper: np.ndarray, padded: np.ndarray, rows: np.ndarray, cols: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """(scales, means), each (M, positions), of the latents at (rows, cols): hyper is the
        hyper-synthesis output (2M, h, w), padded the decoded latents (M, h + 4, w + 4)."""
        patches = np.stack([padded[:, rows + REACH + dr, cols + REACH + dc] for dr, dc in TAPS], axis=1)
        np.clip(patches, -fixed.ACT_LIMIT, fixed.ACT_LIMIT, out=patches)  # the bound check_exactness assumes
        # on the grid already: decoded latents (integers plus exact means) and the network's outputs
        context = fixed.run_pointwise([self.context], patches.reshape(-1, len(rows)), on_grid=True)
        x = fixed.run_pointwise(self.parameters, np.concatenate([hyper[:, rows, cols], context], axis=0), on_grid=True)
        scales, means = np.split(x, 2, axis=0)
        return scales, means


class WavefrontCoding(ImportedCoding):
    """mbt2018's and cheng2020-anchor's coding: the hyperprior's, then the latents in wavefronts,
    each wave's Gaussian parameters from the hyper-synthesis and the latents decoded before it;
    one stream, the waves in decoding order."""

    def __init__(self, network: dict[str, np.ndarray], coding: dict[str, np.ndarray], config: dict, architecture):
        super().__init__(network, coding, config, architecture)
        self.context_models = [FixedContextModel(network, q) for q in range(len(self.widths))]

    def encode(self, y: np.ndarray, z_symbols: np.ndarray, quality: int) -> dict[str, bytes]:
        latents = np.asarray(y[0], dtype=np.float64)
        waves, _ = self.waves(z_symbols, quality, latents.shape[1:], latents)
        return {"hyperlatent": self.encode_hyperlatents(z_symbols, quality),
                "latent": self.y_coder.encode_chunks(waves)}

    def waves(self, z_symbols: np.ndarray, quality: int, size: tuple[int, int], latents: np.ndarray | None = None,
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

    def entropy_decode(self, sections: dict[str, bytes], height: int, width: int, quality: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z_symbols = self.decode_hyperlatents(sections, height, width, quality)
        size = self.latent_size(z_symbols)
        coder = stack_from_bytes(sections["latent"])
        waves, y_hat = self.waves(z_symbols, quality, size, coder=coder, budget=InformationBudget(coder))
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        residuals = np.zeros((self.widths[quality][1], *size), dtype=np.int64)
        for (rows, cols), (decoded, _) in zip(wavefronts(*size), waves, strict=True):
            residuals[:, rows, cols] = decoded
        return z_symbols, residuals[None], y_hat[None] - residuals[None]
