"""The gc models' geometry, torch-free (the runtime shares it): W has one position per 16 x 16
pixels, and at least two rows and columns."""
from __future__ import annotations

from ..core.tiles import Tiles, ceil_div

DOWNSAMPLING = 16
MIN_LATENT = 2
# Tiles that bound the memory of any image (see models/core/tiles.py): the encoder in pixels (its
# receptive field: ±34 pixels), the generator in latents (±21 latents: nine residual blocks).
ENCODER_TILES = Tiles(core=1024, margin=64)
GENERATOR_TILES = Tiles(core=64, margin=24)


def latent_size(height: int, width: int) -> tuple[int, int]:
    """Spatial size of W: the image is padded to a multiple of 16, and to at least 2 latent rows and
    columns (the paper's instance norm, still selectable, needs more than one element there)."""
    return max(MIN_LATENT, ceil_div(height, DOWNSAMPLING)), max(MIN_LATENT, ceil_div(width, DOWNSAMPLING))


# name -> (C, adversarial, selective)
MODELS = {"gc-c2": (2, True, False), "gc-c4": (4, True, False), "gc-c8": (8, True, False),
          "gc-c4-mse": (4, False, False), "gc-c4-sc": (4, True, True)}
ENCODER_PREFIXES = ("encoder.",)  # the parameters only the encoder reads (not in the weight id)
