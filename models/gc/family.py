"""The generative compression models (Agustsson et al. 2019): gc-c2, gc-c4, gc-c8, the MSE baseline
gc-c4-mse and gc-c4-sc with selective generation."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..interface import GanSchedule, Training, ZooEntry, option
from .codec import GcCodec, SelectiveGcCodec
from .layout import ENCODER_PREFIXES, MODELS
from .network import GcConfig, GenerativeCompression, bound_bits
from .state import adapt_state, freeze_coding_tensors


@dataclass(frozen=True)
class GcTrainingOptions(GanSchedule):
    ms_ssim_weight: float = option(
        0.0, "Add W * (1 - MS-SSIM) to the distortion beside the MSE (MSE alone favours blotches; the shipped "
        "gc-c4-sc used 0.25).", metavar="W")


@dataclass(frozen=True)
class SelectiveGcTrainingOptions(GcTrainingOptions):
    synthesised_colour_weight: float = option(
        0.0, "Add W * the MSE of 16x16 block means where the image is synthesised, so that fills continue the "
        "colours around them; the GAN still paints the detail (the shipped gc-c4-sc used 0.1).", metavar="W")




def _build(config: dict) -> GenerativeCompression:
    return GenerativeCompression(GcConfig(**config))


def _entry(name: str) -> ZooEntry:
    bottleneck, adversarial, selective = MODELS[name]
    what = "GAN" if adversarial else "MSE-only baseline of the GAN"
    if selective:
        what += " with selective generation (--preserve MASK: only the kept region is coded)"
    config = dataclasses.asdict(GcConfig(bottleneck=bottleneck, adversarial=adversarial, selective=selective))
    # Any gc model can start another (e.g. gc-c2 from the distortion-trained gc-c4-mse).
    starts = {other: adapt_state for other in MODELS if other != name}
    bound_bpp = bound_bits(512, 768, bottleneck) / (512 * 768)
    options = SelectiveGcTrainingOptions if selective else GcTrainingOptions
    training = Training("gan", options, {"channels": "width", "latent_channels": "context_width"})
    return ZooEntry(
        name, f"generative compression (Agustsson et al. 2019), {what}, C={bottleneck}: "
        f"<= {bound_bpp:.4f} bpp at 768x512", build=_build, codec=SelectiveGcCodec if selective else GcCodec,
        weight_file=f"{name}.pt", config=config, freeze=freeze_coding_tensors, qualities=lambda _: GcCodec.qualities,
        training=training, tiny_config={"width": 16, "residual_blocks": 1, "context_width": 8}, init_from=starts,
        encoder_prefixes=ENCODER_PREFIXES, bench_by_default=False)


ENTRIES = [_entry(name) for name in MODELS]


class _Synthesis(torch.nn.Module):
    """The generator as the runtime runs it: W (with a selective model's map) -> image in [0, 1]."""

    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, w_hat: torch.Tensor) -> torch.Tensor:
        return (self.generator(w_hat) + 1) / 2


class _Analysis(torch.nn.Module):
    """The encoder as the runtime runs it: image in [0, 1] -> continuous W (GenerativeCompression.features)."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x * 2 - 1)


def _runtime_graphs(model: GenerativeCompression) -> dict:
    """What the torch-free runtime runs on ONNX Runtime (models/runtime/export.py), parameters named
    as in the weight file."""
    inputs = model.config.bottleneck + model.config.selective
    return {"synthesis": (_Synthesis(model.generator), torch.zeros(1, inputs, 4, 4), ""),
            "analysis": (_Analysis(model.encoder), torch.zeros(1, 3, 64, 64), "")}


GRAPHS = dict.fromkeys(MODELS, _runtime_graphs)
