"""Frozen coding tensors, and adapting a trained gc state to another bottleneck or mode."""
from __future__ import annotations

import torch

from .network import GenerativeCompression


def adapt_state(state: dict[str, torch.Tensor], model: GenerativeCompression) -> dict[str, torch.Tensor]:
    """Start a gc model from another one's parameters (same width, any C, selective or not).

    Everything of equal shape is copied. Where C differs, the encoder's last layer and the
    generator's first layer keep the source's first min(C, C') channels and the target's own
    initialisation for the rest; the context model (its inputs depend on C) keeps its own. A
    selective model started from a plain one gets a zero weight on its preservation map input, so
    with everything preserved it starts as the source; a plain model started from a selective one
    gets that input folded into its bias (the map of a whole image is 1 everywhere, borders
    included under replicate padding), so it codes whole images exactly as the source does.
    """
    adapted = model.state_dict()
    for key, target in adapted.items():
        source = state.get(key)
        if source is None or source.shape == target.shape:
            adapted[key] = target if source is None else source
        elif key.startswith("context."):
            continue
        elif source.dim() == target.dim() and _differs_only_in_bottleneck(key, model):
            overlap = tuple(slice(0, min(a, b)) for a, b in zip(source.shape, target.shape, strict=True))
            merged = target.clone()
            merged[overlap] = source[overlap]
            adapted[key] = merged
        else:
            raise ValueError(f"cannot start from these weights: {key} has shape {tuple(source.shape)}, "
                             f"expected {tuple(target.shape)} (different width?)")
    source_bottleneck = _bottleneck_of(state)
    source_selective = state["generator.0.weight"].shape[1] > source_bottleneck
    if source_selective and not model.config.selective:
        plane = state["generator.0.weight"][:, source_bottleneck]
        adapted["generator.0.bias"] = state["generator.0.bias"] + plane.sum(dim=(1, 2))
    if model.config.selective and not source_selective:
        first = adapted["generator.0.weight"].clone()  # the plane must not inherit a source W channel
        first[:, model.config.bottleneck:] = 0
        adapted["generator.0.weight"] = first
    return adapted


def _bottleneck_of(state: dict[str, torch.Tensor]) -> int:
    """C of a gc state: the output channels of the encoder's last convolution."""
    last = max(int(key.split(".")[1]) for key in state if key.startswith("encoder.") and key.endswith(".weight"))
    return state[f"encoder.{last}.weight"].shape[0]


def _differs_only_in_bottleneck(key: str, model: GenerativeCompression) -> bool:
    last_encoder = f"encoder.{len(model.encoder) - 1}."
    return key.startswith((last_encoder, "generator.0."))


def freeze_coding_tensors(model: GenerativeCompression) -> dict[str, torch.Tensor]:
    """Nothing to freeze: the context model is derived exactly from the fp16 weights at load time."""
    return {}
