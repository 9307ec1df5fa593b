"""`cpm`: conditional probability models (Mentzer et al. 2018)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..interface import QualitySubset, Training, ZooEntry
from .codec import CpmCodec, build, freeze_coding_tensors, qualities
from .network import CpmConfig


@dataclass(frozen=True)
class CpmTrainingOptions(QualitySubset):
    pass


ENTRIES = [
    ZooEntry(
        "cpm", "conditional probability models (Mentzer et al. 2018): importance map, learned centres, "
        "3D-CNN context model decoded in wavefronts; MS-SSIM, 4 qualities in one network",
        build=build, codec=CpmCodec, weight_file="cpm.pt", config=dataclasses.asdict(CpmConfig()),
        freeze=freeze_coding_tensors, qualities=qualities,
        training=Training("rate-distortion", CpmTrainingOptions,
                          {"channels": "channels", "latent_channels": "latent_channels"}, source_model="context"),
        tiny_config={"channels": 8, "stem_channels": 4, "groups": 1, "blocks_per_group": 1, "latent_channels": 6,
                     "context_width": 8},
        encoder_prefixes=("encoder.",)),
]
