"""The hyperprior family's models: `hyper`, `hyper-bb` (bits-back) and `hyper-ctx` (the default)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from ..interface import (
    ContextStages,
    DecoderFineTune,
    GrowLatent,
    Qualities,
    QualitySubset,
    StraightThrough,
    Training,
    ZooEntry,
    option,
)
from . import bitsback, bitsback_codec, context, context_codec
from .codec import HyperCodec
from .coding import freeze_coding_tensors, ladder_qualities
from .network import ENCODER_PREFIXES, HyperConfig, MeanScaleHyperprior
from .state import grow_latents, retarget_gains


@dataclass(frozen=True)
class HyperTrainingOptions(QualitySubset, StraightThrough, GrowLatent):
    hyper_width: int | None = option(
        None, "Width of the hyper-synthesis hidden layers (default: the latent width); a narrower one keeps a wide "
        "model's weight file small.", config="hyper_width")


@dataclass(frozen=True)
class PlainHyperTrainingOptions(HyperTrainingOptions, DecoderFineTune):
    pass


@dataclass(frozen=True)
class ContextTrainingOptions(HyperTrainingOptions, ContextStages):
    pass


def hyper_config(config: dict) -> HyperConfig:
    return HyperConfig(**{**config, "lambdas": tuple(config.get("lambdas", HyperConfig().lambdas))})


def _hyper(config: dict) -> MeanScaleHyperprior:
    return MeanScaleHyperprior(hyper_config(config))


def _hyper_bb(config: dict) -> bitsback.BitsBackHyperprior:
    return bitsback.BitsBackHyperprior(hyper_config(config))


def _ladder(config: dict) -> Qualities:
    return ladder_qualities(config.get("lambdas", HyperConfig().lambdas))


def _continuous_ladder(config: dict) -> Qualities:
    return ladder_qualities(config.get("lambdas", HyperConfig().lambdas), continuous=True)


def _fit_state(state: dict, target: nn.Module) -> dict:
    return retarget_gains(grow_latents(state, target), target.config.lambdas)


def _inherited_sizes(config: dict) -> dict:
    # An unset hyper-synthesis width follows M; a grown latent keeps the trained width.
    return {**config, "hyper_width": config.get("hyper_width") or config.get("latent_channels")}


SIZES = {"channels": "channels", "latent_channels": "latent_channels"}
TINY = {"channels": 8, "latent_channels": 12}


def _training(options: type) -> Training:
    return Training("rate-distortion", options, SIZES, _inherited_sizes, source_model="factorized")


def _runtime_graphs(model) -> dict:
    """What the torch-free runtime runs on ONNX Runtime (models/runtime/export.py): the synthesis,
    the analysis and the hyper-analysis, their parameters named as in the weight file."""
    import torch

    from ..core.layers import SubpixelDecoder

    latents = torch.zeros(1, model.config.latent_channels, 4, 4)
    plain = torch.contiguous_format
    return {"synthesis": (SubpixelDecoder(model.g_s.to(memory_format=plain)), latents, ""),
            "analysis": (model.g_a.to(memory_format=plain), torch.zeros(1, 3, 64, 64), "g_a."),
            "hyper_analysis": (model.h_a.to(memory_format=plain), latents, "h_a.")}


GRAPHS = {"hyper": _runtime_graphs, "hyper-ctx": _runtime_graphs, "hyper-ctx-graphics": _runtime_graphs}


HYPER_CTX = ZooEntry(
    "hyper-ctx", "hyper's transforms with a channel-conditional checkerboard context model (ELIC-style groups, "
    "10 parallel passes), 6 qualities",
    build=context.build, codec=context_codec.HyperCtxCodec, weight_file="hyper-ctx.pt",
    config=dataclasses.asdict(context.HyperCtxConfig()), freeze=freeze_coding_tensors,
    qualities=_continuous_ladder, training=_training(ContextTrainingOptions),
    tiny_config={"channels": 8, "latent_channels": 12, "hyper_width": 8, "groups": [2, 2, 4, 4],
                 "context_width": 8, "neighbour_width": 4},
    init_from={"hyper": context.adapt_hyper_state}, encoder_prefixes=ENCODER_PREFIXES)

ENTRIES = [
    HYPER_CTX,
    HYPER_CTX.variant(
        "hyper-ctx-graphics", "hyper-ctx tuned for illustrations and screenshots, same qualities (lic encode "
        "--model auto --weights hyper-ctx-graphics=FILE picks it per image); not shipped: none of four CPU "
        "fine-tuning recipes beat hyper-ctx on held-out illustrations (docs/notes/2026-12-07-graphics-finetune.md)",
        shipped=False),
    ZooEntry(
        "hyper", "mean-scale hyperprior (Minnen et al. 2018), MSE, 6 qualities in one network",
        build=_hyper, codec=HyperCodec, weight_file="hyper.pt", config=dataclasses.asdict(HyperConfig()),
        freeze=freeze_coding_tensors, qualities=_continuous_ladder, training=_training(PlainHyperTrainingOptions),
        tiny_config=TINY, fit_state=_fit_state, encoder_prefixes=ENCODER_PREFIXES),
    ZooEntry(
        "hyper-bb", "hyperprior with lossy bits-back coding of the hyperlatent (Yang et al. 2020); "
        "carries metadata/side information and album images for free",
        build=_hyper_bb, codec=bitsback_codec.BitsBackCodec, weight_file="hyper-bb.pt",
        config=dataclasses.asdict(HyperConfig()), freeze=bitsback.freeze_coding_tensors,
        qualities=_ladder, training=_training(HyperTrainingOptions),
        tiny_config=TINY, init_from={"hyper": bitsback.adapt_hyper_state}, fit_state=_fit_state,
        bench_by_default=False),
]
