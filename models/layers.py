"""Network building blocks shared by the model families."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NonNegative(nn.Module):
    """Stores a parameter as sqrt(v + eps) so that v stays >= a lower bound (Balle et al.)."""

    def __init__(self, initial: torch.Tensor, minimum: float = 0.0, eps: float = 2**-18):
        super().__init__()
        self.pedestal = eps**2
        self.bound = (minimum + self.pedestal) ** 0.5
        self.raw = nn.Parameter(torch.sqrt(torch.clamp(initial + self.pedestal, min=self.pedestal)))

    def forward(self) -> torch.Tensor:
        return LowerBound.apply(self.raw, self.bound) ** 2 - self.pedestal


class LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still pushes x upwards when it sits below the bound."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.clamp(x, min=bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        passthrough = (x >= ctx.bound) | (grad < 0)
        return grad * passthrough.to(grad.dtype), None


class GDN(nn.Module):
    """Generalized divisive normalization; ``inverse=True`` gives IGDN for synthesis transforms."""

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta = NonNegative(torch.ones(channels), minimum=beta_min)
        self.gamma = NonNegative(gamma_init * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() and x.is_contiguous(memory_format=torch.channels_last):
            return self._forward_inference(x)
        channels = x.shape[1]
        gamma = self.gamma().view(channels, channels, 1, 1)
        norm = torch.sqrt(F.conv2d(x * x, gamma, self.beta()))
        return x * norm if self.inverse else x / norm

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """Same function as one GEMM over the (pixels, channels) view of a channels_last tensor,
        with in-place elementwise steps: a third less memory traffic than the conv form."""
        batch, channels, height, width = x.shape
        flat = x.permute(0, 2, 3, 1).reshape(-1, channels)
        norm = torch.addmm(self.beta().to(flat.dtype), flat * flat, self.gamma().t().to(flat.dtype))
        norm.sqrt_() if self.inverse else norm.rsqrt_()
        norm.mul_(flat)
        return norm.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def conv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def deconv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()
