"""Padding images to the networks' stride, torch-free (the runtime and the torch codecs share it)."""
from __future__ import annotations

import numpy as np

from .tiles import ceil_div


def padded_size(size: int, multiple: int, minimum: int = 1) -> int:
    """size rounded up to a multiple of `multiple`, and to at least `minimum` multiples."""
    return max(minimum, ceil_div(size, multiple)) * multiple


def padded_unit_image(image: np.ndarray, multiple: int, minimum: int = 1) -> np.ndarray:
    """(1, 3, H', W') float32 in [0, 1] of a (3, H, W) uint8 image, its bottom row and right column
    repeated to multiples of `multiple` (as models.core.geometry.pad_to_multiple)."""
    height, width = image.shape[1:]
    padded = np.pad(image, ((0, 0), (0, padded_size(height, multiple, minimum) - height),
                            (0, padded_size(width, multiple, minimum) - width)), mode="edge")
    return (padded.astype(np.float32) / 255)[None]


def cropped_pixels(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """(3, height, width) uint8 of a network's (1, 3, H', W') output in [0, 1] (clamped)."""
    return np.round(np.clip(x[0, :, :height, :width], 0, 1) * 255).astype(np.uint8)
