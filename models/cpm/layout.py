"""cpm's geometry and its context model's shape, torch-free (the runtime shares them)."""
from __future__ import annotations

import numpy as np

from ..core.tiles import Tiles, ceil_div
from ..interface import Qualities
from ..runtime.fixed import snap_array

DOWNSAMPLING = 8
# The encoder sees +-70 pixels, the decoder +-9 latents: margins cover both (tiles meet without seams).
ENCODER_TILES = Tiles(core=1024, margin=96)
DECODER_TILES = Tiles(core=64, margin=16)
CONTEXT_TILE = 128  # latents per side of an independently coded context volume (bounds memory)
WAVEFRONT = (4, 2, 1)  # t = 4c + 2h + w: see models/cpm/wavefront.py
ENCODER_PREFIXES = ("encoder.",)  # the parameters only the encoder reads (not in the weight id)

# Kernel offsets (depth, row, column) of a 2x3x3 masked kernel that a layer may read, besides the
# full previous channel slice: the rows above and the positions to the left in the current slice.
CAUSAL = ((1, 0, 0), (1, 0, 1), (1, 0, 2), (1, 1, 0))
CENTRE = (1, 1, 1)
INPUT_PLANES = 3  # causal symbol values, importance mask (all of it known), quality
DEFAULT_TARGETS = (0.12, 0.25, 0.45, 0.8)


def latent_size(height: int, width: int) -> tuple[int, int]:
    return ceil_div(height, DOWNSAMPLING), ceil_div(width, DOWNSAMPLING)


def context_masks(width: int, centres: int, layers: int) -> list[np.ndarray]:
    """The weight masks (out, in, 2, 3, 3) of the context model's layers."""
    masks = []
    for layer in range(layers):
        cin = INPUT_PLANES if layer == 0 else width
        cout = centres if layer == layers - 1 else width
        mask = np.zeros((cout, cin, 2, 3, 3), dtype=np.float32)
        mask[:, :, 0] = 1
        for offset in CAUSAL + (() if layer == 0 else (CENTRE,)):
            mask[(slice(None), slice(None)) + offset] = 1
        if layer == 0:
            mask[:, 1:] = 1  # the importance mask and the quality are known everywhere before decoding
        masks.append(mask)
    return masks


def quality_values(count: int) -> np.ndarray:
    """The quality plane's value of each quality: q / (count - 1) on the fixed-point grid."""
    return snap_array(np.arange(count, dtype=np.float64) / max(1, count - 1))


def qualities(config) -> Qualities:
    """The operating points of a configuration (a CpmConfig or its dict)."""
    targets = config.get("targets", DEFAULT_TARGETS) if isinstance(config, dict) else config.targets
    listed = ", ".join(f"{t:g}" for t in targets)
    return Qualities(len(targets), len(targets) // 2, f"{len(targets)} (MS-SSIM; symbol-rate targets {listed} bpp)")


def context_tiles(height: int, width: int):
    """(rows, cols) slices of the independently coded context tiles, in coding order."""
    for top in range(0, height, CONTEXT_TILE):
        for left in range(0, width, CONTEXT_TILE):
            yield slice(top, min(height, top + CONTEXT_TILE)), slice(left, min(width, left + CONTEXT_TILE))
