"""Adapting trained hyperprior states to another network: a retargeted quality ladder, a grown latent."""
from __future__ import annotations

import torch

from .network import GAIN_KEYS, MeanScaleHyperprior


def retarget_gains(state: dict[str, torch.Tensor], lambdas: tuple[float, ...]) -> dict[str, torch.Tensor]:
    """A trained state moved to another ladder of qualities: each gain vector is interpolated
    linearly in log(lambda) between the trained qualities (extrapolated along the end segments), the
    way continuously variable-rate models treat their gains; the transforms are kept as they are."""
    source = state["lambdas"].double().log()
    target = torch.tensor(lambdas, dtype=torch.float64).log()
    # Weight files store lambda in fp16: equal ladders agree to fp16 precision only.
    if source.numel() == target.numel() and torch.allclose(source, target, rtol=0, atol=1e-3):
        return state
    if source.numel() < 2:
        raise ValueError("cannot move a single-quality model to another set of lambdas")
    # Index of the segment [i, i + 1] of the trained ladder that each target lambda falls in.
    segment = (torch.searchsorted(source, target) - 1).clamp(0, source.numel() - 2)
    weight = ((target - source[segment]) / (source[segment + 1] - source[segment]))[:, None]
    adapted = dict(state)
    for key in GAIN_KEYS:
        gains = state[key].double()
        adapted[key] = (gains[segment] * (1 - weight) + gains[segment + 1] * weight).to(state[key].dtype)
    adapted["lambdas"] = torch.tensor(lambdas, dtype=state["lambdas"].dtype)
    return adapted


# New latent channels start active (analysis weights at half a fresh layer's size: at the top
# quality about a quarter of their values round away from 0) and invisible (zero synthesis
# weights): the reconstruction is unchanged, and the synthesis gets full-sized gradients to learn to
# use them. Their Gaussian starts with mean 0 and this scale; training adjusts both.
GROWN_ANALYSIS_SCALE = 0.5
GROWN_SCALE = 0.4


def grow_latents(state: dict[str, torch.Tensor], target: MeanScaleHyperprior) -> dict[str, torch.Tensor]:
    """A trained state moved into ``target``, a model with more latent channels M (same N and
    hyper-synthesis width): the trained channels keep their weights, and the new ones are added so
    that the model reconstructs exactly as before.

    The latent width caps the fidelity of the transforms (M values per 16x16x3 pixels), so this is
    how a trained model gets room at high rates without starting over. The new channels get the
    analysis weights of a fresh layer (scaled), zero synthesis weights, no say in z (zero h_a
    inputs), a predicted mean of 0 and scale GROWN_SCALE, and the mean of the trained gains of
    each quality.
    """
    old_m, new_m = state["log_gain_y"].shape[1], target.config.latent_channels
    if new_m == old_m:
        return state
    if new_m < old_m:
        raise ValueError(f"cannot shrink the latent from {old_m} to {new_m} channels "
                         f"(these weights need --latent-channels {old_m})")
    extra = new_m - old_m
    fresh = target.state_dict()
    last_a, last_s = f"g_a.{len(target.g_a) - 1}", f"h_s.{len(target.h_s) - 1}"
    grown = dict(state)

    def append(key: str, dim: int, tensor: torch.Tensor) -> None:
        grown[key] = torch.cat([state[key], tensor.to(state[key].dtype)], dim=dim)

    append(f"{last_a}.weight", 0, GROWN_ANALYSIS_SCALE * fresh[f"{last_a}.weight"][old_m:])
    append(f"{last_a}.bias", 0, torch.zeros(extra))
    append("g_s.0.weight", 0, torch.zeros_like(fresh["g_s.0.weight"][old_m:]))  # (in, out, k, k)
    append("h_a.0.weight", 1, torch.zeros_like(fresh["h_a.0.weight"][:, old_m:]))
    for key, start in ((f"{last_s}.weight", 0.0), (f"{last_s}.bias", GROWN_SCALE)):  # outputs: [means; scales]
        means, scales = state[key].chunk(2)
        new = torch.zeros(extra, *means.shape[1:], dtype=means.dtype)
        grown[key] = torch.cat([means, new, scales, new + start])
    for key in ("log_gain_y", "log_inv_gain_y"):
        append(key, 1, state[key].mean(dim=1, keepdim=True).expand(-1, extra))
    for key, value in fresh.items():
        if key in grown and grown[key].shape != value.shape:
            raise ValueError(f"cannot grow these weights into the model: {key} has shape "
                             f"{tuple(grown[key].shape)}, the model {tuple(value.shape)} "
                             "(keep the hyper-synthesis width of the weights, --hyper-width)")
    return grown
