"""Thin typed wrappers over constriction's ANS stack, driven by integer tables."""
from __future__ import annotations

import constriction
import numpy as np

from .container import FormatError
from .tables import TOTAL, IntegerTables

_BIT_LENGTH_MODEL = constriction.stream.model.Uniform(65)
_CHUNK_BITS = 16
_CHUNK_MODEL = constriction.stream.model.Uniform(1 << _CHUNK_BITS)


class TableCoder:
    """Codes integer arrays where element i uses table table_ids[i].

    Symbols are grouped by table (increasing id, original order inside a group) so that one
    vectorised constriction call codes each group. Values outside a table's support are coded as
    its escape symbol followed by the value itself, so every int64 round-trips.
    """

    def __init__(self, tables: IntegerTables):
        self.tables = tables
        self._models = [
            constriction.stream.model.Categorical(tables.probabilities(t), perfect=False) for t in range(len(tables))
        ]
        self._costs = [symbol_costs(tables.counts[t, : tables.lengths[t] + 1]) for t in range(len(tables))]

    def encode(self, values: np.ndarray, table_ids: np.ndarray) -> bytes:
        coder = constriction.stream.stack.AnsCoder()
        self.push(coder, values, table_ids)
        return words_to_bytes(coder.get_compressed())

    def encode_chunks(self, chunks) -> bytes:
        """One stream of several (values, table ids) chunks, which a decoder pops chunk by chunk in
        the order given (each pop may depend on the chunks before it)."""
        coder = constriction.stream.stack.AnsCoder()
        for values, table_ids in reversed(list(chunks)):  # a stack: the first chunk decoded is pushed last
            self.push(coder, values, table_ids)
        return words_to_bytes(coder.get_compressed())

    def decode(self, data: bytes, table_ids: np.ndarray) -> np.ndarray:
        """The values of a stream written by ``encode``; it must be consumed exactly. (An empty
        stream is valid here: it is what values that are all their tables' first symbols code to.)"""
        coder = stack_from_bytes(data)
        values = self.pop(coder, table_ids)
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        return values

    def push(self, coder, values: np.ndarray, table_ids: np.ndarray) -> None:
        """Encode onto an existing ANS stack so that ``pop`` with the same table ids returns values."""
        values, table_ids = _flat_pair(values, table_ids)
        # A stack is last-in first-out: push everything in the reverse of the decoding order.
        for table, positions in reversed(self._groups(table_ids)):
            group = values[positions]
            local = group - self.tables.offsets[table]
            escaped = (local < 0) | (local >= self.tables.lengths[table])
            for value in group[escaped][::-1]:
                _push_escaped_value(coder, int(value))
            symbols = np.where(escaped, self.tables.lengths[table], local).astype(np.int32)
            coder.encode_reverse(symbols, self._models[table])

    def pop(self, coder, table_ids: np.ndarray, budget: InformationBudget | None = None) -> np.ndarray:
        """budget: the stream's, when a decoder pops it in several calls (one budget for the
        whole stream; a fresh one per call would allow its slack on every call)."""
        table_ids = _flat_ids(table_ids)
        values = np.empty(len(table_ids), dtype=np.int64)
        budget = budget if budget is not None else InformationBudget(coder)
        for table, positions in self._groups(table_ids):
            symbols = np.asarray(coder.decode(self._models[table], len(positions)), dtype=np.int64)
            budget.spend(self._costs[table][symbols].sum())
            group = symbols + self.tables.offsets[table]
            for i in np.nonzero(symbols == self.tables.lengths[table])[0]:
                group[i] = _pop_escaped_value(coder)
            values[positions] = group
        return values

    def _groups(self, table_ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
        if table_ids.size and (table_ids.min() < 0 or table_ids.max() >= len(self.tables)):
            raise ValueError("table id out of range")
        if not table_ids.size:
            return []
        # A stable sort of 8/16-bit keys is a radix sort in numpy: ~10x faster than on int64 ids.
        narrow = np.uint8 if len(self.tables) <= 1 << 8 else np.uint16 if len(self.tables) <= 1 << 16 else np.int64
        keys = table_ids.astype(narrow)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.concatenate(([0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1))
        bounds = np.append(starts[1:], len(order))
        return [(int(sorted_keys[s]), order[s:e]) for s, e in zip(starts, bounds, strict=True)]


class ClosedTableCoder(TableCoder):
    """A TableCoder without escapes, for decoding *arbitrary* bits into symbols (bits-back).

    Popping from data that was not pushed by this coder must be a bijection that a later push
    undoes exactly; an escape symbol would break that (its payload has no canonical form), so the
    escape probability is folded into each table's most probable symbol and values outside a
    support cannot be pushed at all.
    """

    def __init__(self, tables: IntegerTables):
        self.tables = tables
        self._models = []
        for t in range(len(tables)):
            counts = tables.counts[t, : tables.lengths[t] + 1].astype(np.int64)
            closed = counts[:-1].copy()
            closed[int(np.argmax(closed))] += counts[-1]
            self._models.append(constriction.stream.model.Categorical(closed / closed.sum(), perfect=False))

    def push(self, coder, values: np.ndarray, table_ids: np.ndarray) -> None:
        values, table_ids = _flat_pair(values, table_ids)
        for table, positions in reversed(self._groups(table_ids)):
            local = values[positions] - self.tables.offsets[table]
            if np.any((local < 0) | (local >= self.tables.lengths[table])):
                raise FormatError("bits-back symbol outside its distribution's support (corrupted file?)")
            coder.encode_reverse(local.astype(np.int32), self._models[table])

    def pop(self, coder, table_ids: np.ndarray) -> np.ndarray:
        table_ids = _flat_ids(table_ids)
        values = np.empty(len(table_ids), dtype=np.int64)
        for table, positions in self._groups(table_ids):
            symbols = np.asarray(coder.decode(self._models[table], len(positions)), dtype=np.int64)
            values[positions] = symbols + self.tables.offsets[table]
        return values


def symbol_costs(counts: np.ndarray) -> np.ndarray:
    """-log2 of each symbol's probability under integer counts (summing to 2^16)."""
    return -np.log2(np.asarray(counts, dtype=np.float64) / TOTAL)


class InformationBudget:
    """Stops decoding a stream that cannot hold the symbols popped from it.

    An ANS stack holds at least the information of its symbols (less the state's 64 bits), but
    popping from an exhausted stack never fails: a few garbage bytes would decode to any number
    of symbols. So a decoder spends each popped symbol's -log2 p against the bits the stack held,
    and a stream that overdraws by more than rounding can explain is refused at once."""

    SLACK = 1.01

    def __init__(self, coder):
        self.available = self.SLACK * coder.num_bits() + 1024
        self.spent = 0.0

    def spend(self, bits: float) -> None:
        self.spent += float(bits)
        if self.spent > self.available:
            raise FormatError("entropy-coded stream is too short for the image it declares (corrupted file?)")


def _flat_ids(table_ids: np.ndarray) -> np.ndarray:
    """Table ids flattened, in whatever integer type they come (a large image has one per latent)."""
    table_ids = np.asarray(table_ids).ravel()
    return table_ids if table_ids.dtype.kind in "iu" else table_ids.astype(np.int64)


def _flat_pair(values: np.ndarray, table_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, dtype=np.int64).ravel()
    table_ids = _flat_ids(table_ids)
    if values.shape != table_ids.shape:
        raise ValueError("values and table_ids must have the same number of elements")
    return values, table_ids


def words_to_bytes(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype=np.uint32).astype("<u4").tobytes()


def bytes_to_words(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise FormatError("entropy-coded stream length is not a multiple of 4 bytes")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def stack_from_bytes(data: bytes):
    """An ANS stack holding a coded stream (as written by ``words_to_bytes``)."""
    try:
        return constriction.stream.stack.AnsCoder(bytes_to_words(data))
    except Exception as error:  # constriction rejects e.g. a stream ending in a zero word
        raise FormatError(f"invalid entropy-coded stream ({error})") from None


def _zigzag(value: int) -> int:
    return 2 * value if value >= 0 else -2 * value - 1


def _unzigzag(code: int) -> int:
    return code // 2 if code % 2 == 0 else -(code + 1) // 2


def _push_escaped_value(coder, value: int) -> None:
    code = _zigzag(value)
    bit_length = code.bit_length()
    chunks = [(code >> shift) & ((1 << _CHUNK_BITS) - 1) for shift in range(0, bit_length, _CHUNK_BITS)]
    # Decoder pops the bit length first, then the chunks from least significant upwards.
    for chunk in reversed(chunks):
        coder.encode_reverse(np.array([chunk], dtype=np.int32), _CHUNK_MODEL)
    coder.encode_reverse(np.array([bit_length], dtype=np.int32), _BIT_LENGTH_MODEL)


def _pop_escaped_value(coder) -> int:
    bit_length = int(coder.decode(_BIT_LENGTH_MODEL, 1)[0])
    code = 0
    for shift in range(0, bit_length, _CHUNK_BITS):
        code |= int(coder.decode(_CHUNK_MODEL, 1)[0]) << shift
    return _unzigzag(code)
