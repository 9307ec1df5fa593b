"""Coding the importance map: median-edge prediction with fitted two-sided geometric residuals."""
from __future__ import annotations

import numpy as np

from bitstream.coders import InformationBudget, symbol_costs
from bitstream.container import FormatError
from bitstream.tables import TOTAL

from ..runtime import fixed

# ---------------------------------------------------------------------------------------------
# The importance map: how many channels each position codes
# ---------------------------------------------------------------------------------------------
# Ratios (x / 2^16) of two-sided geometric distributions of prediction residuals, from sharp to
# flat; the encoder picks the one that codes its map in fewest bits and sends its index.
SPREADS = tuple(range(1024, 1 << 16, 4096))


def residual_counts(spread: int, channels: int) -> np.ndarray:
    """Counts (2K+1,) over residuals -K..K: weight 2^40 * ratio^|r|, in integer arithmetic."""
    weights = [1 << 40]
    for _ in range(channels):
        weights.append(weights[-1] * SPREADS[spread] >> 16)
    one_side = np.array(weights, dtype=np.int64)
    return fixed.counts_from_weights(np.concatenate([one_side[:0:-1], one_side]))


def med_prediction(counts: np.ndarray, rows: np.ndarray, cols: np.ndarray, channels: int) -> np.ndarray:
    """LOCO-I's median edge detector: each position's prediction from its left, upper and upper-left
    neighbours (the image border repeats the neighbour that exists; the first position: K/2)."""
    has_up, has_left = rows > 0, cols > 0
    up_row, left_col = np.maximum(rows - 1, 0), np.maximum(cols - 1, 0)
    left = np.where(has_left, counts[rows, left_col], np.where(has_up, counts[up_row, cols], channels // 2))
    up = np.where(has_up, counts[up_row, cols], left)
    corner = np.where(has_up & has_left, counts[up_row, left_col], np.where(has_up, up, left))
    low, high = np.minimum(left, up), np.maximum(left, up)
    return np.where(corner >= high, low, np.where(corner <= low, high, left + up - corner))


def antidiagonals(height: int, width: int):
    """(rows, cols) of each antidiagonal h + w = d: the importance map's decoding steps."""
    for d in range(height + width - 1):
        rows = np.arange(max(0, d - width + 1), min(height, d + 1))
        yield rows, d - rows


def push_importance(coder, counts: np.ndarray, channels: int) -> None:
    import constriction
    rows, cols = np.concatenate([np.stack(rc) for rc in antidiagonals(*counts.shape)], axis=1)
    residuals = counts[rows, cols] - med_prediction(counts, rows, cols, channels) + channels
    costs = [symbol_costs(residual_counts(s, channels))[residuals].sum() for s in range(len(SPREADS))]
    spread = int(np.argmin(costs))
    model = constriction.stream.model.Categorical(residual_counts(spread, channels) / TOTAL, perfect=False)
    coder.encode_reverse(residuals.astype(np.int32), model)
    coder.encode_reverse(np.array([spread], dtype=np.int32), constriction.stream.model.Uniform(len(SPREADS)))


def pop_importance(coder, budget: InformationBudget, height: int, width: int, channels: int) -> np.ndarray:
    import constriction
    spread = int(coder.decode(constriction.stream.model.Uniform(len(SPREADS)), 1)[0])
    table = residual_counts(spread, channels)
    model = constriction.stream.model.Categorical(table / TOTAL, perfect=False)
    costs = symbol_costs(table)
    counts = np.zeros((height, width), dtype=np.int64)
    for rows, cols in antidiagonals(height, width):
        residuals = np.asarray(coder.decode(model, len(rows)), dtype=np.int64)
        budget.spend(costs[residuals].sum())
        values = med_prediction(counts, rows, cols, channels) + residuals - channels
        if values.min() < 0 or values.max() > channels:
            raise FormatError("importance map out of range (corrupted file?)")
        counts[rows, cols] = values
    return counts


def channel_mask(counts: np.ndarray, channels: int) -> np.ndarray:
    """(h, w) coded-channel counts -> (K, h, w) bool: channel k is coded where k < count."""
    return np.arange(channels)[:, None, None] < counts[None]
