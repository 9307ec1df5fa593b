"""Lossless coding of a small binary map (e.g. which latents a file codes), context-adaptively.

Each cell is coded with a probability from its context, the three neighbours decoded before it
(left, above, above-left; outside the map counts as 0), that adapts to the map as it is coded.
Cells are coded by anti-diagonals (row + column = d): every context of diagonal d lies on the
diagonals before it, so each diagonal is one vectorised constriction call, and a map of n x m
cells takes n + m - 1 calls. The probabilities are ratios of integer counts, so every machine
derives the same ones. A box of 1s in a field of 0s costs a few bytes.
"""
from __future__ import annotations

import constriction
import numpy as np

from .coders import InformationBudget, stack_from_bytes, words_to_bytes
from .container import FormatError

# Initial counts (of 0, of 1) per context = left + 2 * above + 4 * above-left, in units of 1/16
# observation: what maps of a few solid regions look like (inside and outside stay, edges run on).
_PRIOR = np.array([
    [4000, 96],   # 0 0 0: outside
    [1600, 2496],  # left 1: the run of a region's top row goes on
    [1600, 2496],  # above 1: a region's left edge goes on
    [160, 3936],  # left 1, above 1: inside
    [3936, 160],  # above-left 1 only: below a region's bottom-right corner
    [2496, 1600],  # left 1, above-left 1, above 0: right of a region's right edge
    [2048, 2048],  # above 1, above-left 1, left 0: the region narrows or goes on
    [96, 4000],   # all 1: inside
], dtype=np.int64)
_STEP = 16  # one coded cell adds one observation


def encode(cells: np.ndarray) -> bytes:
    """The coded form of a 2-D boolean map (its shape is not stored: the decoder must know it)."""
    cells = np.asarray(cells, dtype=bool)
    steps = list(_diagonal_steps(cells))
    coder = constriction.stream.stack.AnsCoder()
    family = constriction.stream.model.Categorical(perfect=False)
    for bits, probabilities in reversed(steps):
        coder.encode_reverse(bits.astype(np.int32), family, probabilities)
    return words_to_bytes(coder.get_compressed())


def decode(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The boolean map of the given shape that ``encode`` wrote into data; a stream that is too
    short for it or has data left over is refused (FormatError)."""
    coder = stack_from_bytes(data)
    family = constriction.stream.model.Categorical(perfect=False)
    budget = InformationBudget(coder)
    padded = np.zeros((shape[0] + 1, shape[1] + 1), dtype=bool)
    counts = _PRIOR.copy()
    for rows, cols in _diagonals(shape):
        contexts = _contexts(padded, rows, cols)
        probabilities = _probabilities(counts, contexts)
        bits = np.asarray(coder.decode(family, probabilities), dtype=np.int64)
        budget.spend(-np.log2(probabilities[np.arange(len(bits)), bits]).sum())
        padded[rows + 1, cols + 1] = bits.astype(bool)
        _observe(counts, contexts, bits)
    if not coder.is_empty():
        raise FormatError("coded map has data left over (corrupted file?)")
    return padded[1:, 1:].copy()


def _diagonal_steps(cells: np.ndarray):
    """(bits, probabilities) of each anti-diagonal in coding order, as the decoder will see them."""
    counts = _PRIOR.copy()
    padded = np.pad(cells, ((1, 0), (1, 0)))
    for rows, cols in _diagonals(cells.shape):
        contexts = _contexts(padded, rows, cols)
        bits = cells[rows, cols].astype(np.int64)
        yield bits, _probabilities(counts, contexts)
        _observe(counts, contexts, bits)


def _diagonals(shape: tuple[int, int]):
    height, width = shape
    for diagonal in range(height + width - 1):
        rows = np.arange(max(0, diagonal - width + 1), min(height, diagonal + 1))
        yield rows, diagonal - rows


def _contexts(padded: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Contexts of the cells (rows, cols) of a map held at (rows + 1, cols + 1) of padded, whose
    first row and column are 0 (outside the map)."""
    left = padded[rows + 1, cols]
    above = padded[rows, cols + 1]
    above_left = padded[rows, cols]
    return left.astype(np.int64) + 2 * above + 4 * above_left


def _probabilities(counts: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    chosen = counts[contexts].astype(np.float64)
    return chosen / chosen.sum(axis=1, keepdims=True)


def _observe(counts: np.ndarray, contexts: np.ndarray, bits: np.ndarray) -> None:
    np.add.at(counts, (contexts, bits), _STEP)
