"""Lossy compression with a normalizing flow (Helminger, Djelouah, Gross, Schroers), ``flow``.

The transform is a bijection: a 3-level multi-scale flow of additive couplings (volume
preserving, no log-determinants) maps pixels to latents z0 (coarse, 48 channels at 1/8), z1 (12
at 1/4) and z2 (6 at 1/2). Quantising them with steps (Δ0 per channel, Δ1, Δ2) is the only loss:
one network covers every rate, from coarse steps up to near-lossless, and a decoded image maps
back onto (nearly) the same latents, so decoding and re-encoding does not degrade it.

Priors: z0 is fully factorized; z1 | z0 and z2 | z1 are Gaussian, with mean and scale from small
conv nets φ1, φ2 of the coarser latent. φ runs in exact fixed point at coding time
(``models/fixedpoint.py``), so encoder and decoder select the same tables bit for bit, while the
flow itself runs in float (only the symbols must agree).

Coding workflow (``FlowCodec``)::

    z0, z1, z2 = flow(pixels)                       # float
    k0 = round(z0 / Δ0)                             # section "latent"
    μ1, σ1 = φ1(k0 Δ0)  (fixed point)
    k1 = round((z1 - μ1) / Δ1), table by σ1 / Δ1   # section "detail1"
    μ2, σ2 = φ2(μ1 + k1 Δ1) ...                     # section "detail2"

Latents whose table gives the mean a probability above 0.9 are not coded (the decoder uses μ).
A file's sections in order are a progressive stream: with only "latent", the finer latents are
their predicted means (a preview); with "detail1" too, only z2 is predicted.

Training (``rate_distortion``): each sample draws one noise step s (log-uniform), latents get
uniform noise of width s (universal quantization), and the loss is
bits/pixel + distortion_weight / s^2 * MSE(x, x̂) + preview_weight * MSE(x, x̃), MSE in 8-bit
pixel units, where x̃ decodes z0 alone (the progressive preview). Because the distortion of a step s
scales as s^2, weighting it by 1/s^2 trains every rate at the slope a uniform quantizer has there.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bitstream.coders import TableCoder
from bitstream.container import FormatError
from bitstream.tables import TOTAL, quantize_pmfs

from . import fixedpoint, precision
from .entropy import (
    FactorizedDensity,
    channel_table_ids,
    gaussian_likelihood,
    gaussian_pmfs,
    gaussian_scale_table,
    tables_from_tensors,
    tables_to_tensors,
)
from .geometry import Tiles, ceil_div, pad_to_multiple, to_uint8
from .interface import PLAIN, Capabilities, EncodeOptions, Geometry, Qualities, check_refine
from .layers import deconv, ste_round

LEVELS = 3
SQUEEZE = 2
DOWNSAMPLING = SQUEEZE**LEVELS  # pixels per z0 position along each side
PIXEL_SCALE = 255.0  # latents are in 8-bit pixel units: a step of 1 is one grey level of noise
PIXEL_OFFSET = 127.5
COUPLING_INPUT_SCALE = 1 / 64  # pixel-unit activations into the translation nets at a unit scale
PRIOR_INPUT_SCALE = 1 / 16  # a power of two: exact in fixed point
LATENT_CHANNELS = (48, 12, 6)  # z0, z1, z2


@dataclass(frozen=True)
class FlowConfig:
    widths: tuple[int, ...] = (32, 64, 96)  # translation-net channels, finest level first (paper: 128)
    steps_per_level: int = 6  # coupling steps per level (paper: 8)
    blocks: int = 2  # residual blocks per translation net (paper: 3)
    prior_width: int = 64  # channels of φ1, φ2
    # Quantization steps of the operating points, coarse to fine (users' -q 1 is the coarsest). The
    # per-level steps start at these and are fitted after training (fit_steps).
    ladder: tuple[float, ...] = (160.0, 112.0, 80.0, 56.0, 40.0, 28.0, 20.0, 14.0, 10.0, 6.0, 3.0, 1.0)
    noise_range: tuple[float, float] = (0.7, 64.0)  # training draws s log-uniformly in this range
    # 3 pixel values per pixel, each costing about log2(1/s) bits: at the slope of a uniform
    # quantizer, d(bits)/d(MSE) = 3 * 6 / (ln 2 * s^2) per pixel.
    distortion_weight: float = 18 / math.log(2)
    preview_weight: float = 0.002  # on MSE(x, x̃), whatever s


class TranslationNet(nn.Module):
    """t(·) of an additive coupling: conv, residual blocks, and a zero-initialised output conv
    (every coupling starts as the identity)."""

    def __init__(self, channels_in: int, channels_out: int, width: int, blocks: int):
        super().__init__()
        self.head = nn.Conv2d(channels_in, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(width, width, 3, padding=1)) for _ in range(blocks))
        self.tail = nn.Conv2d(width, channels_out, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x * COUPLING_INPUT_SCALE)
        for block in self.blocks:
            h = h + block(h)
        return self.tail(torch.relu(h)).float()


class AdditiveCoupling(nn.Module):
    """A fixed channel permutation, then b += t(a) for the halves (a, b): volume preserving."""

    def __init__(self, channels: int, width: int, blocks: int, seed: int):
        super().__init__()
        permutation = torch.from_numpy(np.random.default_rng(seed).permutation(channels))
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))
        self.half = channels // 2
        self.translation = TranslationNet(self.half, channels - self.half, width, blocks)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h[:, self.permutation]
        a, b = h[:, :self.half], h[:, self.half:]
        return torch.cat([a, b + self.translation(a)], dim=1)

    def inverse(self, h: torch.Tensor) -> torch.Tensor:
        a, b = h[:, :self.half], h[:, self.half:]
        return torch.cat([a, b - self.translation(a)], dim=1)[:, self.inverse_permutation]


class MultiScaleFlow(nn.Module):
    """Pixels (B, 3, H, W) in pixel units, H and W multiples of 8 <-> (z0, z1, z2)."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.levels = nn.ModuleList()
        channels = 3
        for level in range(LEVELS):
            channels *= SQUEEZE**2
            self.levels.append(nn.ModuleList(
                AdditiveCoupling(channels, config.widths[level], config.blocks, seed=1000 * level + step)
                for step in range(config.steps_per_level)))
            channels //= 2  # half the channels leave at each level but the last
        self.factored = (6, 12)  # channels of z2 and z1, factored out after levels 1 and 2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        factored = []
        h = x
        for level, steps in enumerate(self.levels):
            h = F.pixel_unshuffle(h, SQUEEZE)
            for step in steps:
                h = step(h)
            if level < LEVELS - 1:
                out = self.factored[level]
                factored.append(h[:, :out])
                h = h[:, out:]
        z2, z1 = factored
        return h, z1, z2

    def inverse(self, z0: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        h = z0
        for level in reversed(range(LEVELS)):
            if level < LEVELS - 1:
                h = torch.cat([(z2, z1)[level], h], dim=1)
            for step in reversed(self.levels[level]):
                h = step.inverse(h)
            h = F.pixel_shuffle(h, SQUEEZE)
        return h


def prior_net(channels_in: int, channels_out: int, width: int) -> nn.Sequential:
    """φ: a coarser latent -> (means; scales) of the next finer one, at twice the resolution.
    Only conv/deconv/ReLU, so that ``fixedpoint.freeze`` can run it exactly."""
    return nn.Sequential(
        nn.Conv2d(channels_in, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        deconv(width, width), nn.ReLU(),
        nn.Conv2d(width, 2 * channels_out, 3, padding=1))


def pixels_to_flow(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the flow's pixel units (centred 8-bit values)."""
    return x * PIXEL_SCALE - PIXEL_OFFSET


def flow_to_unit(h: torch.Tensor) -> torch.Tensor:
    return (h + PIXEL_OFFSET) / PIXEL_SCALE


class FlowCompression(nn.Module):
    def __init__(self, config: FlowConfig = FlowConfig()):
        super().__init__()
        self.config = config
        self.flow = MultiScaleFlow(config)
        c0, c1, c2 = LATENT_CHANNELS
        self.density = FactorizedDensity(c0, init_scale=64.0)
        self.prior1 = prior_net(c0, c1, config.prior_width)
        self.prior2 = prior_net(c1, c2, config.prior_width)
        # log of each operating point's steps: [Δ0 of each z0 channel, Δ1, Δ2] (fit_steps tunes them).
        ladder = torch.tensor(config.ladder, dtype=torch.float32)
        self.register_buffer("ladder", ladder)  # the nominal steps the fitted ones started from
        self.register_buffer("log_steps", ladder.log()[:, None].repeat(1, c0 + 2))
        self.straight_through = False
        self.exact_quantization = False

    @property
    def num_qualities(self) -> int:
        return len(self.config.ladder)

    def steps(self, quality: torch.Tensor, log_steps: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Δ0 (B, 48, 1, 1), Δ1 (B, 1, 1, 1), Δ2 (B, 1, 1, 1)) of a batch of qualities, from the
        model's log steps or from others of the same shape (being fitted)."""
        table = self.log_steps if log_steps is None else log_steps
        steps = torch.exp(table[quality].float())[:, :, None, None]
        c0 = LATENT_CHANNELS[0]
        return steps[:, :c0], steps[:, c0:c0 + 1], steps[:, c0 + 1:]

    def prior(self, net: nn.Sequential, coarser: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) of the next finer latent."""
        return net(coarser * PRIOR_INPUT_SCALE).float().chunk(2, dim=1)

    def training_steps(self, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        low, high = (math.log(v) for v in self.config.noise_range)
        s = torch.exp(torch.empty(batch, 1, 1, 1, device=device).uniform_(low, high))
        return s, s, s

    def quantise(self, z: torch.Tensor, step: torch.Tensor, mean: torch.Tensor | float, noisy: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(value for the rate, value for the synthesis) of latents z on the grid mean + step·k."""
        if noisy:
            rated = z + step * torch.empty_like(z).uniform_(-0.5, 0.5)
            return rated, (mean + step * ste_round((z - mean) / step)) if self.straight_through else rated
        hard = mean + step * torch.round((z - mean) / step)
        return hard, hard

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 3, H, W) in [0, 1], sides multiples of 8. Training: a random noise step per sample
        (``quality`` is ignored); evaluation: the steps of ``quality``, latents rounded as coded."""
        noisy = self.training and not self.exact_quantization
        steps = self.training_steps(x.shape[0], x.device) if noisy else self.steps(quality)
        out = self.relaxed(self.flow(pixels_to_flow(x)), steps, noisy)
        return {**out, "noise_step": steps[1].flatten()}

    def relaxed(self, z: tuple[torch.Tensor, ...], steps: tuple[torch.Tensor, ...], noisy: bool,
                preview: bool = True) -> dict[str, torch.Tensor]:
        """Quantise (noisy: add uniform noise of the step's width) latents z with steps (Δ0, Δ1, Δ2)
        -> likelihoods, the reconstruction x̂ and (preview) x̃ from z0 alone, both in [0, 1]."""
        s0, s1, s2 = steps
        z0, z1, z2 = (v.float() for v in z)
        rated0, z0_hat = self.quantise(z0, s0, 0.0, noisy)
        means1, scales1 = self.prior(self.prior1, z0_hat)
        rated1, z1_hat = self.quantise(z1, s1, means1, noisy)
        means2, scales2 = self.prior(self.prior2, z1_hat)
        rated2, z2_hat = self.quantise(z2, s2, means2, noisy)
        with torch.autocast(device_type=z0.device.type, enabled=False):
            likelihoods = (
                self.density.likelihood(rated0.float(), width=s0.expand_as(rated0)),
                gaussian_likelihood(rated1 / s1, means1 / s1, scales1 / s1),
                gaussian_likelihood(rated2 / s2, means2 / s2, scales2 / s2),
            )
        out = {"x_hat": flow_to_unit(self.flow.inverse(z0_hat, z1_hat, z2_hat).float()), "likelihoods": likelihoods}
        if preview:
            preview_means2, _ = self.prior(self.prior2, means1)
            out["x_preview"] = flow_to_unit(self.flow.inverse(z0_hat, means1, preview_means2).float())
        return out

    def rate_distortion(self, x: torch.Tensor, quality: torch.Tensor, out: dict[str, torch.Tensor],
                        channel_rate_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-sample bpp + distortion_weight / s^2 * MSE(x̂) + preview_weight * MSE(x̃), MSE in
        8-bit pixel units; PSNR of x̂ (as coded: 8-bit clamp) and bpp for the logs."""
        bpp, mse = rate_and_mse(x, out)
        preview_mse = torch.mean((out["x_preview"] - x) ** 2, dim=(1, 2, 3)) * PIXEL_SCALE**2
        weight = self.config.distortion_weight / out["noise_step"] ** 2
        loss = bpp + weight * mse + self.config.preview_weight * preview_mse
        coded = torch.round(out["x_hat"].detach().clamp(0, 1) * 255) / 255
        coded_mse = torch.mean((coded - x) ** 2, dim=(1, 2, 3))
        return {"loss": loss.mean(), "bpp": bpp.mean(), "mse": mse.mean(),
                "psnr": (10 * torch.log10(1 / coded_mse.clamp(min=1e-10))).mean(),
                "preview_psnr": (10 * torch.log10(PIXEL_SCALE**2 / preview_mse.clamp(min=1e-10))).mean()}


def rate_and_mse(x: torch.Tensor, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: estimated bits per pixel of all three levels, and MSE(x, x̂) in 8-bit units."""
    bits = sum(-torch.log2(lik).sum(dim=(1, 2, 3)) for lik in out["likelihoods"])
    mse = torch.mean((out["x_hat"] - x) ** 2, dim=(1, 2, 3)) * PIXEL_SCALE**2
    return bits / (x.shape[2] * x.shape[3]), mse


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


def build(config: dict) -> FlowCompression:
    fields = {**config}
    for key in ("widths", "ladder", "noise_range"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return FlowCompression(FlowConfig(**fields))


def qualities(config: dict | FlowConfig) -> Qualities:
    ladder = config.ladder if isinstance(config, FlowConfig) else config.get("ladder", FlowConfig().ladder)
    return Qualities(len(ladder), len(ladder) // 2,
                     f"1-{len(ladder)} (quantization step {max(ladder):g} down to {min(ladder):g} grey levels)")



# ---------------------------------------------------------------------------------------------
# Coding: frozen integer tables, fixed-point priors, the flow in float.
# ---------------------------------------------------------------------------------------------
SEARCH_RADIUS = 4096  # z0 values (pixel units) beyond this are escaped
PREVIEW_PROBABILITY = 0.9  # a latent whose table gives its mean more than this is not coded
# The flow's receptive field is ±64 z0 positions (6 steps of six 3x3 convolutions at 1/8, 1/4
# and 1/2, plus the squeezes), so tiles overlap by more than that; φ reaches ±3 positions.
FORWARD_TILES = Tiles(core=1024, margin=576)
INVERSE_TILES = Tiles(core=128, margin=72)
PRIOR_TILES = Tiles(core=64, margin=8)


def freeze_coding_tensors(model: FlowCompression) -> dict[str, torch.Tensor]:
    """The exact steps of every operating point (float64), the z0 tables of each (one per channel,
    tabulated on that channel's step), and the zero-mean Gaussian tables of z1 and z2 (indexed by
    scale / step). The fixed-point priors are derived from the fp16 weights at load time."""
    steps = torch.exp(model.log_steps.detach().double())
    tensors = {"steps": steps, "detail_scales": torch.from_numpy(gaussian_scale_table())}
    tensors.update(tables_to_tensors(quantize_pmfs(*gaussian_pmfs(gaussian_scale_table())), "detail_tables"))
    c0 = LATENT_CHANNELS[0]
    for quality in range(steps.shape[0]):
        tables = quantize_pmfs(*model.density.tabulate(SEARCH_RADIUS, steps[quality, :c0].numpy()))
        tensors.update(tables_to_tensors(tables, f"z0_tables.{quality}"))
    return tensors


def pack_latents(z0: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """(z0, z1, z2) as one (B, 192, H/8, W/8) tensor, so that tiles cut all three alike."""
    return torch.cat([z0, F.pixel_unshuffle(z1, 2), F.pixel_unshuffle(z2, 4)], dim=1)


def unpack_latents(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c0, c1, _ = LATENT_CHANNELS
    return (packed[:, :c0], F.pixel_shuffle(packed[:, c0:c0 + 4 * c1], 2),
            F.pixel_shuffle(packed[:, c0 + 4 * c1:], 4))


@dataclass
class Latents:
    """One image's coded integers and the exact latents they stand for."""

    symbols: list[np.ndarray]  # k0 (48, h, w), k1 (12, 2h, 2w), k2 (6, 4h, 4w); 0 where not coded
    table_ids: list[np.ndarray]  # of z1 and z2, shaped like k1 and k2
    values: list[torch.Tensor]  # ẑ0, ẑ1, ẑ2 as (1, C, ...) float64


class FlowCodec:
    """Codes z0, z1, z2 in sections "latent", "detail1", "detail2"; a prefix of them decodes to a
    preview (the missing levels at their predicted means)."""

    section_names = ("latent", "detail1", "detail2")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(progressive=True)

    def __init__(self, model: FlowCompression, coding: dict[str, torch.Tensor], device="cpu", compute: str = "auto"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        # The flow is exact only up to its arithmetic: near-lossless points need float32.
        self.compute = precision.resolve("fp32" if compute == "auto" else compute, self.device)
        self.qualities = qualities(model.config)
        self.steps = coding["steps"].to(torch.float64)
        if self.steps.shape != (self.qualities.count, LATENT_CHANNELS[0] + 2):
            raise ValueError("coding steps do not match the network")
        self.priors = (fixedpoint.freeze(model.prior1), fixedpoint.freeze(model.prior2))
        self.detail_scales = coding["detail_scales"].numpy().astype(np.float64)
        if len(self.detail_scales) > 256:  # table ids are 8-bit
            raise ValueError("coding tables do not match the network")
        detail_tables = tables_from_tensors(coding, "detail_tables")
        self.detail_coder = TableCoder(detail_tables)
        zero = -detail_tables.offsets
        self.predicted_tables = detail_tables.counts[np.arange(len(zero)), zero] > PREVIEW_PROBABILITY * TOTAL
        self.coding = coding
        self._z0_coders: dict[int, TableCoder] = {}
        self._table_indices: dict[tuple[int, int], fixedpoint.TableIndex] = {}

    def z0_coder(self, quality: int) -> TableCoder:
        if quality not in self._z0_coders:
            self._z0_coders[quality] = TableCoder(tables_from_tensors(self.coding, f"z0_tables.{quality}"))
        return self._z0_coders[quality]

    def level_steps(self, quality: int) -> tuple[torch.Tensor, float, float]:
        """(Δ0 (1, 48, 1, 1), Δ1, Δ2) of an operating point, float64."""
        c0 = LATENT_CHANNELS[0]
        steps = self.steps[quality]
        return steps[:c0].reshape(1, c0, 1, 1), float(steps[c0]), float(steps[c0 + 1])

    def table_index(self, level: int, quality: int) -> fixedpoint.TableIndex:
        """Scale -> table of z1 (level 1) or z2 (level 2): the first entry with scale / Δ <= entry."""
        key = (level, quality)
        if key not in self._table_indices:
            step = self.level_steps(quality)[level]
            self._table_indices[key] = fixedpoint.TableIndex(self.detail_scales * step)
        return self._table_indices[key]

    def detail_distribution(self, level: int, coarser: torch.Tensor, quality: int) -> tuple[torch.Tensor, np.ndarray]:
        """Bit-exact means (float64) and table ids of z1 (level 1) or z2 (level 2) given the exact
        coarser latent: the fixed-point φ that encoder and decoder both run."""
        layers, index = self.priors[level - 1], self.table_index(level, quality)

        def prior(tile: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            means, scales = fixedpoint.run(layers, tile).chunk(2, dim=1)
            return means.contiguous(), torch.from_numpy(index(scales.numpy()).astype(np.uint8))

        means, table_ids = PRIOR_TILES.run(prior, coarser * PRIOR_INPUT_SCALE, up=2)
        return means, table_ids.numpy()[0]

    @torch.inference_mode()
    def analyse(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The continuous latents (z0, z1, z2) of a (3, H, W) uint8 image (sides padded to 8)."""
        def forward(tile: torch.Tensor) -> torch.Tensor:
            pixels = pixels_to_flow(tile.to(self.device).float() / 255)
            return pack_latents(*self.model.flow(pixels)).float().cpu()

        with precision.autocast(self.compute, self.device):
            packed = FORWARD_TILES.run(forward, pad_to_multiple(image[None], DOWNSAMPLING), down=DOWNSAMPLING)
        return unpack_latents(packed)

    def quantise(self, z: tuple[torch.Tensor, torch.Tensor, torch.Tensor], quality: int) -> Latents:
        """What the encoder codes: z0 rounded to its grid, z1 and z2 rounded around their exact
        predicted means (or left at them, where the table says the mean is likely enough)."""
        self.qualities.check(quality)
        step0, *detail_steps = self.level_steps(quality)
        k0 = torch.round(z[0].double() / step0)
        latents = Latents([k0.to(torch.int64).numpy()[0]], [], [k0 * step0])
        for level in (1, 2):
            means, table_ids = self.detail_distribution(level, latents.values[-1], quality)
            coded = torch.from_numpy(~self.predicted_tables[table_ids])[None]
            k = torch.round((z[level].double() - means) / detail_steps[level - 1]) * coded
            latents.values.append(means + detail_steps[level - 1] * k)
            latents.symbols.append(k.to(torch.int64).numpy()[0])
            latents.table_ids.append(table_ids)
        return latents

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        check_refine(self.capabilities, options, "this model")
        return self.encode_latents(self.quantise(self.analyse(image), quality), quality)

    def encode_latents(self, latents: Latents, quality: int) -> dict[str, bytes]:
        k0 = latents.symbols[0]
        sections = {"latent": self.z0_coder(quality).encode(k0, channel_table_ids(k0.shape))}
        for name, k, table_ids in zip(self.section_names[1:], latents.symbols[1:], latents.table_ids, strict=True):
            coded = ~self.predicted_tables[table_ids]
            sections[name] = self.detail_coder.encode(k[coded], table_ids[coded])
        return sections

    def decode_latents(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> Latents:
        """The latents of a file's sections; a missing "detail2" (or both details) leaves those
        levels at their predicted means."""
        self.qualities.check(quality)
        if "detail2" in sections and "detail1" not in sections:
            raise FormatError("a flow file's detail2 section needs its detail1 section")
        height, width = ceil_div(geometry.height, DOWNSAMPLING), ceil_div(geometry.width, DOWNSAMPLING)
        shape = (LATENT_CHANNELS[0], height, width)
        step0, *detail_steps = self.level_steps(quality)
        k0 = self.z0_coder(quality).decode(sections["latent"], channel_table_ids(shape)).reshape(shape)
        latents = Latents([k0], [], [torch.from_numpy(k0)[None] * step0])
        for level, name in ((1, "detail1"), (2, "detail2")):
            means, table_ids = self.detail_distribution(level, latents.values[-1], quality)
            k = np.zeros(table_ids.shape, dtype=np.int64)
            if name in sections:
                coded = ~self.predicted_tables[table_ids]
                k[coded] = self.detail_coder.decode(sections[name], table_ids[coded])
            latents.values.append(means + detail_steps[level - 1] * torch.from_numpy(k)[None])
            latents.symbols.append(k)
            latents.table_ids.append(table_ids)
        return latents

    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        """The (3, height, width) uint8 image of all sections, or of a prefix of them (a preview)."""
        return self.synthesise(self.decode_latents(sections, geometry, quality).values, geometry)

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """k0, k1, k2 (0 where a latent was not coded)."""
        return self.decode_latents(sections, geometry, quality).symbols

    @torch.inference_mode()
    def synthesise(self, values: list[torch.Tensor], geometry: Geometry) -> torch.Tensor:
        """The inverse flow of exact latents, as 8-bit pixels cropped to the image."""
        def inverse(tile: torch.Tensor) -> torch.Tensor:
            pixels = self.model.flow.inverse(*unpack_latents(tile.to(self.device)))
            return to_uint8(flow_to_unit(pixels.float()).clamp_(0, 1)).cpu()

        packed = pack_latents(*(v.to(torch.float32) for v in values))
        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            pixels = INVERSE_TILES.run(inverse, packed, up=DOWNSAMPLING)
        return pixels[0, :, :geometry.height, :geometry.width]
