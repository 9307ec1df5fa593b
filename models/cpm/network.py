"""The cpm auto-encoder with its importance map, learned centres and per-quality parameters."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.similarity import ms_ssim_batch
from .context_model import ContextModel, context_planes, quality_values
from .layout import CONTEXT_TILE, DECODER_TILES, DEFAULT_TARGETS, DOWNSAMPLING, ENCODER_TILES, WAVEFRONT  # noqa: F401 (re-exported)

# Photo statistics for the input normalisation (the paper normalises by its dataset's mean/variance).
PIXEL_MEAN = (0.45, 0.43, 0.39)
PIXEL_STD = (0.27, 0.26, 0.28)
DISTORTION_SCALE = 100.0  # loss = 100 * d + beta * max(bpp - target, 0) + context cross-entropy
# d = 1 - MS-SSIM + 10 * MSE of 16x-downsampled images: MS-SSIM barely sees a global colour cast (only
# its coarsest luminance term does), and training on MS-SSIM alone drifts the colours
# (docs/notes/2026-12-02-cpm-first-runs.md). The pooled term pins the colours and is negligible
# once they are right; the detail is left to MS-SSIM.
COLOUR_POOL = 16
COLOUR_WEIGHT = 10.0


@dataclass(frozen=True)
class CpmConfig:
    channels: int = 64  # width at 1/4 resolution (paper: 128)
    stem_channels: int = 32  # width at 1/2 resolution (paper: 64)
    groups: int = 2  # residual groups of the trunk (paper's released code: 5)
    blocks_per_group: int = 2  # (released code: 3)
    latent_channels: int = 32  # K
    centres: int = 6  # L
    context_width: int = 24
    context_layers: int = 4
    targets: tuple[float, ...] = DEFAULT_TARGETS  # H_target per quality, bits per pixel of the symbols
    beta: float = 50.0


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------
def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2)


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, 2, 2, output_padding=1)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 3), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                  _conv(channels, channels, 3), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualTrunk(nn.Module):
    """The released code's trunk: groups of blocks with a skip around each group, one more block,
    and a long skip around everything."""

    def __init__(self, channels: int, groups: int, blocks: int):
        super().__init__()
        self.groups = nn.ModuleList(nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
                                    for _ in range(groups))
        self.last = ResidualBlock(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for group in self.groups:
            y = y + group(y)
        return x + self.last(y)


def _encoder(config: CpmConfig) -> nn.Sequential:
    s, c = config.stem_channels, config.channels
    return nn.Sequential(
        _conv(3, s, 5, 2), nn.BatchNorm2d(s), nn.ReLU(inplace=True),
        _conv(s, c, 5, 2), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
        ResidualTrunk(c, config.groups, config.blocks_per_group),
        _conv(c, config.latent_channels + 1, 5, 2))


def _decoder(config: CpmConfig) -> nn.Sequential:
    s, c = config.stem_channels, config.channels
    return nn.Sequential(
        _deconv(config.latent_channels, c), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
        ResidualTrunk(c, config.groups, config.blocks_per_group),
        _deconv(c, s), nn.BatchNorm2d(s), nn.ReLU(inplace=True),
        _deconv(s, 3))


def quantize(z: torch.Tensor, centres: torch.Tensor, sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_hat, symbols): the nearest centre forward, the soft assignment softmax(-sigma d^2) backward."""
    distances = (z.unsqueeze(-1) - centres) ** 2
    soft = (torch.softmax(-sigma * distances, dim=-1) * centres).sum(-1)
    symbols = torch.argmin(distances.detach(), dim=-1)
    return soft + (centres[symbols] - soft).detach(), symbols


def channel_masks(importance: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, 1, h, w) importance y in [0, K] -> (B, K, h, w) masks: channel k is coded iff y > k (the
    paper's ceil(clip(y - k, 0, 1))).

    Backward, each mask follows clip((y - k + 1) / 2, 0, 1), a ramp over (k - 1, k + 1), so the
    gradient on y weighs both the last coded channel and the first uncoded one (whose symbol and
    its cost exist in training): with the paper's clip(y - k, 0, 1) only the last coded channel
    has a gradient, nothing says what a further channel would buy, and the rate stayed far below
    its targets."""
    ramp = (importance - torch.arange(channels, device=importance.device)[None, :, None, None] + 1) / 2
    soft = torch.clamp(ramp, 0, 1)
    hard = (ramp > 0.5).to(soft.dtype)
    return hard + (soft - soft.detach())



class ConditionalProbabilityModel(nn.Module):
    def __init__(self, config: CpmConfig | None = None):
        super().__init__()
        self.config = config = config or CpmConfig()
        k, q = config.latent_channels, len(config.targets)
        self.encoder = _encoder(config)
        self.decoder = _decoder(config)
        self.centres = nn.Parameter(torch.linspace(-2, 2, config.centres))
        self.context = ContextModel(config)
        spread = math.log(1.3) * (torch.arange(q, dtype=torch.float32) - (q - 1) / 2)
        self.log_gain = nn.Parameter(spread[:, None].repeat(1, k))
        self.log_inverse_gain = nn.Parameter(-spread[:, None].repeat(1, k))
        self.importance_scale = nn.Parameter(torch.ones(q))
        # Start each quality with roughly its share of the channels.
        shares = torch.tensor(config.targets) / (max(config.targets) * 1.25)
        self.importance_bias = nn.Parameter(torch.log(shares / (1 - shares)))
        self.register_buffer("targets", torch.tensor(config.targets, dtype=torch.float32))
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1))
        self.straight_through = False  # the rate-distortion driver's switch; quantization here is always hard
        self.training_options: object = None  # the family's training options, set by the training driver

    @property
    def num_qualities(self) -> int:
        return len(self.config.targets)

    # Stages (float32 out; callers choose autocast). quality: (B,) 0-based indices.
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x in [0, 1], sides multiples of 8 -> (B, 1 + K, H/8, W/8): importance logit, then z."""
        return self.encoder((x - self.pixel_mean) / self.pixel_std).float()

    def importance(self, raw: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """Importance logits (B, 1, h, w) -> y in [0, K]."""
        scale = self.importance_scale[quality][:, None, None, None]
        bias = self.importance_bias[quality][:, None, None, None]
        return self.config.latent_channels * torch.sigmoid(raw * scale + bias)

    def gained(self, z: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        return z * torch.exp(self.log_gain[quality])[:, :, None, None]

    def synthesis(self, coded: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """Masked centre values (B, K, h, w) -> reconstruction in [0, 1] (clipped)."""
        latents = coded * torch.exp(self.log_inverse_gain[quality])[:, :, None, None]
        x = self.decoder(latents).float() * self.pixel_std + self.pixel_mean
        return x.clamp(0, 1)

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (B, 3, H, W) in [0, 1], sides multiples of 8. What the coder does, with gradients."""
        features = self.features(x)
        mask = channel_masks(self.importance(features[:, :1], quality), self.config.latent_channels)
        z_hat, symbols = quantize(self.gained(features[:, 1:], quality), self.centres)
        coded = z_hat * mask
        return {"x_hat": self.synthesis(coded, quality), "coded": coded, "mask": mask, "symbols": symbols}

    def symbol_bits(self, out: dict[str, torch.Tensor], quality: torch.Tensor,
                    train: str = "both") -> torch.Tensor:
        """Cross-entropy (B,) in bits of the coded symbols under the context model.

        train: which side its gradient reaches: "encoder" (the context model's parameters held
        fixed), "context" (the symbols and masks held fixed: its own cross-entropy loss), "both"."""
        planes = context_planes(out["coded"], out["mask"], quality_values(self.num_qualities).float()
                                .to(out["coded"].device)[quality]).float()
        mask, symbols = out["mask"], out["symbols"]
        if train == "context":
            planes, mask = planes.detach(), mask.detach()
        if train == "encoder":
            fixed = {name: value.detach() for name, value in self.context.state_dict(keep_vars=True).items()}
            logits = torch.func.functional_call(self.context, fixed, (planes,))
        else:
            logits = self.context(planes)
        log2_probs = torch.log_softmax(logits * math.log(2), dim=1) / math.log(2)
        picked = log2_probs.gather(1, symbols[:, None]).squeeze(1)
        return -(picked * mask).sum(dim=(1, 2, 3))

    def rate_distortion(self, x: torch.Tensor, quality: torch.Tensor, out: dict[str, torch.Tensor],
                        channel_rate_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """100 d + beta max(bpp - target_q, 0) per sample for the auto-encoder (d: 1 - MS-SSIM and a
        colour term, see COLOUR_WEIGHT), whose bpp counts the symbols (under the context model,
        held fixed) and the importance map, which the file codes too; plus the context model's own
        cross-entropy on the detached symbols, so it trains concurrently (two passes of the small
        3D network). channel_rate_weights: unused (no grown latents)."""
        pixels = x.shape[2] * x.shape[3]
        importance_bpp = importance_map_bits(out["mask"].sum(dim=1), self.config.latent_channels) / pixels
        bpp = self.symbol_bits(out, quality, train="encoder") / pixels + importance_bpp
        context_bpp = self.symbol_bits(out, quality, train="context") / pixels if self.training else 0
        similarity = ms_ssim_batch(out["x_hat"], x.float())
        colour = torch.mean((F.avg_pool2d(out["x_hat"], COLOUR_POOL) - F.avg_pool2d(x.float(), COLOUR_POOL)) ** 2,
                            dim=(1, 2, 3))
        hinge = torch.relu(bpp - self.targets[quality])
        distortion = 1 - similarity + COLOUR_WEIGHT * colour
        loss = DISTORTION_SCALE * distortion + self.config.beta * hinge + context_bpp
        mse = torch.mean((out["x_hat"] - x) ** 2, dim=(1, 2, 3))
        return {"loss": loss.mean(), "bpp": bpp.mean(), "msssim": similarity.mean(), "mse": mse.mean(),
                "psnr": (10 * torch.log10(1 / mse.clamp(min=1e-10))).mean()}


def importance_map_bits(counts: torch.Tensor, channels: int) -> torch.Tensor:
    """Bits (B,) of coded-channel counts (B, h, w) under the coder's model: median-edge prediction
    residuals r, a two-sided geometric distribution fitted to each map (its ratio from mean |r|).
    Differentiable through the counts (straight-through masks), so training smooths the map."""
    height, width = counts.shape[1:]
    rows = torch.arange(height, device=counts.device)[:, None]
    cols = torch.arange(width, device=counts.device)[None, :]
    has_up, has_left = rows > 0, cols > 0
    left_of = F.pad(counts, (1, 0))[:, :, :width]
    above = F.pad(counts, (0, 0, 1, 0))[:, :height]
    corner_of = F.pad(counts, (1, 0, 1, 0))[:, :height, :width]
    left = torch.where(has_left, left_of, torch.where(has_up, above, torch.full_like(counts, channels // 2)))
    up = torch.where(has_up, above, left)
    corner = torch.where(has_up & has_left, corner_of, torch.where(has_up, up, left))
    low, high = torch.minimum(left, up), torch.maximum(left, up)
    prediction = torch.where(corner >= high, low, torch.where(corner <= low, high, left + up - corner))
    magnitude = (counts - prediction).abs()
    mean = magnitude.mean(dim=(1, 2)).detach().clamp(min=1e-3)
    ratio = ((torch.sqrt(1 + mean**2) - 1) / mean).clamp(max=1 - 1e-6)  # E|r| = 2 ratio / (1 - ratio^2)
    per_position = -torch.log2((1 - ratio) / (1 + ratio))[:, None, None] - magnitude * torch.log2(ratio)[:, None, None]
    return per_position.sum(dim=(1, 2))
