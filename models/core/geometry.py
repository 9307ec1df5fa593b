"""Sizes, padding and tiling shared by every family: images are padded to a multiple of the total
stride, and large ones run through the networks in overlapping tiles (bounded memory)."""
from __future__ import annotations

import torch

from .padding import padded_size
from .tiles import Tiles, ceil_div  # noqa: F401 (torch-free; the runtime uses them too)


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
