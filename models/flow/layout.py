"""flow's geometry, latent layout and operating points, torch-free (the runtime shares them)."""
from __future__ import annotations

import numpy as np

from ..core.tiles import Tiles
from ..interface import Qualities

LEVELS = 3
SQUEEZE = 2
DOWNSAMPLING = SQUEEZE**LEVELS  # pixels per z0 position along each side
PIXEL_SCALE = 255.0  # latents are in 8-bit pixel units: a step of 1 is one grey level of noise
PIXEL_OFFSET = 127.5
PRIOR_INPUT_SCALE = 1 / 16  # a power of two: exact in fixed point
LATENT_CHANNELS = (48, 12, 6)  # z0, z1, z2
# Quantization steps of the operating points, coarse to fine (users' -q 1 is the coarsest).
DEFAULT_LADDER = (160.0, 112.0, 80.0, 56.0, 40.0, 28.0, 20.0, 14.0, 10.0, 6.0, 3.0, 1.0)
ENCODER_PREFIXES: tuple[str, ...] = ()  # the flow serves both directions: no parameter is the encoder's alone

SEARCH_RADIUS = 4096  # z0 values (pixel units) beyond this are escaped
PREVIEW_PROBABILITY = 0.9  # a latent whose table gives its mean more than this is not coded
# The flow's receptive field is ±64 z0 positions (6 steps of six 3x3 convolutions at 1/8, 1/4
# and 1/2, plus the squeezes), so tiles overlap by more than that; φ reaches ±3 positions.
FORWARD_TILES = Tiles(core=1024, margin=576)
INVERSE_TILES = Tiles(core=128, margin=72)
PRIOR_TILES = Tiles(core=64, margin=8)


def qualities(config) -> Qualities:
    """The operating points of a configuration (a FlowConfig or its dict)."""
    ladder = config.get("ladder", DEFAULT_LADDER) if isinstance(config, dict) else config.ladder
    return Qualities(len(ladder), len(ladder) // 2,
                     f"1-{len(ladder)} (quantization step {max(ladder):g} down to {min(ladder):g} grey levels)")


def pixel_unshuffle(x: np.ndarray, factor: int) -> np.ndarray:
    batch, channels, height, width = x.shape
    out = x.reshape(batch, channels, height // factor, factor, width // factor, factor).transpose(0, 1, 3, 5, 2, 4)
    return out.reshape(batch, channels * factor**2, height // factor, width // factor)


def pixel_shuffle(x: np.ndarray, factor: int) -> np.ndarray:
    batch, channels, height, width = x.shape
    out = x.reshape(batch, channels // factor**2, factor, factor, height, width).transpose(0, 1, 4, 2, 5, 3)
    return out.reshape(batch, channels // factor**2, height * factor, width * factor)


def pack_latents(z0: np.ndarray, z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
    """(z0, z1, z2) as one (B, 192, H/8, W/8) array, so that tiles cut all three alike."""
    return np.concatenate([z0, pixel_unshuffle(z1, 2), pixel_unshuffle(z2, 4)], axis=1)


def unpack_latents(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c0, c1, _ = LATENT_CHANNELS
    return packed[:, :c0], pixel_shuffle(packed[:, c0:c0 + 4 * c1], 2), pixel_shuffle(packed[:, c0 + 4 * c1:], 4)
