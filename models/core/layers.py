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


# Decoding: the same functions as the training modules, arranged for speed (measured in
# docs/notes/2026-12-02-decode-speed.md). Outputs differ from the modules' by float rounding only.

# Rows of the (pixels, channels) view that GDN normalises at a time: a block stays in L2 cache
# between the square, the GEMM and the product.
GDN_BLOCK_ROWS = 4096
# A transposed convolution with at most this many outputs runs as one sub-pixel convolution: oneDNN's
# transposed kernels are slow for few output channels (the synthesis's RGB layer).
SUBPIXEL_MAX_OUT_CHANNELS = 16


def gdn_in_place(gdn: GDN, x: torch.Tensor) -> torch.Tensor:
    """gdn(x) written over x (channels_last, not needed afterwards), block by block."""
    channels = x.shape[1]
    flat = x.permute(0, 2, 3, 1).reshape(-1, channels)
    if flat.data_ptr() != x.data_ptr():
        return gdn(x)
    beta = gdn.beta().to(flat.dtype)
    gamma_t = gdn.gamma().t().to(flat.dtype).contiguous()
    rows = min(GDN_BLOCK_ROWS, flat.shape[0])
    squares = flat.new_empty(rows, channels)
    norms = flat.new_empty(rows, channels)
    for start in range(0, flat.shape[0], rows):
        block = flat[start:start + rows]
        count = block.shape[0]
        torch.mul(block, block, out=squares[:count])
        torch.addmm(beta, squares[:count], gamma_t, out=norms[:count])
        norms[:count].sqrt_() if gdn.inverse else norms[:count].rsqrt_()
        block.mul_(norms[:count])
    return x


def subpixel_weight(layer: nn.ConvTranspose2d) -> torch.Tensor:
    """The (4 * out, in, 3, 3) weight of a convolution whose pixel_shuffle(2) equals `layer`
    (kernel 5, stride 2, padding 2, output padding 1): output 2m + a takes input m + d through tap
    a + 2 - 2d of the transposed kernel; taps outside the kernel are zero."""
    weight = layer.weight
    in_channels, out_channels = weight.shape[:2]
    padded = F.pad(weight, (1, 2, 1, 2))  # taps -1..5 at 0..6: a + 2 - 2d + 1 for a in 0..1, d in -1..1
    offsets = torch.arange(2)[:, None] + 3 - 2 * torch.arange(-1, 2)[None, :]  # (phase a, d)
    taps = padded[:, :, offsets[:, None, :, None], offsets[None, :, None, :]]  # (in, out, a, b, dy, dx)
    return taps.permute(1, 2, 3, 0, 4, 5).reshape(out_channels * 4, in_channels, 3, 3)


def is_subpixel_compatible(layer: nn.Module) -> bool:
    return (isinstance(layer, nn.ConvTranspose2d) and layer.kernel_size == (5, 5) and layer.stride == (2, 2)
            and layer.padding == (2, 2) and layer.output_padding == (1, 1) and layer.groups == 1
            and layer.dilation == (1, 1))


def run_decoder(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """layers(x) for decoding (no gradients): GDNs normalise in place, a transposed convolution to
    few channels runs as a sub-pixel convolution. x is channels_last and consumed."""
    for layer in layers:
        if isinstance(layer, GDN) and x.is_contiguous(memory_format=torch.channels_last):
            x = gdn_in_place(layer, x)
        elif is_subpixel_compatible(layer) and layer.out_channels <= SUBPIXEL_MAX_OUT_CHANNELS:
            bias = None if layer.bias is None else layer.bias.repeat_interleave(4)
            x = F.pixel_shuffle(F.conv2d(x, subpixel_weight(layer), bias, padding=1), 2)
        else:
            x = layer(x)
    return x


class SubpixelDecoder(nn.Module):
    """A synthesis arranged for export (models/runtime/export.py): every transposed convolution of
    kernel 5, stride 2 as a 3x3 convolution and a pixel shuffle, its weights derived in the graph
    from the stored ones. ONNX Runtime runs that in a third of the memory of its transposed
    convolution (whose column buffer at full resolution is hundreds of MB) and a little faster.
    Parameters keep the wrapped module's names under `attribute`."""

    def __init__(self, layers: nn.Sequential, attribute: str = "g_s"):
        super().__init__()
        self.attribute = attribute
        setattr(self, attribute, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in getattr(self, self.attribute):
            if is_subpixel_compatible(layer):
                bias = None if layer.bias is None else layer.bias.repeat_interleave(4)
                x = F.pixel_shuffle(F.conv2d(x, subpixel_weight(layer), bias, padding=1), 2)
            else:
                x = layer(x)
        return x


class SubpixelConvolution(nn.Module):
    """A transposed convolution of kernel 5, stride 2 as a 3x3 convolution and a pixel shuffle, its
    parameters stored rearranged (subpixel_weight): the form a graph that takes parameters of any
    width exports (models/runtime/graphs.py rearranges a weight file's arrays the same way)."""

    def __init__(self, layer: nn.ConvTranspose2d):
        super().__init__()
        self.weight = nn.Parameter(subpixel_weight(layer).detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=1), 2)


def with_subpixel_convolutions(layers: nn.Sequential) -> nn.Sequential:
    """A copy of a synthesis whose transposed convolutions of kernel 5, stride 2 (at its top level)
    are SubpixelConvolutions, under the same names."""
    return nn.Sequential(*(SubpixelConvolution(layer) if is_subpixel_compatible(layer) else layer
                           for layer in layers))


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()
