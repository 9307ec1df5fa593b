"""Stochastic Gumbel Annealing (Yang, Bamler, Mandt 2020, section 3.2), the part every family's
encode-time refinement shares: the temperature schedule, the relaxed rounding and the loop that
optimises an image's latents against a relaxed rate-distortion loss, scoring candidates with the
real coding objective."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..interface import ProgressCallback, RefineOptions

TAU_MAX = 0.5
EDGE = 1e-6


def temperature(step: int, total: int) -> float:
    """tau(t) = min(0.5, 0.5 exp(-c (t - t0))): the paper's schedule (t0 = 700, c = 0.002 at
    2000 steps) stretched to `total` steps, so a short run still anneals to tau ~ 0.04."""
    t0 = 0.35 * total
    c = 2.6 / max(1.0, total - t0)
    return min(TAU_MAX, TAU_MAX * math.exp(-c * (step - t0)))


def sga_round(proxy: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """A relaxed sample of rounding each entry down or up (Gumbel-softmax, psi = atanh)."""
    down = torch.floor(proxy).detach()
    fraction = proxy - down
    logits = torch.stack([-torch.atanh(fraction.clamp(0, 1 - EDGE)) / tau,
                          -torch.atanh((1 - fraction).clamp(0, 1 - EDGE)) / tau], dim=-1)
    uniform = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp(EDGE, 1 - EDGE)
    gumbel = -torch.log(-torch.log(uniform))
    weights = torch.softmax((logits + gumbel) / tau, dim=-1)
    return down + weights[..., 1]


def anneal(model: nn.Module, variables: Sequence[torch.Tensor],
           relaxed_loss: Callable[[float, torch.Generator], torch.Tensor], score: Callable[[int], float],
           options: RefineOptions, on_progress: ProgressCallback | None = None) -> int:
    """The annealing loop every family's SGA shares: Adam on `variables` (leaf tensors) against
    relaxed_loss(tau, generator) while the temperature falls, the network frozen. score(step)
    rounds the current variables, scores them with the real coding objective, keeps the best
    candidate and returns the best loss so far; it runs every options.evaluate_every steps and
    after the last step. Returns the number of steps taken (fewer when options.seconds runs out)."""
    generator = torch.Generator().manual_seed(options.seed)
    optimizer = torch.optim.Adam(list(variables), lr=options.lr)
    model.requires_grad_(False)
    started = time.monotonic()
    step = scored = 0
    try:
        while step < options.steps:
            if options.seconds is not None and time.monotonic() - started > options.seconds:
                break
            loss = relaxed_loss(temperature(step, options.steps), generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % options.evaluate_every == 0 or step == options.steps:
                best, scored = score(step), step
                if on_progress is not None:
                    on_progress(step, best)
    finally:
        model.requires_grad_(True)
    if scored != step:  # stopped by the clock between two scorings
        score(step)
    return step
