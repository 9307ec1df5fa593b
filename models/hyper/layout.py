"""What the hyperprior family's torch codecs and its torch-free runtime share: strides, tiles, the
parameters only its encoder reads, the gain grid and the quality ladder."""
from __future__ import annotations

import math

from ..core.tiles import Tiles
from ..interface import Qualities

DOWNSAMPLING = 64  # total stride of g_a followed by h_a
LATENT_STRIDE = 16  # pixels per latent position (g_a), latents per hyperlatent: 4 (h_a)
# Tiles that bound the memory of any image: the analysis in pixels, the hyper-analysis in latents,
# the fixed-point hyper-synthesis in hyperlatents, the synthesis in latents. Each margin is over
# twice its network's receptive field (g_a: ±30 pixels, h_a: ±7 latents, h_s: ±2 hyperlatents,
# g_s: ±2 latents), so tiles meet without seams; an image up to 1024x1024 is a single tile.
ANALYSIS_TILES = Tiles(core=1024, margin=64)
HYPER_ANALYSIS_TILES = Tiles(core=64, margin=16)
HYPER_SYNTHESIS_TILES = Tiles(core=16, margin=4)
SYNTHESIS_TILES = Tiles(core=64, margin=4)
GAIN_KEYS = ("log_gain_y", "log_inv_gain_y", "log_gain_z", "log_inv_gain_z")
# What only the encoder runs: the analysis transforms and the gains in front of the quantizers.
ENCODER_PREFIXES = ("g_a.", "h_a.", "log_gain_y", "log_gain_z")
GAIN_FRAC_BITS = 12  # the inverse hyperlatent gains are stored on a 2^-12 grid
# The operating point `lic encode` uses without -q: the quality whose lambda is nearest to this
# (in log), so the default means about the same on any ladder (about 0.5 bpp on Kodak with `hyper`).
DEFAULT_LAMBDA = 0.0065


def ladder_qualities(lambdas: tuple[float, ...] | list[float], continuous: bool = False) -> Qualities:
    """The operating points of a lambda ladder, for the registry and the codec alike; continuous:
    every quality between them too (interpolated gains)."""
    logs = [math.log(lam) for lam in lambdas]
    default = min(range(len(logs)), key=lambda q: abs(logs[q] - math.log(DEFAULT_LAMBDA)))
    continuous = continuous and len(lambdas) > 1
    steps = ", or any between (e.g. 3.4)" if continuous else ""
    return Qualities(len(lambdas), default, f"1-{len(lambdas)}{steps} (lambda {min(lambdas):g}-{max(lambdas):g})",
                     continuous)
