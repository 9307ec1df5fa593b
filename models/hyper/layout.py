"""The hyperprior family's geometry, without torch (the runtime reads it too): strides, tiles and
the parameters only its encoder reads."""
from __future__ import annotations

from ..core.tiles import Tiles

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
