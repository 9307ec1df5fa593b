"""Sizes and padding shared by every family: images are padded to a multiple of the total stride."""
from __future__ import annotations

import torch


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def padded_size(size: int, multiple: int, minimum: int = 1) -> int:
    """size rounded up to a multiple of `multiple`, and to at least `minimum` multiples."""
    return max(minimum, ceil_div(size, multiple)) * multiple


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
