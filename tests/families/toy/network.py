"""The toy network, trainable by the rate-distortion driver (models.interface.RateDistortionTrainable)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

STRIDE = 8
STEPS = (1.0, 0.25)  # quantization step per quality
LAMBDA = 0.01


@dataclass(frozen=True)
class ToyConfig:
    channels: int = 4


class ToyNet(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.analysis = nn.Conv2d(3, config.channels, STRIDE, STRIDE)
        self.synthesis = nn.ConvTranspose2d(config.channels, 3, STRIDE, STRIDE)
        self.num_qualities = len(STEPS)
        self.straight_through = False
        self.training_options: object = None

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        steps = torch.tensor(STEPS, device=x.device)[quality][:, None, None, None]
        y = self.analysis(x) / steps
        if self.training and not self.straight_through:
            y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_hat = y + (torch.round(y) - y).detach()
        return {"x_hat": self.synthesis(y_hat * steps), "y_hat": y_hat}

    def rate_distortion(self, x: torch.Tensor, quality: torch.Tensor, out: dict[str, torch.Tensor],
                        channel_rate_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Bits under a unit Laplace density; the distortion weighted by the family's own option."""
        laplace = torch.distributions.Laplace(0.0, 1.0)
        y_hat = out["y_hat"].float()
        probability = (laplace.cdf(y_hat + 0.5) - laplace.cdf(y_hat - 0.5)).clamp(min=1e-9)
        bpp = -torch.log2(probability).sum() / (x.shape[0] * x.shape[2] * x.shape[3])
        mse = torch.mean((out["x_hat"].float() - x) ** 2)
        weight = getattr(self.training_options, "distortion_weight", 1.0)
        return {"loss": bpp + weight * LAMBDA * 255**2 * mse, "bpp": bpp,
                "psnr": -10 * torch.log10(mse.clamp(min=1e-10))}
