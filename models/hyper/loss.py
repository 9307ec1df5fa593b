"""The rate-distortion loss of the hyperprior models."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .network import MeanScaleHyperprior




def rate_distortion_loss(
    model: MeanScaleHyperprior, x: torch.Tensor, quality: torch.Tensor, out: dict[str, torch.Tensor],
    channel_rate_weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample bpp + lambda_q * 255^2 * MSE, averaged over the batch.

    channel_rate_weights: optional (M,) factors on the bits of each latent channel in the loss (the
    reported bpp is always the full rate), e.g. to spare newly grown channels the rate term while
    the synthesis learns to use them."""
    pixels = x.shape[2] * x.shape[3]
    y_bits = -torch.log2(out["y_likelihoods"])
    bits = y_bits.sum(dim=(1, 2, 3))
    if channel_rate_weights is not None:
        weighted_bits = (y_bits * channel_rate_weights.to(y_bits)[None, :, None, None]).sum(dim=(1, 2, 3))
    else:
        weighted_bits = bits
    if "z_bits" in out:  # bits-back models report the net hyperlatent cost directly
        z_bits = out["z_bits"].sum(dim=(1, 2, 3))
    else:
        z_bits = -torch.log2(out["z_likelihoods"]).sum(dim=(1, 2, 3))
    bpp = (bits + z_bits) / pixels
    mse = torch.mean((out["x_hat"] - x) ** 2, dim=(1, 2, 3))
    loss = (weighted_bits + z_bits) / pixels + model.lambdas[quality] * 255**2 * mse
    return {"loss": loss.mean(), "bpp": bpp.mean(), "mse": mse.mean(),
            "psnr": (10 * torch.log10(1 / mse.clamp(min=1e-10))).mean()}
