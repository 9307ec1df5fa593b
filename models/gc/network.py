"""The generative compression network: encoder, quantized bottleneck W and generator."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .boxes import random_boxes
from .context import NUM_SYMBOLS, ZERO_SYMBOL, ChannelContext, quantize
from .discriminator import MultiScaleDiscriminator, _instance_norm, discriminator_loss
from .layout import DOWNSAMPLING, ENCODER_TILES, GENERATOR_TILES, MIN_LATENT, latent_size  # noqa: F401 (re-exported)
from .losses import LossWeights, generator_losses


@dataclass(frozen=True)
class GcConfig:
    bottleneck: int = 4  # C
    width: int = 192  # the paper's 960
    residual_blocks: int = 9
    context_width: int = 48
    adversarial: bool = True  # False: the paper's "MSE bl." (same architecture, distortion only)
    norm: str = "channel"  # "channel" (HiFiC's ChannelNorm) or "instance" (the paper's; see ChannelNorm2d)
    # Selective generation (the paper's SC, random-box mode): the generator also sees the
    # preservation map m and synthesises where it is 0; training preserves random boxes.
    selective: bool = False


class ChannelNorm2d(nn.Module):
    """Normalise each pixel's feature vector over channels, then a per-channel affine map.

    Why not the paper's instance norm: after the encoder's first (linear) convolution, instance
    norm removes each feature map's spatial mean and scale, so the encoder becomes exactly
    invariant to a per-channel offset or gain of its input: global colour, brightness and
    contrast cannot reach W. Trained that way (1000 steps), full images decoded near a constant
    grey (13.8 dB; a constant grey scores 13.9 dB on Kodak). Mentzer et al. 2020 (HiFiC, the
    follow-up by the same group) replace instance norm by this normalisation, which also does not
    depend on the image size (training crops vs. whole images).
    """

    def __init__(self, channels: int, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.channels = channels  # a constant for graph export (x.shape[1] would be traced)
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Layer norm over the channel axis of a channels-last view: one fused kernel.
        normalised = F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), self.weight.view(-1), self.bias.view(-1),
                                  self.eps)
        return normalised.permute(0, 3, 1, 2)


NORMS = {"channel": ChannelNorm2d, "instance": _instance_norm}


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    # Replicate padding works at every size (reflection needs more pixels than the pad, and a
    # 1x1 image has a 1x1 bottleneck).
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, padding_mode="replicate")


class Encoder(nn.Sequential):
    def __init__(self, width: int, bottleneck: int, norm: str = "channel"):
        _norm = NORMS[norm]
        widths = [width // 16, width // 8, width // 4, width // 2, width]
        layers: list[nn.Module] = [_conv(3, widths[0], 7), _norm(widths[0]), nn.ReLU(inplace=True)]
        for cin, cout in pairwise(widths):
            layers += [_conv(cin, cout, 3, 2), _norm(cout), nn.ReLU(inplace=True)]
        layers.append(_conv(widths[-1], bottleneck, 3))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str = "channel"):
        super().__init__()
        _norm = NORMS[norm]
        self.body = nn.Sequential(_conv(channels, channels, 3), _norm(channels), nn.ReLU(inplace=True),
                                  _conv(channels, channels, 3), _norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Sequential):
    def __init__(self, width: int, bottleneck: int, blocks: int, norm: str = "channel"):
        _norm = NORMS[norm]
        layers: list[nn.Module] = [_conv(bottleneck, width, 3), _norm(width), nn.ReLU(inplace=True)]
        layers += [ResidualBlock(width, norm) for _ in range(blocks)]
        channels = width
        for _ in range(4):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 3, 2, 1, output_padding=1),
                       _norm(channels // 2), nn.ReLU(inplace=True)]
            channels //= 2
        layers += [_conv(channels, 3, 7), nn.Tanh()]
        super().__init__(*layers)



class GenerativeCompression(nn.Module):
    def __init__(self, config: GcConfig | None = None):
        super().__init__()
        self.config = config = config or GcConfig()
        self.training_options: object = None  # the family's training options, set by the training driver
        if config.norm not in NORMS:
            raise ValueError(f"unknown normalisation {config.norm!r} (known: {', '.join(NORMS)})")
        self.encoder = Encoder(config.width, config.bottleneck, config.norm)
        self.generator = Generator(config.width, config.bottleneck + config.selective, config.residual_blocks,
                                   config.norm)
        self.context = ChannelContext(config.bottleneck, config.context_width)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x in [0, 1], sides multiples of 16 -> the encoder's continuous W (B, C, h, w)."""
        return self.encoder(x * 2 - 1).float()

    def analyse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x in [0, 1], sides multiples of 16 -> (w_hat, symbols (B, C, h, w) in 0..4)."""
        return quantize(self.features(x))

    def synthesise(self, w_hat: torch.Tensor, preserve: torch.Tensor | None = None) -> torch.Tensor:
        """w_hat (B, C, h, w) -> image in [0, 1]. preserve (B, 1, h, w), 1 = keep, 0 = synthesise
        (selective models only; None: keep everything); w_hat must be 0 where preserve is."""
        if self.config.selective:
            if preserve is None:
                preserve = w_hat.new_ones(w_hat.shape[0], 1, *w_hat.shape[2:])
            w_hat = torch.cat([w_hat, preserve.to(w_hat.dtype)], dim=1)
        elif preserve is not None:
            raise ValueError("this model has no selective generation")
        return (self.generator(w_hat).float() + 1) / 2

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        w_hat, symbols = self.analyse(x)
        out = {"w_hat": w_hat, "symbols": symbols}
        if self.config.selective and self.training:
            preserve = random_boxes(w_hat.shape[0], *w_hat.shape[2:], device=w_hat.device)
            out.update(w_hat=w_hat * preserve, symbols=torch.where(preserve.bool(), symbols, ZERO_SYMBOL),
                       preserve=preserve)
        out["x_hat"] = self.synthesise(out["w_hat"], out.get("preserve"))
        return out

    # What the GAN training driver needs besides the forward pass (it never names this module).
    @staticmethod
    def make_discriminator(width: int) -> nn.Module:
        return MultiScaleDiscriminator(base=width)

    def generator_losses(self, x, x_hat, real, fake, preserve=None) -> dict[str, torch.Tensor]:
        """The losses, with the optional terms that the training options ask for."""
        options = self.training_options
        weights = LossWeights(ms_ssim=getattr(options, "ms_ssim_weight", 0.0),
                              synthesised_colour=getattr(options, "synthesised_colour_weight", 0.0))
        return generator_losses(x, x_hat, real, fake, preserve, weights)

    @staticmethod
    def discriminator_loss(real, fake) -> torch.Tensor:
        return discriminator_loss(real, fake)

    def rate_bound_bits(self, height: int, width: int) -> float:
        return bound_bits(height, width, self.config.bottleneck)


def bound_bits(height: int, width: int, bottleneck: int) -> float:
    """The architecture's rate bound dim(W) * log2(5) in bits."""
    rows, cols = latent_size(height, width)
    return rows * cols * bottleneck * float(np.log2(NUM_SYMBOLS))

