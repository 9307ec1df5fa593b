"""Overlapping tiles, which bound the memory of a translation-equivariant network on any image;
for torch tensors and numpy arrays alike (the torch-free runtime tiles as the torch path does)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def empty_like(example, shape: tuple[int, ...]):
    """An uninitialised array of `shape` of the example's kind and type (numpy or torch)."""
    if isinstance(example, np.ndarray):
        return np.empty(shape, dtype=example.dtype)
    return example.new_empty(shape)


@dataclass(frozen=True)
class Tiles:
    """How a translation-equivariant network runs on a large input: squares of `core` input
    positions, each seen with `margin` more on every side (at least the network's receptive
    field, so that tiles meet without seams), the margins' outputs cropped away. Fixed by the
    model, never by the machine, so decoded pixels do not depend on where they are decoded."""

    core: int
    margin: int

    def run(self, network: Callable, x, up: int = 1, down: int = 1):
        """network(x) for a (1, C, H, W) input (tensor or array) whose output (a tensor, or a tuple of them) has
        H*up/down rows (likewise columns), tile by tile; an input within one tile runs whole,
        exactly as untiled."""
        height, width = x.shape[2:]
        if height <= self.core and width <= self.core:
            return network(x)
        if self.core % down or self.margin % down:
            raise ValueError("tile core and margin must be multiples of the downsampling")
        results = None
        for top in range(0, height, self.core):
            for left in range(0, width, self.core):
                bottom, right = min(top + self.core, height), min(left + self.core, width)
                rows = (max(0, top - self.margin), min(height, bottom + self.margin))
                cols = (max(0, left - self.margin), min(width, right + self.margin))
                outs = network(x[:, :, rows[0]:rows[1], cols[0]:cols[1]])
                outs = outs if isinstance(outs, tuple) else (outs,)
                if results is None:
                    results = tuple(empty_like(out, (1, out.shape[1], height * up // down, width * up // down))
                                    for out in outs)
                for result, out in zip(results, outs, strict=True):
                    piece = out[:, :, (top - rows[0]) * up // down:(bottom - rows[0]) * up // down,
                                (left - cols[0]) * up // down:(right - cols[0]) * up // down]
                    result[:, :, top * up // down:bottom * up // down, left * up // down:right * up // down] = piece
        return results if len(results) > 1 else results[0]
