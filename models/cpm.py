"""Conditional probability models for deep image compression (Mentzer et al. 2018): `cpm`.

The network (one for every operating point, see "Qualities" below)::

    x -> normalise -> conv5/2 -> conv5/2 -> residual trunk -> conv5/2 -> [importance | z]   (1 + K channels, 1/8)
    z * gain_q -> nearest of L learned centres -> z_hat (hard forward, soft assignment backward)
    importance y = K * sigmoid(a_q * raw + b_q); channel k of a position is coded iff y > k
    coded = z_hat * mask -> * inverse gain_q -> deconv5/2 -> residual trunk -> deconv5/2 -> deconv5/2 -> x_hat

Symbols outside the mask are never coded: the decoder knows them from the importance map, which
is coded first (``ImportanceCoder``). The coded symbols are coded with the probabilities of a
masked 3D CNN over the symbol volume (channels as depth, ``ContextModel``): each layer's kernel
covers the current and the previous channel slice (2x3x3), the first layer excludes the centre.
Its inputs are the causal symbol values, the importance mask (known in full before the symbols)
and the quality. Trained concurrently (cross-entropy); the auto-encoder pays
``beta * max(H - H_target_q, 0)`` for rate and ``1 - MS-SSIM`` for distortion.

Coding workflow (``CpmCodec``): the encoder runs the context model once over the whole volume, in
exact fixed point (``FixedContext``: the arithmetic of ``models/fixedpoint.py``, integer softmax),
and pushes every coded symbol onto one ANS stack. The decoder cannot run it in parallel (each
symbol's probabilities need the symbols before it), nor once per symbol (~200k network runs per
Kodak image). It decodes in wavefronts: with 2x3x3 masked kernels every layer's activation at
(c, h, w) needs only activations at positions with a smaller t = 4c + 2h + w (and, for hidden
layers, its own position one layer down), so step t computes every layer at the positions of
that t, reusing the cached activations of earlier steps, then decodes their symbols. A Kodak
image takes ~350 steps. Large images are coded in independent context tiles of 128 latents.

Qualities: the paper trains one network per operating point. With our compute (a CPU) one
network serves all of them: per-quality gains on z (as in `hyper`), a per-quality affine map
of the importance logit and a per-quality rate target, trained together (each sample draws a
quality), so one run trains every operating point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bitstream.coders import InformationBudget, stack_from_bytes, symbol_costs, words_to_bytes
from bitstream.container import FormatError
from bitstream.tables import TOTAL

from . import fixedpoint, precision
from .geometry import Tiles, ceil_div, pad_to_multiple, to_uint8, unit_float
from .interface import PLAIN, Capabilities, EncodeOptions, Geometry, Qualities, check_refine
from .similarity import ms_ssim_batch

DOWNSAMPLING = 8
# Photo statistics for the input normalisation (the paper normalises by its dataset's mean/variance).
PIXEL_MEAN = (0.45, 0.43, 0.39)
PIXEL_STD = (0.27, 0.26, 0.28)
# The encoder sees +-70 pixels, the decoder +-9 latents: margins cover both (tiles meet without seams).
ENCODER_TILES = Tiles(core=1024, margin=96)
DECODER_TILES = Tiles(core=64, margin=16)
CONTEXT_TILE = 128  # latents per side of an independently coded context volume (bounds memory)
WAVEFRONT = (4, 2, 1)  # t = 4c + 2h + w: see the module docstring
DISTORTION_SCALE = 100.0  # loss = 100 * d + beta * max(bpp - target, 0) + context cross-entropy
# d = 1 - MS-SSIM + 10 * MSE of 16x-downsampled images: MS-SSIM barely sees a global colour cast (only
# its coarsest luminance term does), and after 1500 steps on MS-SSIM alone kodim-like validation
# images came back with red 0.13 too low and blue 0.07 too high (14 dB). The pooled term pins the
# colours and is negligible once they are right (~1e-4); the detail is left to MS-SSIM.
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
    targets: tuple[float, ...] = (0.12, 0.25, 0.45, 0.8)  # H_target per quality, bits per pixel of the symbols
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


# Kernel offsets (depth, row, column) of a 2x3x3 masked kernel that a layer may read, besides the
# full previous channel slice: the rows above and the positions to the left in the current slice.
CAUSAL = ((1, 0, 0), (1, 0, 1), (1, 0, 2), (1, 1, 0))
CENTRE = (1, 1, 1)
INPUT_PLANES = 3  # causal symbol values, importance mask (all of it known), quality


def context_masks(width: int, centres: int, layers: int) -> list[torch.Tensor]:
    """The weight masks (out, in, 2, 3, 3) of the context model's layers."""
    masks = []
    for layer in range(layers):
        cin = INPUT_PLANES if layer == 0 else width
        cout = centres if layer == layers - 1 else width
        mask = torch.zeros(cout, cin, 2, 3, 3)
        mask[:, :, 0] = 1
        for offset in CAUSAL + (() if layer == 0 else (CENTRE,)):
            mask[(slice(None), slice(None)) + offset] = 1
        if layer == 0:
            mask[:, 1:] = 1  # the importance mask and the quality are known everywhere before decoding
        masks.append(mask)
    return masks


class ContextModel(nn.Module):
    """Masked 3D CNN: base-2 logits over the L centres for every symbol of a (B, K, h, w) volume."""

    def __init__(self, config: CpmConfig):
        super().__init__()
        self.layers = nn.ModuleList()
        masks = context_masks(config.context_width, config.centres, config.context_layers)
        for i, mask in enumerate(masks):
            self.layers.append(nn.Conv3d(mask.shape[1], mask.shape[0], (2, 3, 3)))
            self.register_buffer(f"mask{i}", mask)

    def masks(self) -> list[torch.Tensor]:
        return [getattr(self, f"mask{i}") for i in range(len(self.layers))]

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        """planes (B, 3, K, h, w) -> logits (B, L, K, h, w)."""
        x = planes
        for i, (layer, mask) in enumerate(zip(self.layers, self.masks(), strict=True)):
            x = F.conv3d(F.pad(x, (1, 1, 1, 1, 1, 0)), layer.weight * mask, layer.bias)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def context_planes(coded_values: torch.Tensor, mask: torch.Tensor, quality_value: torch.Tensor) -> torch.Tensor:
    """The context model's input planes (B, 3, K, h, w); quality_value: (B,) in [0, 1]."""
    quality_plane = quality_value[:, None, None, None].to(mask.dtype).expand_as(mask)
    return torch.stack([coded_values, mask, quality_plane], dim=1)


def quality_values(count: int) -> torch.Tensor:
    """The quality plane's value of each quality: q / (count - 1) on the fixed-point grid."""
    values = torch.arange(count, dtype=torch.float64) / max(1, count - 1)
    return fixedpoint.snap_activation(values)


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


# ---------------------------------------------------------------------------------------------
# Exact context probabilities
# ---------------------------------------------------------------------------------------------
class ContextVolume:
    """One context tile's symbol volume (K, h, w) in a zero-padded flat layout (one channel slice
    in front, one row/column on each side: the context model's padding), with every layer's
    activations (flat position, channels) on the fixed-point grid."""

    def __init__(self, channels: int, height: int, width: int, widths: list[int]):
        self.shape = (channels, height, width)
        self.padded = (channels + 1, height + 2, width + 2)
        size = self.padded[0] * self.padded[1] * self.padded[2]
        # float32 holds every activation exactly (a 2^-8 grid within +-2^12: 21 significant bits).
        self.activations = [np.zeros((size, w), dtype=np.float32) for w in widths]
        plane, row = self.padded[1] * self.padded[2], self.padded[2]
        self.offsets = np.array([(d - 1) * plane + (r - 1) * row + (c - 1)
                                 for d in range(2) for r in range(3) for c in range(3)], dtype=np.int64)
        c, h, w = np.meshgrid(*(np.arange(n) for n in self.shape), indexing="ij")
        self.flat = ((c + 1) * plane + (h + 1) * row + (w + 1)).ravel()  # volume order (c, h, w)
        self.needed: list[np.ndarray] = []  # per layer: where its output is computed (needed_positions)


@dataclass
class FixedContextLayer:
    weight: np.ndarray  # (18 * in, out) float64 on the 2^-14 grid, masked
    bias: np.ndarray  # (out,) float64 on the 2^-22 grid
    relu: bool


class FixedContext:
    """The context model in exact fixed point (see models/fixedpoint.py), evaluated at any set of
    volume positions by gathering their 2x3x3 neighbourhoods: one parallel pass for the encoder,
    one wavefront step at a time for the decoder, with identical arithmetic."""

    CHUNK = 8192  # positions per gather in a parallel pass (bounds its memory)

    def __init__(self, model: ConditionalProbabilityModel):
        self.layers = []
        for i, (layer, mask) in enumerate(zip(model.context.layers, model.context.masks(), strict=True)):
            weight = fixedpoint.integer_weight(layer.weight * mask)
            bias = fixedpoint.integer_bias(layer.bias)
            fixedpoint.check_exactness(weight, bias)
            # (out, in, d, r, c) -> (d, r, c, in, out): rows match a gathered (position, offset, channel) block.
            matrix = weight.permute(2, 3, 4, 1, 0).reshape(-1, weight.shape[0]) * 2.0**-fixedpoint.WEIGHT_FRAC_BITS
            self.layers.append(FixedContextLayer(matrix.numpy(), bias.numpy() * 2.0**-fixedpoint.PRODUCT_FRAC_BITS,
                                                 relu=i < len(model.context.layers) - 1))
        self.values = fixedpoint.snap_activation(model.centres.detach().double().cpu()).numpy()
        self.quality_values = quality_values(model.num_qualities).numpy()
        self.widths = [INPUT_PLANES] + [layer.bias.shape[0] for layer in self.layers[:-1]]

    def volume(self, shape: tuple[int, int, int], mask: np.ndarray, quality: int) -> ContextVolume:
        """A volume whose importance mask and quality planes are filled, symbols not yet known."""
        volume = ContextVolume(*shape, self.widths)
        volume.needed = needed_positions(mask, len(self.layers))
        inputs = volume.activations[0]
        inputs[volume.flat, 1] = mask.ravel()
        inputs[volume.flat, 2] = self.quality_values[quality]
        return volume

    def set_symbols(self, volume: ContextVolume, positions: np.ndarray, symbols: np.ndarray) -> None:
        """Make decoded symbols (at volume-order indices) known to the later layers' inputs."""
        volume.activations[0][volume.flat[positions], 0] = self.values[symbols]

    def logits(self, volume: ContextVolume, positions: np.ndarray) -> np.ndarray:
        """Every layer at those of these volume-order positions where it is needed (their inputs
        known), caching hidden activations; the base-2 logits (n, L) on the fixed-point grid of
        the coded positions among them, in their order."""
        x = None
        for i in range(len(self.layers)):
            x = self._layer(volume, i, positions[volume.needed[i][positions]])
        return x

    def all_logits(self, volume: ContextVolume) -> np.ndarray:
        """The logits (n, L) of every coded position of a fully known volume, in volume order: one
        layer at a time over the positions where it is needed."""
        x = None
        for i in range(len(self.layers)):
            needed = np.flatnonzero(volume.needed[i])
            x = [self._layer(volume, i, needed[start:start + self.CHUNK])
                 for start in range(0, needed.size, self.CHUNK)]
        return np.concatenate(x) if x else np.zeros((0, len(self.values)))

    def _layer(self, volume: ContextVolume, index: int, positions: np.ndarray) -> np.ndarray:
        """Layer `index` at volume-order positions from the cached activations of the layer below."""
        layer = self.layers[index]
        if not positions.size:
            return np.zeros((0, layer.bias.size))
        flat = volume.flat[positions]
        neighbourhoods = volume.activations[index][flat[:, None] + volume.offsets[None, :]]
        x = neighbourhoods.reshape(len(flat), -1).astype(np.float64) @ layer.weight + layer.bias
        if layer.relu:
            np.maximum(x, 0, out=x)
        x = fixedpoint.snap_array(x)
        if index + 1 < len(self.layers):
            volume.activations[index + 1][flat] = x
        return x


def needed_positions(coded: np.ndarray, layers: int) -> list[np.ndarray]:
    """Per layer, the volume-order positions (bool) where its output is needed: the last layer's
    at the coded symbols, each layer below at every position that a needed one above reads. At
    low rates most of the volume is never evaluated."""
    needed = [coded.ravel()]
    channels, height, width = coded.shape
    for _ in range(layers - 1):
        above = needed[0].reshape(coded.shape)
        padded = np.pad(above, ((0, 1), (1, 1), (1, 1)))
        below = above.copy()
        for depth in (0, 1):  # a position is read by the same and the next channel slice ...
            for row in (0, 1, 2):  # ... one row/column around it
                for col in (0, 1, 2):
                    below |= padded[depth:depth + channels, row:row + height, col:col + width]
        needed.insert(0, below.ravel())
    return needed


def wavefront_steps(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): volume-order indices sorted by t = 4c + 2h + w (then volume order), and
    where each step (a value of t that occurs) begins in that order, one more entry: the end."""
    c, h, w = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    t = (WAVEFRONT[0] * c + WAVEFRONT[1] * h + WAVEFRONT[2] * w).ravel()
    order = np.argsort(t, kind="stable")
    steps = t[order]
    starts = np.concatenate(([0], np.flatnonzero(steps[1:] != steps[:-1]) + 1, [steps.size]))
    return order, starts


# ---------------------------------------------------------------------------------------------
# The importance map: how many channels each position codes
# ---------------------------------------------------------------------------------------------
# Ratios (x / 2^16) of two-sided geometric distributions of prediction residuals, from sharp to
# flat; the encoder picks the one that codes its map in fewest bits and sends its index.
SPREADS = tuple(range(1024, 1 << 16, 4096))


def residual_counts(spread: int, channels: int) -> np.ndarray:
    """Counts (2K+1,) over residuals -K..K: weight 2^40 * ratio^|r|, in integer arithmetic."""
    weights = [1 << 40]
    for _ in range(channels):
        weights.append(weights[-1] * SPREADS[spread] >> 16)
    one_side = np.array(weights, dtype=np.int64)
    return fixedpoint.counts_from_weights(np.concatenate([one_side[:0:-1], one_side]))


def med_prediction(counts: np.ndarray, rows: np.ndarray, cols: np.ndarray, channels: int) -> np.ndarray:
    """LOCO-I's median edge detector: each position's prediction from its left, upper and upper-left
    neighbours (the image border repeats the neighbour that exists; the first position: K/2)."""
    has_up, has_left = rows > 0, cols > 0
    up_row, left_col = np.maximum(rows - 1, 0), np.maximum(cols - 1, 0)
    left = np.where(has_left, counts[rows, left_col], np.where(has_up, counts[up_row, cols], channels // 2))
    up = np.where(has_up, counts[up_row, cols], left)
    corner = np.where(has_up & has_left, counts[up_row, left_col], np.where(has_up, up, left))
    low, high = np.minimum(left, up), np.maximum(left, up)
    return np.where(corner >= high, low, np.where(corner <= low, high, left + up - corner))


def antidiagonals(height: int, width: int):
    """(rows, cols) of each antidiagonal h + w = d: the importance map's decoding steps."""
    for d in range(height + width - 1):
        rows = np.arange(max(0, d - width + 1), min(height, d + 1))
        yield rows, d - rows


def push_importance(coder, counts: np.ndarray, channels: int) -> None:
    import constriction
    rows, cols = np.concatenate([np.stack(rc) for rc in antidiagonals(*counts.shape)], axis=1)
    residuals = counts[rows, cols] - med_prediction(counts, rows, cols, channels) + channels
    costs = [symbol_costs(residual_counts(s, channels))[residuals].sum() for s in range(len(SPREADS))]
    spread = int(np.argmin(costs))
    model = constriction.stream.model.Categorical(residual_counts(spread, channels) / TOTAL, perfect=False)
    coder.encode_reverse(residuals.astype(np.int32), model)
    coder.encode_reverse(np.array([spread], dtype=np.int32), constriction.stream.model.Uniform(len(SPREADS)))


def pop_importance(coder, budget: InformationBudget, height: int, width: int, channels: int) -> np.ndarray:
    import constriction
    spread = int(coder.decode(constriction.stream.model.Uniform(len(SPREADS)), 1)[0])
    table = residual_counts(spread, channels)
    model = constriction.stream.model.Categorical(table / TOTAL, perfect=False)
    costs = symbol_costs(table)
    counts = np.zeros((height, width), dtype=np.int64)
    for rows, cols in antidiagonals(height, width):
        residuals = np.asarray(coder.decode(model, len(rows)), dtype=np.int64)
        budget.spend(costs[residuals].sum())
        values = med_prediction(counts, rows, cols, channels) + residuals - channels
        if values.min() < 0 or values.max() > channels:
            raise FormatError("importance map out of range (corrupted file?)")
        counts[rows, cols] = values
    return counts


def channel_mask(counts: np.ndarray, channels: int) -> np.ndarray:
    """(h, w) coded-channel counts -> (K, h, w) bool: channel k is coded where k < count."""
    return np.arange(channels)[:, None, None] < counts[None]


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------
def latent_size(height: int, width: int) -> tuple[int, int]:
    return ceil_div(height, DOWNSAMPLING), ceil_div(width, DOWNSAMPLING)


def context_tiles(height: int, width: int):
    """(rows, cols) slices of the independently coded context tiles, in coding order."""
    for top in range(0, height, CONTEXT_TILE):
        for left in range(0, width, CONTEXT_TILE):
            yield slice(top, min(height, top + CONTEXT_TILE)), slice(left, min(width, left + CONTEXT_TILE))


def qualities(config: dict | CpmConfig) -> Qualities:
    targets = config.targets if isinstance(config, CpmConfig) else config.get("targets", CpmConfig().targets)
    listed = ", ".join(f"{t:g}" for t in targets)
    return Qualities(len(targets), len(targets) // 2, f"{len(targets)} (MS-SSIM; symbol-rate targets {listed} bpp)")


class CpmCodec:
    """Codes the importance map, then the masked symbols with the exact context model, on one ANS
    stack (section "latent"); decodes the symbols in wavefronts."""

    section_names = ("latent",)
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities()

    def __init__(self, model: ConditionalProbabilityModel, coding: dict[str, torch.Tensor], device="cpu",
                 compute: str = "auto"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.compute = precision.resolve(compute, self.device)
        self.qualities = qualities(model.config)
        self.channels = model.config.latent_channels
        self.context = FixedContext(model)

    @torch.inference_mode()
    def analyse(self, image: torch.Tensor, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """(coded-channel counts (h, w), symbols (K, h, w)) of a (3, H, W) uint8 image."""
        def encoder(tile: torch.Tensor) -> torch.Tensor:
            return self.model.features(unit_float(tile.to(self.device))).cpu()

        x = pad_to_multiple(image[None], DOWNSAMPLING)
        with precision.autocast(self.compute, self.device):
            features = ENCODER_TILES.run(encoder, x, down=DOWNSAMPLING).float()
        q = torch.tensor([quality])
        importance = self.model.importance(features[:, :1], q)[0, 0]
        counts = torch.clamp(torch.ceil(importance), 0, self.channels).to(torch.int64)
        _, symbols = quantize(self.model.gained(features[:, 1:], q), self.model.centres.detach())
        return counts.numpy(), symbols[0].numpy().astype(np.int64)

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        self.qualities.check(quality)
        check_refine(self.capabilities, options, "this model")
        counts, symbols = self.analyse(image, quality)
        return {"latent": self.encode_symbols(counts, symbols, quality)}

    def encode_symbols(self, counts: np.ndarray, symbols: np.ndarray, quality: int) -> bytes:
        import constriction
        coded, probabilities = self.coding_order(counts, symbols, quality)
        coder = constriction.stream.stack.AnsCoder()
        if coded.size:
            family = constriction.stream.model.Categorical(perfect=False)
            coder.encode_reverse(coded.astype(np.int32), family, probabilities / TOTAL)
        push_importance(coder, counts, self.channels)
        return words_to_bytes(coder.get_compressed())

    def coding_order(self, counts: np.ndarray, symbols: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """(coded symbols, their counts (n, L)) in decoding order, the context model run in parallel."""
        mask = channel_mask(counts, self.channels)
        coded, tables = [], []
        for rows, cols in context_tiles(*counts.shape):
            tile_mask, tile_symbols = mask[:, rows, cols], symbols[:, rows, cols]
            volume = self.context.volume(tile_mask.shape, tile_mask, quality)
            known = np.flatnonzero(tile_mask.ravel())
            self.context.set_symbols(volume, known, tile_symbols.ravel()[known])
            logits = np.zeros((tile_mask.size, len(self.context.values)))
            logits[known] = self.context.all_logits(volume)
            order, _ = wavefront_steps(tile_mask.shape)
            order = order[tile_mask.ravel()[order]]
            coded.append(tile_symbols.ravel()[order])
            tables.append(fixedpoint.integer_softmax(logits[order]))
        return np.concatenate(coded), np.concatenate(tables)

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        counts, symbols = self._decode_symbols(sections, geometry, quality)
        mask = torch.from_numpy(channel_mask(counts, self.channels))
        centres = self.model.centres.detach().float().cpu()
        coded = (centres[torch.from_numpy(np.maximum(symbols, 0))] * mask)[None]
        q = torch.tensor([quality], device=self.device)

        def decoder(tile: torch.Tensor) -> torch.Tensor:
            return to_uint8(self.model.synthesis(tile.to(self.device), q).cpu())

        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            pixels = DECODER_TILES.run(decoder, coded, up=DOWNSAMPLING)
        return pixels[0, :, :geometry.height, :geometry.width]

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """[coded-channel counts (h, w), symbols (K, h, w) with -1 where not coded]."""
        return list(self._decode_symbols(sections, geometry, quality))

    def _decode_symbols(self, sections: dict[str, bytes], geometry: Geometry,
                        quality: int) -> tuple[np.ndarray, np.ndarray]:
        import constriction
        self.qualities.check(quality)
        height, width = latent_size(geometry.height, geometry.width)
        coder = stack_from_bytes(sections["latent"])
        budget = InformationBudget(coder)
        counts = pop_importance(coder, budget, height, width, self.channels)
        mask = channel_mask(counts, self.channels)
        symbols = np.full((self.channels, height, width), -1, dtype=np.int64)
        family = constriction.stream.model.Categorical(perfect=False)
        for rows, cols in context_tiles(height, width):
            symbols[:, rows, cols] = self.decode_tile(coder, budget, family, mask[:, rows, cols], quality)
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        return counts, symbols

    def decode_tile(self, coder, budget: InformationBudget, family, mask: np.ndarray, quality: int) -> np.ndarray:
        """One context tile's symbols (-1 where not coded), wavefront by wavefront."""
        volume = self.context.volume(mask.shape, mask, quality)
        coded_flags = mask.ravel()
        symbols = np.full(coded_flags.size, -1, dtype=np.int64)
        order, starts = wavefront_steps(mask.shape)
        for step in range(len(starts) - 1):
            positions = order[starts[step]:starts[step + 1]]
            logits = self.context.logits(volume, positions)
            wanted = coded_flags[positions]
            if not wanted.any():
                continue
            tables = fixedpoint.integer_softmax(logits)
            decoded = np.asarray(coder.decode(family, tables / TOTAL), dtype=np.int64)
            budget.spend(symbol_costs(np.take_along_axis(tables, decoded[:, None], axis=1)).sum())
            self.context.set_symbols(volume, positions[wanted], decoded)
            symbols[positions[wanted]] = decoded
        return symbols.reshape(mask.shape)


def build(config: dict) -> ConditionalProbabilityModel:
    return ConditionalProbabilityModel(CpmConfig(**{**config, "targets": tuple(config.get("targets",
                                                                                          CpmConfig().targets))}))


def freeze_coding_tensors(model: ConditionalProbabilityModel) -> dict[str, torch.Tensor]:
    """Nothing to freeze: the fixed-point context model is derived exactly from the fp16 weights."""
    return {}
