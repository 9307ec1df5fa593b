"""The toy family's registry entry and training options."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from models.interface import Training, ZooEntry, option

from .codec import NAME, ToyCodec
from .network import ToyConfig, ToyNet


@dataclass(frozen=True)
class ToyTrainingOptions:
    distortion_weight: float = option(1.0, "Weight of the distortion against the rate.", metavar="W")


ENTRIES = [
    ZooEntry(
        NAME, "test-only toy family: one convolution each way, zlib-coded latents",
        build=lambda config: ToyNet(ToyConfig(**config)), codec=ToyCodec, weight_file=f"{NAME}.pt",
        config=dataclasses.asdict(ToyConfig()), freeze=lambda model: {},
        qualities=lambda config: ToyCodec.qualities, training=Training("rate-distortion", ToyTrainingOptions),
        tiny_config={"channels": 4}, encoder_prefixes=("analysis.",), shipped=False, bench_by_default=False),
]
