"""Integer probability tables: the only probabilities the entropy coders ever see."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRECISION_BITS = 16
TOTAL = 1 << PRECISION_BITS


@dataclass(frozen=True)
class IntegerTables:
    """A family of discrete distributions over integer supports, each with an escape symbol.

    Table t covers the values offsets[t] .. offsets[t] + lengths[t] - 1 with counts[t, :lengths[t]];
    counts[t, lengths[t]] is the escape symbol (a value outside the support). Every row sums to TOTAL.
    """

    offsets: np.ndarray  # (T,) int32
    lengths: np.ndarray  # (T,) int32
    counts: np.ndarray  # (T, max(lengths) + 1) int32, zero-padded

    def __post_init__(self):
        t = len(self.offsets)
        if self.lengths.shape != (t,) or self.counts.ndim != 2 or self.counts.shape[0] != t:
            raise ValueError("inconsistent table shapes")
        if np.any(self.lengths < 1) or np.any(self.lengths + 1 > self.counts.shape[1]):
            raise ValueError("invalid table lengths")
        used = np.arange(self.counts.shape[1])[None, :] <= self.lengths[:, None]
        if np.any(self.counts[used] < 1) or np.any(self.counts[~used] != 0):
            raise ValueError("table counts must be >= 1 on the support and 0 outside")
        if np.any(self.counts.sum(axis=1, dtype=np.int64) != TOTAL):
            raise ValueError(f"every table must sum to {TOTAL}")

    def __len__(self) -> int:
        return len(self.offsets)

    def probabilities(self, table: int) -> np.ndarray:
        """Row t including its escape symbol, as exactly representable float64 fractions."""
        return self.counts[table, : self.lengths[table] + 1].astype(np.float64) / TOTAL

    def bits(self, values: np.ndarray, table_ids: np.ndarray) -> float:
        """Ideal code length in bits of values under their tables (escape payloads not counted)."""
        local = values - self.offsets[table_ids]
        escaped = (local < 0) | (local >= self.lengths[table_ids])
        symbols = np.where(escaped, self.lengths[table_ids], local)
        return float(-np.log2(self.counts[table_ids, symbols] / TOTAL).sum())


def quantize_pmfs(offsets: np.ndarray, pmfs: list[np.ndarray]) -> IntegerTables:
    """Round float pmfs (one per table, over its support) to integer counts summing to TOTAL.

    The mass outside each support becomes the escape symbol. Every symbol keeps a count >= 1.
    """
    lengths = np.array([len(p) for p in pmfs], dtype=np.int32)
    counts = np.zeros((len(pmfs), int(lengths.max()) + 1), dtype=np.int32)
    for t, pmf in enumerate(pmfs):
        pmf = np.clip(np.asarray(pmf, dtype=np.float64), 0, None)
        probs = np.append(pmf, max(0.0, 1.0 - float(pmf.sum())))
        if len(probs) > TOTAL // 2:
            raise ValueError(f"table {t} has too many symbols for {PRECISION_BITS}-bit counts")
        counts[t, : len(probs)] = _integer_counts(probs / probs.sum())
    return IntegerTables(np.asarray(offsets, dtype=np.int32), lengths, counts)


def _integer_counts(probs: np.ndarray) -> np.ndarray:
    """Counts >= 1 summing to TOTAL, close to probs * TOTAL (deterministic tie-breaks)."""
    scaled = probs * TOTAL
    counts = np.maximum(1, np.floor(scaled)).astype(np.int64)
    excess = int(counts.sum()) - TOTAL
    if excess < 0:  # hand out what flooring lost, largest remainders first
        remainder = np.where(scaled >= 1, scaled - counts, -1.0)
        counts[np.argsort(-remainder, kind="stable")[:-excess]] += 1
    while excess > 0:  # the forced minimum of 1 overshot: take it back from the largest counts
        order = np.argsort(-counts, kind="stable")
        take = order[: min(excess, int((counts > 1).sum()))]
        counts[take] -= 1
        excess -= len(take)
    return counts
