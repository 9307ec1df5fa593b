"""Fitting the quantization steps of the operating points to data (`lic tune`), and carrying a
trained ladder into a network of another length."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from .network import LATENT_CHANNELS, FlowCompression, pixels_to_flow, rate_and_mse


def fit_steps(model: FlowCompression, batches: Iterator[torch.Tensor], iterations: int, lr: float = 0.1,
              log: Callable[[str], None] = print) -> None:
    """Fit every operating point's steps (Δ0 per channel, Δ1, Δ2) to training crops, the network
    frozen: Adam on the log steps (the paper's recipe, lr 0.1) minimising the noise-relaxed
    bits/pixel + distortion_weight / ladder[q]^2 * MSE, i.e. each point keeps its rate-distortion
    slope and trades bits between levels and channels where that pays. Writes model.log_steps."""
    model.eval().requires_grad_(False)
    log_steps = nn.Parameter(model.log_steps.detach().clone().float())
    slopes = model.config.distortion_weight / torch.tensor(model.config.ladder, device=log_steps.device) ** 2
    optimizer = torch.optim.Adam([log_steps], lr=lr)
    c0, count = LATENT_CHANNELS[0], model.num_qualities
    running = None
    for iteration in range(iterations):
        x = next(batches)
        quality = (iteration * x.shape[0] + torch.arange(x.shape[0], device=x.device)) % count
        with torch.no_grad():
            z = model.flow(pixels_to_flow(x))
        out = model.relaxed(z, model.steps(quality, log_steps), noisy=True, preview=False)
        bpp, mse = rate_and_mse(x, out)
        loss = (bpp + slopes[quality] * mse).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        running = value if running is None else 0.95 * running + 0.05 * value
        if (iteration + 1) % 20 == 0 or iteration + 1 == iterations:
            log(f"fit {iteration + 1}/{iterations}: loss {running:.4f}")
    model.log_steps.copy_(log_steps.detach())
    for q in range(count):
        steps = torch.exp(log_steps[q].detach())
        log(f"q{q + 1}: Δ0 {float(steps[:c0].min()):.3g}-{float(steps[:c0].max()):.3g}, "
            f"Δ1 {float(steps[c0]):.3g}, Δ2 {float(steps[c0 + 1]):.3g}")


def fit_ladder(state: dict[str, torch.Tensor], target: FlowCompression) -> dict[str, torch.Tensor]:
    """A trained state moved to the target's ladder of operating points: the flow and the priors
    serve any step, so only the steps change (each quality starts at its nominal step everywhere;
    `lic tune` fits them)."""
    trained = state.get("ladder")
    if trained is None:  # a checkpoint from before the ladder was stored: its steps are nominal
        trained = state["log_steps"][:, 0].float().exp()
    if trained.shape == target.ladder.shape and torch.allclose(trained.float(), target.ladder, rtol=1e-3):
        return {**state, "ladder": trained.to(target.ladder.dtype)}
    return {**state, "ladder": target.ladder.clone(), "log_steps": target.log_steps.detach().clone()}
