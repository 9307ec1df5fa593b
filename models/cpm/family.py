"""`cpm`: conditional probability models (Mentzer et al. 2018)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..interface import QualitySubset, Training, ZooEntry
from .codec import CpmCodec, build, freeze_coding_tensors
from .layout import ENCODER_PREFIXES, qualities
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
        encoder_prefixes=ENCODER_PREFIXES),
]


class _Synthesis(torch.nn.Module):
    """The decoder as the runtime runs it: gain-scaled coded latents -> image in [0, 1]
    (ConditionalProbabilityModel.synthesis after its inverse gain)."""

    def __init__(self, model):
        super().__init__()
        self.decoder = model.decoder
        self.register_buffer("pixel_mean", model.pixel_mean)
        self.register_buffer("pixel_std", model.pixel_std)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return (self.decoder(latents) * self.pixel_std + self.pixel_mean).clamp(0, 1)


class _Analysis(torch.nn.Module):
    """The encoder as the runtime runs it: image in [0, 1] -> importance logit and z
    (ConditionalProbabilityModel.features)."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model.encoder
        self.register_buffer("pixel_mean", model.pixel_mean)
        self.register_buffer("pixel_std", model.pixel_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder((x - self.pixel_mean) / self.pixel_std)


def _runtime_graphs(model) -> dict:
    """What the torch-free runtime runs on ONNX Runtime (models/runtime/export.py), parameters named
    as in the weight file."""
    latents = torch.zeros(1, model.config.latent_channels, 4, 4)
    return {"synthesis": (_Synthesis(model), latents, ""),
            "analysis": (_Analysis(model), torch.zeros(1, 3, 64, 64), "")}


GRAPHS = {"cpm": _runtime_graphs}
