"""`flow`: the normalizing-flow codec (Helminger et al.)."""
from __future__ import annotations

import dataclasses

from ..interface import Training, ZooEntry
from .codec import FlowCodec, freeze_coding_tensors
from .network import FlowConfig, build, qualities
from .steps import fit_ladder, fit_steps

ENTRIES = [
    ZooEntry(
        "flow", "normalizing-flow codec (Helminger et al.): a bijective transform, one network from low rates "
        "to near-lossless, stable re-encoding, progressive decoding",
        build=build, codec=FlowCodec, weight_file="flow.pt", config=dataclasses.asdict(FlowConfig()),
        freeze=freeze_coding_tensors, qualities=qualities,
        training=Training("rate-distortion", source_model="factorized"),
        tiny_config={"widths": [4, 4, 4], "steps_per_level": 1, "blocks": 1, "prior_width": 4},
        fit_state=fit_ladder, tune=fit_steps),
]
