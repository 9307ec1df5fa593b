"""Generative compression at extreme rates (Agustsson et al. 2019, "GC"): `gc-c2`, `gc-c4`, `gc-c8`.

Encoder E (c7s1-w/16, d w/8, d w/4, d w/2, d w, c3s1-C) maps an image to W of size H/16 x W/16 x C,
quantized to the five centres {-2, -1, 0, 1, 2} (hard forward, soft backward). Generator G
(c3s1-w, 9 residual blocks, u w/2 ... u w/16, c7s1-3) decodes it; a normalisation follows every
convolution but the last (ChannelNorm, not the paper's instance norm: see ChannelNorm2d). A
multi-scale discriminator (pix2pixHD, 3 scales) and a least-squares GAN loss with
lambda * (MSE + feature matching), lambda = 10, train E and G; the rate is bounded by the
architecture (beta = 0): dim(W) * log2(5) bits.

The paper's width is w = 960 (~150 M parameters). Ours is a configuration value (default 192:
every layer at 1/5 of the paper's width) so that a weight file stays under 16 MiB and trains on
the compute we have; the topology is the paper's.

W is entropy coded two ways (both reported against the bound):
- static: per-image, per-channel symbol frequencies stored in the file (the paper's coder);
- context: a small learned model predicts each symbol from the channels before it and, within a
  channel, from a checkerboard of already-decoded neighbours (2C parallel decoding steps). It is
  trained concurrently on the detached symbols (cross-entropy) and evaluated in exact fixed point
  with an integer softmax, so encoder and decoder derive identical probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bitstream import binarymap
from bitstream.coders import InformationBudget, stack_from_bytes, symbol_costs, words_to_bytes
from bitstream.container import FormatError
from bitstream.tables import TOTAL

from . import fixedpoint, precision
from .geometry import Tiles, ceil_div, pad_to_multiple, to_uint8, unit_float
from .interface import PLAIN, Capabilities, EncodeOptions, Geometry, Qualities, check_refine
from .similarity import ms_ssim_batch

CENTRES = (-2.0, -1.0, 0.0, 1.0, 2.0)
NUM_SYMBOLS = len(CENTRES)
ZERO_SYMBOL = CENTRES.index(0.0)  # what W holds where selective generation synthesises
DOWNSAMPLING = 16
MIN_LATENT = 2
LAMBDA = 10.0
# Tiles that bound the memory of any image (see models/geometry.py): the encoder in pixels (its
# receptive field: ±34 pixels), the generator in latents (±21 latents: nine residual blocks).
ENCODER_TILES = Tiles(core=1024, margin=64)
GENERATOR_TILES = Tiles(core=64, margin=24)


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


@dataclass(frozen=True)
class LossWeights:
    """Optional terms of the generator's distortion, each weighted like its MSE (0: left out)."""

    ms_ssim: float = 0.0  # 1 - MS-SSIM over the preserved area (MSE alone favours blotches)
    # Selective training: MSE of 16x16 block means where the image is synthesised. The GAN alone
    # leaves the colour there free (it painted dark frames and off-colour fills); this asks for
    # the block colours that the preserved surroundings suggest and leaves all detail to the GAN.
    synthesised_colour: float = 0.0


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
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Layer norm over the channel axis of a channels-last view: one fused kernel.
        normalised = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight.view(-1), self.bias.view(-1),
                                  self.eps)
        return normalised.permute(0, 3, 1, 2)


def _instance_norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


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


def quantize(w: torch.Tensor, sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_hat, symbols): nearest centre in the forward pass, soft assignment's gradient backward."""
    centres = torch.tensor(CENTRES, dtype=w.dtype, device=w.device)
    distances = (w.unsqueeze(-1) - centres) ** 2
    soft = (torch.softmax(-sigma * distances, dim=-1) * centres).sum(-1)
    symbols = torch.argmin(distances, dim=-1)
    return soft + (centres[symbols] - soft).detach(), symbols


class ChannelContext(nn.Module):
    """p(W[c, i] | W[<c], the checkerboard half of W[c] decoded before i), as base-2 logits.

    Input planes: C symbol planes (centre values, 0 where not yet known), C known-masks, the
    one-hot target channel, and the mask of the current checkerboard phase. Only convolutions and
    ReLUs, so it runs in exact fixed point at coding time.
    """

    def __init__(self, bottleneck: int, width: int):
        super().__init__()
        self.bottleneck = bottleneck
        self.net = nn.Sequential(
            nn.Conv2d(3 * bottleneck + 1, width, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(width, width, 1), nn.ReLU(),
            nn.Conv2d(width, NUM_SYMBOLS, 1))

    @staticmethod
    def phase_mask(height: int, width: int, phase: int, device=None) -> torch.Tensor:
        rows = torch.arange(height, device=device)[:, None]
        cols = torch.arange(width, device=device)[None, :]
        return (((rows + cols) % 2) == phase).float()

    def inputs(self, w_hat: torch.Tensor, channel: int, phase: int) -> torch.Tensor:
        """What the decoder knows before coding (channel, phase), for a batch of w_hat (B, C, h, w)."""
        batch, channels, height, width = w_hat.shape
        anchors = self.phase_mask(height, width, 0, w_hat.device)
        known = torch.zeros(channels, height, width, device=w_hat.device)
        known[:channel] = 1
        if phase == 1:
            known[channel] = anchors
        target = torch.zeros(channels, device=w_hat.device)
        target[channel] = 1
        planes = [w_hat * known, known.expand(batch, -1, -1, -1),
                  target[None, :, None, None].expand(batch, -1, height, width),
                  self.phase_mask(height, width, phase, w_hat.device).expand(batch, 1, -1, -1)]
        return torch.cat(planes, dim=1)

    def forward(self, w_hat: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
        """Logits for every (channel, phase) step: [(channel, phase, logits (B, 5, h, w))]."""
        return [(c, p, self.net(self.inputs(w_hat, c, p))) for c in range(self.bottleneck) for p in (0, 1)]

    def bits(self, w_hat: torch.Tensor, symbols: torch.Tensor, preserve: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of the symbols in bits, per sample (B,); only where preserve (B, 1, h, w)
        is 1 when given (the rest is not coded)."""
        total = torch.zeros(w_hat.shape[0], device=w_hat.device)
        height, width = w_hat.shape[2:]
        for channel, phase, logits in self.forward(w_hat):
            log_probs = torch.log_softmax(logits.float() * np.log(2), dim=1) / np.log(2)
            picked = log_probs.gather(1, symbols[:, channel : channel + 1]).squeeze(1)
            mask = self.phase_mask(height, width, phase, w_hat.device)
            if preserve is not None:
                mask = mask * preserve[:, 0]
            total = total - (picked * mask).sum(dim=(1, 2))
        return total


class GenerativeCompression(nn.Module):
    def __init__(self, config: GcConfig | None = None):
        super().__init__()
        self.config = config = config or GcConfig()
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

    @staticmethod
    def generator_losses(x, x_hat, real, fake, preserve=None, **weights: float) -> dict[str, torch.Tensor]:
        """weights: LossWeights' fields by name."""
        return generator_losses(x, x_hat, real, fake, preserve, LossWeights(**weights))

    @staticmethod
    def discriminator_loss(real, fake) -> torch.Tensor:
        return discriminator_loss(real, fake)

    def rate_bound_bits(self, height: int, width: int) -> float:
        return bound_bits(height, width, self.config.bottleneck)


class ScaleDiscriminator(nn.Module):
    """PatchGAN of pix2pixHD: c64 (no norm), c128, c256, c512 (stride 1), 1-channel output."""

    def __init__(self, base: int = 64):
        super().__init__()
        widths = [base, base * 2, base * 4, base * 8]
        blocks = [nn.Sequential(nn.Conv2d(3, widths[0], 4, 2, 2), nn.LeakyReLU(0.2, inplace=True))]
        for i, (cin, cout) in enumerate(pairwise(widths)):
            stride = 1 if i == len(widths) - 2 else 2
            blocks.append(nn.Sequential(nn.Conv2d(cin, cout, 4, stride, 2), _instance_norm(cout),
                                        nn.LeakyReLU(0.2, inplace=True)))
        blocks.append(nn.Sequential(nn.Conv2d(widths[-1], 1, 4, 1, 2)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, scales: int = 3, base: int = 64):
        super().__init__()
        self.base = base
        self.scales = nn.ModuleList(ScaleDiscriminator(base) for _ in range(scales))

    def forward(self, x01: torch.Tensor) -> list[list[torch.Tensor]]:
        x = x01 * 2 - 1
        outputs = []
        for i, discriminator in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
            outputs.append(discriminator(x))
        return outputs


def discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Least squares: (D(x) - 1)^2 + D(G(w))^2, averaged over scales."""
    losses = [torch.mean((r[-1].float() - 1) ** 2) + torch.mean(f[-1].float() ** 2)
              for r, f in zip(real, fake, strict=True)]
    return sum(losses) / len(losses)


def generator_losses(x: torch.Tensor, x_hat: torch.Tensor, real: list[list[torch.Tensor]] | None,
                     fake: list[list[torch.Tensor]] | None, preserve: torch.Tensor | None = None,
                     weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """L_GAN + lambda * (distortion + feature matching); without discriminator outputs just
    lambda * distortion. The distortion is the MSE plus the optional terms of `weights`.

    MSE is on images scaled to [-1, 1] like the paper's networks; feature matching is the mean L1
    distance between the discriminator's intermediate features on x and x_hat (pix2pixHD). The
    VGG perceptual term of the paper needs pretrained weights we cannot download and is left out.
    preserve (B, 1, h, w), selective training: both distortions count only where it is 1 (the
    paper masks the distortion; the adversarial term alone shapes the synthesised rest).
    """
    mse = _masked_mean(((x_hat - x) * 2) ** 2, preserve)
    out = {"mse": mse}
    distortion = mse
    if weights.ms_ssim:
        out["ms_ssim"] = _masked_ms_ssim(x, x_hat, preserve)
        distortion = distortion + weights.ms_ssim * (1 - out["ms_ssim"])
    if weights.synthesised_colour and preserve is not None:
        out["synthesised_colour"] = _synthesised_colour_error(x, x_hat, preserve)
        distortion = distortion + weights.synthesised_colour * out["synthesised_colour"]
    if real is None or fake is None:
        out["loss"] = LAMBDA * distortion
        return out
    gan = sum(torch.mean((f[-1].float() - 1) ** 2) for f in fake) / len(fake)
    matching = sum(_masked_mean(torch.abs(fr.float() - rr.detach().float()), preserve)
                   for r, f in zip(real, fake, strict=True) for rr, fr in zip(r[:-1], f[:-1], strict=True))
    matching = matching / (len(fake) * (len(fake[0]) - 1))
    out.update(gan=gan, feature_matching=matching, loss=gan + LAMBDA * (distortion + matching))
    return out


def _masked_ms_ssim(x: torch.Tensor, x_hat: torch.Tensor, preserve: torch.Tensor | None) -> torch.Tensor:
    """Mean MS-SSIM (float32) of x_hat against x, with x in place of x_hat where it is synthesised."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, x_hat = x.float(), x_hat.float()
        if preserve is not None:
            kept = F.interpolate(preserve.float(), size=x.shape[2:], mode="nearest")
            x_hat = kept * x_hat + (1 - kept) * x
        return ms_ssim_batch(x_hat, x).mean()


def _synthesised_colour_error(x: torch.Tensor, x_hat: torch.Tensor, preserve: torch.Tensor) -> torch.Tensor:
    """MSE (images in [-1, 1]) of the block means over the latent positions that are synthesised;
    0 where nothing is."""
    block = x.shape[2] // preserve.shape[2]
    error = (F.avg_pool2d((x_hat - x).float() * 2, block) ** 2).mean(dim=1, keepdim=True)
    synthesised = 1 - preserve.to(error.dtype)
    return (error * synthesised).sum() / synthesised.sum().clamp(min=1)


def _masked_mean(values: torch.Tensor, preserve: torch.Tensor | None) -> torch.Tensor:
    """Mean of values (B, ch, H, W) over the preserved area, the map resampled to H x W."""
    if preserve is None:
        return torch.mean(values)
    weights = F.interpolate(preserve.to(values.dtype), size=values.shape[2:], mode="area")
    return (values * weights).sum() / (weights.sum() * values.shape[1]).clamp(min=1e-6)


def random_boxes(batch: int, height: int, width: int, keep_all_share: float = 0.5,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Random-box preservation maps (B, 1, height, width) of 0/1 (the paper's RB training mode):
    a share of the samples keeps everything (the model then codes whole images too); the others
    keep one box at a uniformly random place, each side a uniformly random 1/4 to 3/4 of the map's."""
    maps = torch.ones(batch, 1, height, width, device=device)
    for sample in range(batch):
        if torch.rand(()) < keep_all_share:
            continue
        box_h = int(torch.randint(max(1, height // 4), max(2, 3 * height // 4 + 1), ()))
        box_w = int(torch.randint(max(1, width // 4), max(2, 3 * width // 4 + 1), ()))
        top = int(torch.randint(0, height - box_h + 1, ()))
        left = int(torch.randint(0, width - box_w + 1, ()))
        maps[sample] = 0
        maps[sample, :, top:top + box_h, left:left + box_w] = 1
    return maps


# ---------------------------------------------------------------------------------------------
# Exact probabilities for the entropy coder
# ---------------------------------------------------------------------------------------------
def static_counts(symbols: np.ndarray) -> np.ndarray:
    """Per-channel counts (C, 5) summing to TOTAL with every count >= 1, from a (C, ...) array."""
    channels = symbols.shape[0]
    histogram = np.stack([np.bincount(symbols[c].ravel(), minlength=NUM_SYMBOLS) for c in range(channels)])
    weights = histogram.astype(np.int64) * 1024 + 1
    spare = TOTAL - NUM_SYMBOLS
    counts = 1 + (spare * weights) // weights.sum(axis=1, keepdims=True)
    top = np.argmax(counts, axis=1)
    counts[np.arange(channels), top] += TOTAL - counts.sum(axis=1)
    return counts


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------
MODE_STATIC = 0
MODE_CONTEXT = 1


class GcCodec:
    """Codes W with whichever of the two entropy models gives fewer bytes (one mode byte says which).

    A selective model (config.selective) given a preservation map (EncodeOptions.preserve) codes
    the map (section "preserve", bitstream.binarymap) and only the latents it keeps; the others
    are 0 and the generator synthesises their region."""

    section_names = ("latent",)
    optional_sections: tuple[str, ...] = ()
    qualities = Qualities(1, 0, "1 (one rate, set by the bottleneck)")
    capabilities = Capabilities()

    def __init__(self, model: GenerativeCompression, coding: dict[str, torch.Tensor], device="cpu",
                 compute: str = "auto"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.compute = precision.resolve(compute, self.device)
        self.context = fixedpoint.freeze(model.context.net)
        if model.config.selective != self.capabilities.selective:
            raise ValueError(f"{type(self).__name__} cannot code a model with selective={model.config.selective}")

    @torch.inference_mode()
    def symbols(self, image: torch.Tensor) -> np.ndarray:
        """The (C, h, w) symbols 0..4 of a (3, H, W) uint8 image."""
        def encoder(tile: torch.Tensor) -> torch.Tensor:
            return self.model.features(unit_float(tile.to(self.device))).cpu()

        x = pad_to_multiple(image[None], DOWNSAMPLING, MIN_LATENT)
        with precision.autocast(self.compute, self.device):
            _, symbols = quantize(ENCODER_TILES.run(encoder, x, down=DOWNSAMPLING))
        return symbols[0].numpy().astype(np.int64)

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        self.qualities.check(quality)
        check_refine(self.capabilities, options, "this model")
        symbols = self.symbols(image)
        keep = self.kept_latents(options.preserve, symbols.shape[1:])
        sections = {}
        if keep is not None:
            symbols[:, ~keep] = ZERO_SYMBOL
            sections["preserve"] = binarymap.encode(keep)
        candidates = [self.encode_static(symbols, keep), self.encode_context(symbols, keep)]
        return {"latent": min(candidates, key=len), **sections}

    def kept_latents(self, preserve: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
        """The (h, w) latents to code for a pixel preservation map: those whose 16 x 16 block holds
        any pixel to keep. None where everything is kept (the file is then a plain one)."""
        if preserve is None:
            return None
        if not self.capabilities.selective:
            raise ValueError("this model has no selective generation (--preserve)")
        preserve = np.asarray(preserve, dtype=bool)
        padded = np.zeros((shape[0] * DOWNSAMPLING, shape[1] * DOWNSAMPLING), dtype=bool)
        rows, cols = min(preserve.shape[0], padded.shape[0]), min(preserve.shape[1], padded.shape[1])
        padded[:rows, :cols] = preserve[:rows, :cols]
        keep = padded.reshape(shape[0], DOWNSAMPLING, shape[1], DOWNSAMPLING).any(axis=(1, 3))
        return None if keep.all() else keep

    def encode_static(self, symbols: np.ndarray, keep: np.ndarray | None = None) -> bytes:
        import constriction
        kept = _kept_symbols(symbols, keep)
        counts = static_counts(kept)
        coder = constriction.stream.stack.AnsCoder()
        for channel in reversed(range(symbols.shape[0])):
            model = constriction.stream.model.Categorical(counts[channel] / TOTAL, perfect=False)
            coder.encode_reverse(kept[channel].astype(np.int32), model)
        return bytes([MODE_STATIC]) + counts.astype("<u2").tobytes() + words_to_bytes(coder.get_compressed())

    def encode_context(self, symbols: np.ndarray, keep: np.ndarray | None = None) -> bytes:
        import constriction
        w_hat = torch.from_numpy(np.asarray(CENTRES)[symbols])[None]
        coder = constriction.stream.stack.AnsCoder()
        family = constriction.stream.model.Categorical(perfect=False)
        for channel, _, positions, counts in reversed(list(self._context_steps(w_hat, keep))):
            coder.encode_reverse(symbols[channel][positions].astype(np.int32), family, counts / TOTAL)
        return bytes([MODE_CONTEXT]) + words_to_bytes(coder.get_compressed())

    def _context_steps(self, w_hat: torch.Tensor, keep: np.ndarray | None = None):
        """(channel, phase, positions, counts (n, 5)) in decoding order; w_hat may be partly known.
        Only kept positions are coded; the others hold 0 in w_hat from the start."""
        height, width = w_hat.shape[2:]
        for channel in range(w_hat.shape[1]):
            for phase in (0, 1):
                positions = ChannelContext.phase_mask(height, width, phase).numpy().astype(bool)
                if keep is not None:
                    positions &= keep
                inputs = self.model.context.inputs(w_hat.double(), channel, phase)
                logits = fixedpoint.run(self.context, inputs)[0].numpy()  # (5, h, w)
                yield channel, phase, positions, fixedpoint.integer_softmax(logits[:, positions].T)

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        symbols, *kept = self.decode_symbols(sections, geometry, quality)
        return self.synthesise(symbols, geometry.height, geometry.width, pixels=True, keep=kept[0] if kept else None)

    @torch.inference_mode()
    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """The entropy-decoded (C, h, w) symbols 0..4 of W, and with a preserve section the (h, w)
        map of the latents it keeps (uint8)."""
        self.qualities.check(quality)
        shape = (self.model.config.bottleneck, *latent_size(geometry.height, geometry.width))
        keep = None
        if "preserve" in sections:
            keep = binarymap.decode(sections["preserve"], shape[1:])
        symbols = self._decode_latent(sections["latent"], shape, keep)
        return [symbols] if keep is None else [symbols, keep.astype(np.uint8)]

    def _decode_latent(self, payload: bytes, shape: tuple[int, int, int], keep: np.ndarray | None) -> np.ndarray:
        if not payload:
            raise FormatError("empty latent section")
        mode, body = payload[0], payload[1:]
        import constriction
        symbols = np.full(shape, ZERO_SYMBOL, dtype=np.int64)
        kept = int(keep.sum()) if keep is not None else shape[1] * shape[2]
        if mode == MODE_STATIC:
            table_bytes = 2 * NUM_SYMBOLS * shape[0]
            counts = np.frombuffer(body[:table_bytes], dtype="<u2").astype(np.int64)
            if len(counts) != NUM_SYMBOLS * shape[0] or np.any(counts < 1):
                raise FormatError("invalid symbol frequency table")
            counts = counts.reshape(shape[0], NUM_SYMBOLS)
            if np.any(counts.sum(axis=1) != TOTAL):
                raise FormatError("invalid symbol frequency table")
            coder = stack_from_bytes(body[table_bytes:])
            if coder.is_empty() and not np.array_equal(counts, static_counts(np.zeros((shape[0], kept), np.int64))):
                # An empty stream decodes to the first symbol everywhere, which is what only an
                # image of that symbol alone codes to, and its table would say so.
                raise FormatError("empty entropy-coded stream under a table of other symbols (corrupted file?)")
            budget = InformationBudget(coder)
            for channel in range(shape[0]):
                model = constriction.stream.model.Categorical(counts[channel] / TOTAL, perfect=False)
                decoded = np.asarray(coder.decode(model, kept), dtype=np.int64)
                budget.spend(symbol_costs(counts[channel])[decoded].sum())
                if keep is None:
                    symbols[channel] = decoded.reshape(shape[1:])
                else:
                    symbols[channel][keep] = decoded
        elif mode == MODE_CONTEXT:
            coder = stack_from_bytes(body)
            family = constriction.stream.model.Categorical(perfect=False)
            w_hat = torch.zeros((1, *shape), dtype=torch.float64)
            budget = InformationBudget(coder)
            for channel, _, positions, counts in self._context_steps(w_hat, keep):
                decoded = np.asarray(coder.decode(family, counts / TOTAL), dtype=np.int64)
                budget.spend(symbol_costs(np.take_along_axis(counts, decoded[:, None], axis=1)).sum())
                symbols[channel][positions] = decoded
                w_hat[0, channel][torch.from_numpy(positions)] = torch.tensor(CENTRES, dtype=torch.float64)[decoded]
        else:
            raise FormatError(f"unknown latent coding mode {mode}")
        if not coder.is_empty():
            raise FormatError("entropy-coded stream has data left over (corrupted file?)")
        return symbols

    @torch.inference_mode()
    def synthesise(self, symbols: np.ndarray, height: int, width: int, pixels: bool = False,
                   keep: np.ndarray | None = None) -> torch.Tensor:
        """The generator's image (3, height, width) in [0, 1] (pixels=True: 8-bit) of (C, h, w)
        symbols; keep (h, w): the latents coded, the rest synthesised (selective models)."""
        w_hat = torch.tensor(CENTRES, dtype=torch.float32)[torch.from_numpy(symbols)][None]
        channels = w_hat.shape[1]
        if self.model.config.selective:  # the map rides along as a last channel through the tiling
            plane = torch.ones(1, 1, *w_hat.shape[2:]) if keep is None else torch.from_numpy(keep).float()[None, None]
            w_hat = torch.cat([w_hat, plane], dim=1)

        def generator(tile: torch.Tensor) -> torch.Tensor:
            tile = tile.to(self.device)
            preserve = tile[:, channels:] if self.model.config.selective else None
            x_hat = self.model.synthesise(tile[:, :channels], preserve).float().clamp_(0, 1).cpu()
            return to_uint8(x_hat) if pixels else x_hat

        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            x_hat = GENERATOR_TILES.run(generator, w_hat, up=DOWNSAMPLING)
        return x_hat[0, :, :height, :width]


class SelectiveGcCodec(GcCodec):
    """GcCodec of a selective model (gc-c4-sc): takes EncodeOptions.preserve."""

    capabilities = Capabilities(selective=True)
    optional_sections = ("preserve",)


def _kept_symbols(symbols: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """(C, n) symbols at the kept positions (all of them without a map), in raster order."""
    return symbols.reshape(symbols.shape[0], -1) if keep is None else symbols[:, keep]


def bound_bits(height: int, width: int, bottleneck: int) -> float:
    """The architecture's rate bound dim(W) * log2(5) in bits."""
    rows, cols = latent_size(height, width)
    return rows * cols * bottleneck * float(np.log2(NUM_SYMBOLS))


def latent_size(height: int, width: int) -> tuple[int, int]:
    """Spatial size of W: the image is padded to a multiple of 16, and to at least 2 latent rows and
    columns (the paper's instance norm, still selectable, needs more than one element there)."""
    return max(MIN_LATENT, ceil_div(height, DOWNSAMPLING)), max(MIN_LATENT, ceil_div(width, DOWNSAMPLING))


def adapt_state(state: dict[str, torch.Tensor], model: GenerativeCompression) -> dict[str, torch.Tensor]:
    """Start a gc model from another one's parameters (same width, any C, selective or not).

    Everything of equal shape is copied. Where C differs, the encoder's last layer and the
    generator's first layer keep the source's first min(C, C') channels and the target's own
    initialisation for the rest; the context model (its inputs depend on C) keeps its own. A
    selective model started from a plain one gets a zero weight on its preservation map input, so
    with everything preserved it starts as the source; a plain model started from a selective one
    gets that input folded into its bias (the map of a whole image is 1 everywhere, borders
    included under replicate padding), so it codes whole images exactly as the source does.
    """
    adapted = model.state_dict()
    for key, target in adapted.items():
        source = state.get(key)
        if source is None or source.shape == target.shape:
            adapted[key] = target if source is None else source
        elif key.startswith("context."):
            continue
        elif source.dim() == target.dim() and _differs_only_in_bottleneck(key, model):
            overlap = tuple(slice(0, min(a, b)) for a, b in zip(source.shape, target.shape, strict=True))
            merged = target.clone()
            merged[overlap] = source[overlap]
            adapted[key] = merged
        else:
            raise ValueError(f"cannot start from these weights: {key} has shape {tuple(source.shape)}, "
                             f"expected {tuple(target.shape)} (different width?)")
    source_bottleneck = _bottleneck_of(state)
    source_selective = state["generator.0.weight"].shape[1] > source_bottleneck
    if source_selective and not model.config.selective:
        plane = state["generator.0.weight"][:, source_bottleneck]
        adapted["generator.0.bias"] = state["generator.0.bias"] + plane.sum(dim=(1, 2))
    if model.config.selective and not source_selective:
        first = adapted["generator.0.weight"].clone()  # the plane must not inherit a source W channel
        first[:, model.config.bottleneck:] = 0
        adapted["generator.0.weight"] = first
    return adapted


def _bottleneck_of(state: dict[str, torch.Tensor]) -> int:
    """C of a gc state: the output channels of the encoder's last convolution."""
    last = max(int(key.split(".")[1]) for key in state if key.startswith("encoder.") and key.endswith(".weight"))
    return state[f"encoder.{last}.weight"].shape[0]


def _differs_only_in_bottleneck(key: str, model: GenerativeCompression) -> bool:
    last_encoder = f"encoder.{len(model.encoder) - 1}."
    return key.startswith((last_encoder, "generator.0."))


def freeze_coding_tensors(model: GenerativeCompression) -> dict[str, torch.Tensor]:
    """Nothing to freeze: the context model is derived exactly from the fp16 weights at load time."""
    return {}
