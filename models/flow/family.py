"""`flow`: the normalizing-flow codec (Helminger et al.)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..interface import StraightThrough, Training, ZooEntry, option
from .codec import FlowCodec, freeze_coding_tensors
from .network import LATENT_CHANNELS, FlowConfig, build, flow_to_unit, pixels_to_flow, qualities
from .steps import fit_ladder, fit_steps


def parse_noise_range(text: str) -> tuple[float, float]:
    """'0.7,192' -> (0.7, 192.0): the smallest and largest training noise step."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not two comma-separated steps, e.g. 0.7,192") from None
    if not 0 < low < high:
        raise ValueError(f"{text!r}: need 0 < smallest < largest")
    return low, high


@dataclass(frozen=True)
class FlowTrainingOptions(StraightThrough):
    normalise_per_step: bool = option(
        False, "Divide each sample's loss by its own (detached) value: a coarse noise step (a few tenths of a "
        "bpp) then weighs as much in the gradient as a fine one (10+ bpp), instead of a tenth as much.")
    noise_range: tuple[float, float] | None = option(
        None, "Smallest and largest training noise step, log-uniform between (default: the configuration's, "
        "0.7,64); cover the ladder's coarsest step (160) to train the low rates it codes.",
        metavar="LOW,HIGH", parse=parse_noise_range, config="noise_range")


ENTRIES = [
    ZooEntry(
        "flow", "normalizing-flow codec (Helminger et al.): a bijective transform, one network from low rates "
        "to near-lossless, stable re-encoding, progressive decoding",
        build=build, codec=FlowCodec, weight_file="flow.pt", config=dataclasses.asdict(FlowConfig()),
        freeze=freeze_coding_tensors, qualities=qualities,
        training=Training("rate-distortion", options=FlowTrainingOptions, source_model="factorized"),
        tiny_config={"widths": [4, 4, 4], "steps_per_level": 1, "blocks": 1, "prior_width": 4},
        fit_state=fit_ladder, tune=fit_steps),
]


class _Synthesis(torch.nn.Module):
    """The inverse flow as the runtime runs it: packed exact latents (layout.pack_latents) -> image
    in [0, 1] (FlowCodec.synthesise before rounding)."""

    def __init__(self, flow: torch.nn.Module):
        super().__init__()
        self.flow = flow

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        c0, c1, _ = LATENT_CHANNELS
        z1 = F.pixel_shuffle(packed[:, c0:c0 + 4 * c1], 2)
        z2 = F.pixel_shuffle(packed[:, c0 + 4 * c1:], 4)
        return flow_to_unit(self.flow.inverse(packed[:, :c0], z1, z2)).clamp(0, 1)


class _Analysis(torch.nn.Module):
    """The flow as the runtime's encoder runs it: image in [0, 1] -> packed continuous latents."""

    def __init__(self, flow: torch.nn.Module):
        super().__init__()
        self.flow = flow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z0, z1, z2 = self.flow(pixels_to_flow(x))
        return torch.cat([z0, F.pixel_unshuffle(z1, 2), F.pixel_unshuffle(z2, 4)], dim=1)


def _runtime_graphs(model) -> dict:
    """What the torch-free runtime runs on ONNX Runtime (models/runtime/export.py), parameters named
    as in the weight file."""
    packed = torch.zeros(1, LATENT_CHANNELS[0] + 4 * LATENT_CHANNELS[1] + 16 * LATENT_CHANNELS[2], 4, 4)
    return {"synthesis": (_Synthesis(model.flow), packed, ""),
            "analysis": (_Analysis(model.flow), torch.zeros(1, 3, 32, 32), "")}


GRAPHS = {"flow": _runtime_graphs}
