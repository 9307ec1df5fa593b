"""The ANS stack of bits-back coding: carried bytes at the bottom, padding, coded images on top.

Bits-back coding *decodes* hyperlatents from whatever lies on the stack and so "borrows" those
bits; the decoder gives them back by re-encoding. What lies there must be real data (it is what
the file carries for free) and there must be enough of it: decoding from a stack that runs dry
yields degenerate, expensive symbols. So below the carried bytes the encoder may put *padding*:
a fixed pseudo-random word sequence, ``padding_word(0)`` nearest the carried bytes. The decoder
checks that the padding it gets back is exactly that sequence, which doubles as an integrity check.
See docs/format.md, "Bits-back coding".
"""
from __future__ import annotations

import constriction
import numpy as np

from .container import FormatError

_MASK64 = (1 << 64) - 1


def padding_words(count: int) -> np.ndarray:
    """The first `count` padding words (SplitMix64 from seed 0, low 32 bits), word 0 first."""
    state, words = 0, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        words.append((z ^ (z >> 31)) & 0xFFFFFFFF)
    return np.asarray(words, dtype=np.uint32)


def carried_words(carried: bytes) -> np.ndarray:
    padded = carried + bytes(-len(carried) % 4)
    return np.frombuffer(padded, dtype="<u4").astype(np.uint32)


def initial_stack(carried: bytes, padding: int):
    """An ANS stack holding `padding` padding words under the carried bytes (top of stack = end)."""
    words = np.concatenate([padding_words(padding)[::-1], carried_words(carried)])
    # Sealing appends a 1-word so that any word sequence, trailing zeros included, survives.
    return constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32), seal=True)


def recover_carried(coder, carried_bytes: int, padding: int) -> bytes:
    """Undo ``initial_stack`` after every borrowed symbol was pushed back; checks the padding."""
    try:
        words = np.asarray(coder.get_compressed(unseal=True), dtype=np.uint32)
    except Exception:
        raise FormatError("bits-back stream does not end where it should (corrupted file?)") from None
    expected = padding + -(-carried_bytes // 4)
    if len(words) != expected:
        raise FormatError("bits-back stream returned the wrong number of carried words (corrupted file?)")
    if not np.array_equal(words[:padding], padding_words(padding)[::-1]):
        raise FormatError("bits-back padding did not come back intact (corrupted file?)")
    data = words[padding:].astype("<u4").tobytes()
    if any(data[carried_bytes:]):
        raise FormatError("bits-back carried data has non-zero fill bytes (corrupted file?)")
    return data[:carried_bytes]


def untouched_bottom_words(coder) -> int:
    """How many words at the bottom of a stack were certainly never read (the head is <= 2 words)."""
    return max(0, int(coder.num_words()) - 2)
