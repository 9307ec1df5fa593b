"""A weight file's integer probability tables as the coders take them, without torch (the torch
path's ``models.core.entropy`` uses these too)."""
from __future__ import annotations

import numpy as np

from bitstream.tables import IntegerTables


def tables_from_arrays(coding: dict[str, np.ndarray], prefix: str) -> IntegerTables:
    """The tables stored under prefix.offsets, .lengths, .counts (counts: 16-bit patterns, or int32
    in files written before those)."""
    offsets, lengths, counts = (np.asarray(coding[f"{prefix}.{name}"]) for name in ("offsets", "lengths", "counts"))
    if counts.dtype == np.int16:
        counts = counts.view(np.uint16)
    return IntegerTables(offsets.astype(np.int32), lengths.astype(np.int32), counts.astype(np.int32))


def channel_table_ids(shape: tuple[int, ...]) -> np.ndarray:
    """The table of each element of a (..., C, h, w) array coded with table c in channel c, flat in
    the array's order; 8-bit where the channel count allows (a large image has many elements)."""
    channels = shape[-3]
    ids = np.arange(channels, dtype=np.uint8 if channels <= 256 else np.int64)[:, None, None]
    return np.broadcast_to(ids, shape).ravel()
