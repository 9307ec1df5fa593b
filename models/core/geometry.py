"""Sizes, padding and tiling shared by every family: images are padded to a multiple of the total
stride, and large ones run through the networks in overlapping tiles (bounded memory)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def padded_size(size: int, multiple: int, minimum: int = 1) -> int:
    """size rounded up to a multiple of `multiple`, and to at least `minimum` multiples."""
    return max(minimum, ceil_div(size, multiple)) * multiple


def unit_float(pixels: torch.Tensor) -> torch.Tensor:
    """Images as the networks take them: uint8 pixels to float32 in [0, 1]; floats pass unchanged."""
    return pixels.float().div_(255) if pixels.dtype == torch.uint8 else pixels


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """A reconstruction in [0, 1] as 8-bit pixels (what a decoder writes)."""
    return torch.round(x * 255).to(torch.uint8)


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 1) -> torch.Tensor:
    """Repeat the bottom row and the right column of a (B, C, H, W) batch until both sides are
    multiples of `multiple` (and at least `minimum` of them). Edge repetition works at any size,
    1x1 included, where reflection and PyTorch's replicate padding have limits."""
    height, width = x.shape[2:]
    pad_h = padded_size(height, multiple, minimum) - height
    pad_w = padded_size(width, multiple, minimum) - width
    if pad_h:
        x = torch.cat([x, x[:, :, -1:].expand(-1, -1, pad_h, -1)], dim=2)
    if pad_w:
        x = torch.cat([x, x[:, :, :, -1:].expand(-1, -1, -1, pad_w)], dim=3)
    return x


@dataclass(frozen=True)
class Tiles:
    """How a translation-equivariant network runs on a large input: squares of `core` input
    positions, each seen with `margin` more on every side (at least the network's receptive
    field, so that tiles meet without seams), the margins' outputs cropped away. Fixed by the
    model, never by the machine, so decoded pixels do not depend on where they are decoded."""

    core: int
    margin: int

    def run(self, network: Callable, x: torch.Tensor, up: int = 1, down: int = 1):
        """network(x) for a (1, C, H, W) input whose output (a tensor, or a tuple of them) has
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
                    results = tuple(out.new_empty((1, out.shape[1], height * up // down, width * up // down))
                                    for out in outs)
                for result, out in zip(results, outs, strict=True):
                    piece = out[:, :, (top - rows[0]) * up // down:(bottom - rows[0]) * up // down,
                                (left - cols[0]) * up // down:(right - cols[0]) * up // down]
                    result[:, :, top * up // down:bottom * up // down, left * up // down:right * up // down] = piece
        return results if len(results) > 1 else results[0]
