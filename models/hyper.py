"""Mean-scale hyperprior (Minnen et al. 2018, without the autoregressive context), variable rate.

One network serves every quality: per-quality gain vectors (Cui et al. 2021) scale the latent y
and the hyperlatent z before quantization, so a larger gain means a finer effective step. The
hyper-synthesis transform that selects the Gaussian CDFs runs in fixed point at coding time
(``models/fixedpoint.py``) so that encoder and decoder agree bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bitstream.coders import TableCoder
from bitstream.container import QUALITY_STEPS
from bitstream.tables import quantize_pmfs

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
from .geometry import Tiles, ceil_div, pad_to_multiple, to_uint8, unit_float
from .interface import PLAIN, Capabilities, EncodeOptions, Geometry, Qualities, check_refine
from .layers import GDN, conv, deconv, run_decoder, ste_round

# Distortion weights per quality, for MSE on images scaled to [0, 1]: loss = bpp + lambda * 255^2 * MSE.
# CompressAI's ladder is 0.0018 ... 0.0940 (x2.2 per step). Ours is placed so that -q 1 ... 6 land
# near 0.1, 0.17, 0.3, 0.5, 0.9, 1.5 bpp on Kodak (x1.7 per step in rate): the CPU-budget weights
# spend more bits than a converged model at a given lambda, and rate grows ever more slowly with
# lambda at the top, hence the wider steps there (see docs/models.md).
LAMBDAS = (0.0006, 0.0012, 0.0025, 0.0065, 0.0240, 0.1000)
DOWNSAMPLING = 64  # total stride of g_a followed by h_a
LATENT_STRIDE = 16  # pixels per latent position (g_a), latents per hyperlatent: 4 (h_a)
# Tiles that bound the memory of any image: the analysis in pixels, the hyper-analysis in latents,
# the fixed-point hyper-synthesis in hyperlatents, the synthesis in latents. Each margin is over
# twice its network's receptive field (g_a: ±30 pixels, h_a: ±7 latents, h_s: ±2 hyperlatents,
# g_s: ±2 latents), so tiles meet without seams; an image up to 1024x1024 is a single tile.
ANALYSIS_TILES = Tiles(core=1024, margin=64)
HYPER_ANALYSIS_TILES = Tiles(core=64, margin=16)
HYPER_SYNTHESIS_TILES = Tiles(core=16, margin=4)
SYNTHESIS_TILES = Tiles(core=64, margin=4)


@dataclass(frozen=True)
class HyperConfig:
    channels: int = 128  # N: width of the transforms and of z
    latent_channels: int = 192  # M: channels of y
    lambdas: tuple[float, ...] = LAMBDAS
    # Width of the hyper-synthesis hidden layers (w, 3w/2); None: M, the layout of Minnen et al.
    # A wider latent with hyper_width=192 keeps the weight file under 16 MiB (M=256: 16.5 MB).
    hyper_width: int | None = None


class MeanScaleHyperprior(nn.Module):
    def __init__(self, config: HyperConfig = HyperConfig()):
        super().__init__()
        self.config = config
        n, m, q = config.channels, config.latent_channels, len(config.lambdas)
        w = config.hyper_width or m
        self.g_a = nn.Sequential(
            conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))
        self.g_s = nn.Sequential(
            deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
            deconv(n, n), GDN(n, inverse=True), deconv(n, 3))
        self.h_a = nn.Sequential(conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
        self.h_s = nn.Sequential(
            deconv(n, w), nn.ReLU(), deconv(w, w * 3 // 2), nn.ReLU(), conv(w * 3 // 2, 2 * m, 3, 1))
        self.density = FactorizedDensity(n)
        # Higher quality -> larger gain -> finer quantization of y. Spread so that neighbouring
        # qualities start roughly a factor sqrt(lambda ratio) apart; training refines them.
        spread = math.log(1.45) * (torch.arange(q, dtype=torch.float32) - (q - 1) / 2)
        self.log_gain_y = nn.Parameter(spread[:, None].repeat(1, m))
        self.log_inv_gain_y = nn.Parameter(-spread[:, None].repeat(1, m))
        self.log_gain_z = nn.Parameter(torch.zeros(q, n))
        self.log_inv_gain_z = nn.Parameter(torch.zeros(q, n))
        self.register_buffer("lambdas", torch.tensor(config.lambdas, dtype=torch.float32))
        self.straight_through = False
        # Train on exactly what the coder does (see forward); for a decoder side fine-tuned under a
        # frozen encoder, the second stage of "soft then hard" training (Guo et al. 2021).
        self.exact_quantization = False

    @property
    def num_qualities(self) -> int:
        return len(self.config.lambdas)

    @staticmethod
    def gain(log_gain: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) gains of a batch of 0-based qualities (B,) from a log-gain table; a
        floating-point quality between two trained ones interpolates their log gains linearly
        (a geometric interpolation of the gains, as continuously variable-rate models do)."""
        return torch.exp(interpolated_rows(log_gain, quality))[:, :, None, None]

    # The four stages, gains applied (float32 out; callers choose autocast). quality: (B,) indices.
    def analysis(self, x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """x in [0, 1], sides multiples of 64 -> continuous latents y in the gain-scaled domain."""
        return self.g_a(x).float() * self.gain(self.log_gain_y, quality)

    def hyper_analysis(self, y: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """Gain-scaled y -> continuous hyperlatents z in the gain-scaled domain."""
        return self.h_a(y).float() * self.gain(self.log_gain_z, quality)

    def hyper_synthesis(self, z_hat: torch.Tensor, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain-scaled hyperlatents -> (means, scales) of the Gaussian of each latent (float, not
        the fixed-point version that selects coding tables)."""
        return self.h_s(z_hat * self.gain(self.log_inv_gain_z, quality)).float().chunk(2, dim=1)

    def synthesis(self, y_hat: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """Gain-scaled latents -> reconstruction (unclamped)."""
        return self.g_s(y_hat * self.gain(self.log_inv_gain_y, quality)).float()

    def rate_distortion(self, x: torch.Tensor, quality: torch.Tensor, out: dict[str, torch.Tensor],
                        channel_rate_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The training objective of a forward pass (see rate_distortion_loss)."""
        return rate_distortion_loss(self, x, quality, out, channel_rate_weights)

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The parameters that decoding reads (synthesis, hyper-synthesis, z density, inverse gains)."""
        return [p for name, p in self.named_parameters() if not name.startswith(ENCODER_PREFIXES)]

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training/evaluation pass with the noise relaxation.

        x: (B, 3, H, W) in [0, 1], H and W multiples of 64; quality: (B,) long indices.
        Rates use additive uniform noise. The synthesis sees the noisy latents too, unless
        ``straight_through`` is set: then it sees rounded latents with identity gradients ("mixed"
        quantization, Minnen & Singh 2020), which matches coding better but starves a fresh
        network of information, so the trainer switches it on only late in a run.
        In evaluation, or with ``exact_quantization``, everything is what the coder does: latents
        rounded (around the predicted means for y), rates of the rounded values. No gradient
        reaches the analysis transforms then; the decoder side gets exact ones.
        """
        # Transforms may run under autocast (bf16); latents, rounding and likelihoods stay float32.
        y = self.analysis(x, quality)
        z = self.hyper_analysis(y, quality)
        exact = self.exact_quantization or not self.training
        z_hat, noisy_z = self.quantized_hyperlatents(z, exact)
        means, scales = self.hyper_synthesis(z_hat, quality)
        if exact:
            # The rounding grid is not differentiable: a step of the means moves values near a bin
            # edge into the next bin, which a gradient through y_hat = means + round(y - means)
            # misses (it pulls the means towards bin centroids; that measured worse, see
            # docs/results.md). So only the scales, the density and the synthesis learn here.
            means = means.detach()
            y_hat = noisy_y = torch.round(y - means) + means
        else:
            noisy_y = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            y_hat = ste_round(y - means) + means if self.straight_through else noisy_y
        with torch.autocast(device_type=x.device.type, enabled=False):
            z_lik = self.density.likelihood(noisy_z)
            y_lik = gaussian_likelihood(noisy_y, means, scales)
        x_hat = self.synthesis(y_hat, quality)
        return {"x_hat": x_hat, "y_likelihoods": y_lik, "z_likelihoods": z_lik}


    def quantized_hyperlatents(self, z: torch.Tensor, exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the hyper-synthesis sees, what the rate is measured on): both rounded z when exact,
        else z plus uniform noise (the synthesis sees rounded z with straight-through instead, when
        ``straight_through`` is set)."""
        if exact:
            z_hat = torch.round(z)
            return z_hat, z_hat
        noisy_z = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        return (ste_round(z) if self.straight_through else noisy_z), noisy_z


def interpolated_rows(table: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Rows (B, C) of a (Q, C) table at qualities (B,): whole ones index it, fractional ones mix the
    two rows around them linearly."""
    if not quality.is_floating_point():
        return table[quality]
    low = quality.floor().long().clamp(0, table.shape[0] - 2)
    fraction = (quality - low).to(table.dtype)[:, None]
    return table[low] * (1 - fraction) + table[low + 1] * fraction


GAIN_KEYS = ("log_gain_y", "log_inv_gain_y", "log_gain_z", "log_inv_gain_z")
# What only the encoder runs: the analysis transforms and the gains in front of the quantizers.
ENCODER_PREFIXES = ("g_a.", "h_a.", "log_gain_y", "log_gain_z")


def retarget_gains(state: dict[str, torch.Tensor], lambdas: tuple[float, ...]) -> dict[str, torch.Tensor]:
    """A trained state moved to another ladder of qualities: each gain vector is interpolated
    linearly in log(lambda) between the trained qualities (extrapolated along the end segments), the
    way continuously variable-rate models treat their gains; the transforms are kept as they are."""
    source = state["lambdas"].double().log()
    target = torch.tensor(lambdas, dtype=torch.float64).log()
    # Weight files store lambda in fp16: equal ladders agree to fp16 precision only.
    if source.numel() == target.numel() and torch.allclose(source, target, rtol=0, atol=1e-3):
        return state
    if source.numel() < 2:
        raise ValueError("cannot move a single-quality model to another set of lambdas")
    # Index of the segment [i, i + 1] of the trained ladder that each target lambda falls in.
    segment = (torch.searchsorted(source, target) - 1).clamp(0, source.numel() - 2)
    weight = ((target - source[segment]) / (source[segment + 1] - source[segment]))[:, None]
    adapted = dict(state)
    for key in GAIN_KEYS:
        gains = state[key].double()
        adapted[key] = (gains[segment] * (1 - weight) + gains[segment + 1] * weight).to(state[key].dtype)
    adapted["lambdas"] = torch.tensor(lambdas, dtype=state["lambdas"].dtype)
    return adapted


# New latent channels start active (analysis weights at half a fresh layer's size: at the top
# quality about a quarter of their values round away from 0) and invisible (zero synthesis
# weights): the reconstruction is unchanged, and the synthesis gets full-sized gradients to learn to
# use them. Their Gaussian starts with mean 0 and this scale; training adjusts both.
GROWN_ANALYSIS_SCALE = 0.5
GROWN_SCALE = 0.4


def grow_latents(state: dict[str, torch.Tensor], target: MeanScaleHyperprior) -> dict[str, torch.Tensor]:
    """A trained state moved into ``target``, a model with more latent channels M (same N and
    hyper-synthesis width): the trained channels keep their weights, and the new ones are added so
    that the model reconstructs exactly as before.

    The latent width caps the fidelity of the transforms (M values per 16x16x3 pixels), so this is
    how a trained model gets room at high rates without starting over. The new channels get the
    analysis weights of a fresh layer (scaled), zero synthesis weights, no say in z (zero h_a
    inputs), a predicted mean of 0 and scale GROWN_SCALE, and the mean of the trained gains of
    each quality.
    """
    old_m, new_m = state["log_gain_y"].shape[1], target.config.latent_channels
    if new_m == old_m:
        return state
    if new_m < old_m:
        raise ValueError(f"cannot shrink the latent from {old_m} to {new_m} channels "
                         f"(these weights need --latent-channels {old_m})")
    extra = new_m - old_m
    fresh = target.state_dict()
    last_a, last_s = f"g_a.{len(target.g_a) - 1}", f"h_s.{len(target.h_s) - 1}"
    grown = dict(state)

    def append(key: str, dim: int, tensor: torch.Tensor) -> None:
        grown[key] = torch.cat([state[key], tensor.to(state[key].dtype)], dim=dim)

    append(f"{last_a}.weight", 0, GROWN_ANALYSIS_SCALE * fresh[f"{last_a}.weight"][old_m:])
    append(f"{last_a}.bias", 0, torch.zeros(extra))
    append("g_s.0.weight", 0, torch.zeros_like(fresh["g_s.0.weight"][old_m:]))  # (in, out, k, k)
    append("h_a.0.weight", 1, torch.zeros_like(fresh["h_a.0.weight"][:, old_m:]))
    for key, start in ((f"{last_s}.weight", 0.0), (f"{last_s}.bias", GROWN_SCALE)):  # outputs: [means; scales]
        means, scales = state[key].chunk(2)
        new = torch.zeros(extra, *means.shape[1:], dtype=means.dtype)
        grown[key] = torch.cat([means, new, scales, new + start])
    for key in ("log_gain_y", "log_inv_gain_y"):
        append(key, 1, state[key].mean(dim=1, keepdim=True).expand(-1, extra))
    for key, value in fresh.items():
        if key in grown and grown[key].shape != value.shape:
            raise ValueError(f"cannot grow these weights into the model: {key} has shape "
                             f"{tuple(grown[key].shape)}, the model {tuple(value.shape)} "
                             "(keep the hyper-synthesis width of the weights, --hyper-width)")
    return grown


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


# ---------------------------------------------------------------------------------------------
# Coding: frozen integer tables + fixed-point hyper-synthesis, driving the bitstream coders.
# ---------------------------------------------------------------------------------------------
GAIN_FRAC_BITS = 12


def freeze_coding_tensors(model: MeanScaleHyperprior) -> dict[str, torch.Tensor]:
    """What the entropy coders depend on and cannot be re-derived exactly, for the weight file.

    The fixed-point hyper-synthesis is not stored: rounding the fp16 parameters to its grid is exact
    arithmetic, so ``HyperCodec`` derives the same integers on any machine at load time.
    """
    z_tables = quantize_pmfs(*model.density.tabulate())
    scales = gaussian_scale_table()
    y_tables = quantize_pmfs(*gaussian_pmfs(scales))
    inv_gain_z = torch.round(torch.exp(model.log_inv_gain_z.detach().double()) * 2.0**GAIN_FRAC_BITS)
    tensors = {
        "y_table_scales": torch.from_numpy(scales),
        "inv_gain_z": inv_gain_z.to(torch.int32),
        **tables_to_tensors(z_tables, "z_tables"),
        **tables_to_tensors(y_tables, "y_tables"),
    }
    return tensors


# The operating point `lic encode` uses without -q: the quality whose lambda is nearest to this
# (in log), so the default means about the same on any ladder (about 0.5 bpp on Kodak with `hyper`).
DEFAULT_LAMBDA = 0.0065


def ladder_qualities(lambdas: tuple[float, ...] | list[float], continuous: bool = False) -> Qualities:
    """The operating points of a lambda ladder, for the registry and the codec alike; continuous:
    every quality between them too (interpolated gains)."""
    logs = [math.log(lam) for lam in lambdas]
    default = min(range(len(logs)), key=lambda q: abs(logs[q] - math.log(DEFAULT_LAMBDA)))
    continuous = continuous and len(lambdas) > 1
    steps = ", or any between (e.g. 3.4)" if continuous else ""
    return Qualities(len(lambdas), default, f"1-{len(lambdas)}{steps} (lambda {min(lambdas):g}-{max(lambdas):g})",
                     continuous)


@dataclass(frozen=True)
class Quantised:
    z_hat: torch.Tensor  # int64 hyperlatents
    residuals: torch.Tensor  # int64 round(y - means)
    means: torch.Tensor  # float64, bit-exact (what the decoder adds back)
    table_ids: np.ndarray  # the scale table entry of each latent


class LatentSynthesis:
    """What every codec of this family shares: loading, analysis, and latents-to-pixels."""

    model: MeanScaleHyperprior
    continuous_quality = False  # codes qualities between the trained ones (interpolated gains)

    def __init__(self, model: MeanScaleHyperprior, device: torch.device | str, compute: str):
        self.model = model.eval().to(device).to(memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.compute = precision.resolve(compute, self.device)
        self.qualities = ladder_qualities(model.lambdas.tolist(), self.continuous_quality)

    def quality_tensor(self, quality: float) -> torch.Tensor:
        """(1,) the quality as the model's gain functions take it: an index, or a fraction between two."""
        if float(quality).is_integer():
            return torch.tensor([int(quality)], device=self.device)
        return torch.tensor([quality], dtype=torch.float64, device=self.device)

    def lambda_at(self, quality: float) -> float:
        """The rate-distortion trade-off of a quality (interpolated geometrically between two)."""
        if float(quality).is_integer():
            return float(self.model.lambdas[int(quality)])
        logs = self.model.lambdas.detach().double().log().cpu()[:, None]
        return float(interpolated_rows(logs, self.quality_tensor(quality).cpu()).exp())

    def padded_batch(self, image: torch.Tensor) -> torch.Tensor:
        """A (3, H, W) image as the (1, 3, H', W') batch the analysis takes (sides padded to 64)."""
        return pad_to_multiple(image[None], DOWNSAMPLING)

    def analysis_latents(self, image: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Gain-scaled continuous latents y of a (3, H, W) image, tile by tile (float32, CPU)."""
        return self.gained_latents(self.analysis_features(image), q)

    def analysis_features(self, image: torch.Tensor) -> torch.Tensor:
        """The analysis transform's output before the quality gain (float32, CPU): what every
        quality of one image shares."""
        def analysis(tile: torch.Tensor) -> torch.Tensor:
            tile = unit_float(tile.to(self.device)).contiguous(memory_format=torch.channels_last)
            return self.model.g_a(tile).float().cpu()

        with precision.autocast(self.compute, self.device):
            return ANALYSIS_TILES.run(analysis, self.padded_batch(image), down=LATENT_STRIDE)

    def gained_latents(self, features: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return features * self.model.gain(self.model.log_gain_y.detach().cpu(), q.cpu()).float()

    def latent_shape(self, geometry: Geometry, channels: int, stride: int) -> tuple[int, int, int, int]:
        return (1, channels, ceil_div(geometry.height, stride), ceil_div(geometry.width, stride))

    @torch.inference_mode()
    def synthesise(self, residuals: torch.Tensor, means: torch.Tensor, quality: int, height: int,
                   width: int, pixels: bool = False) -> torch.Tensor:
        """The decoder's reconstruction (3, height, width) from integer residuals and the exact
        means, in [0, 1] (pixels=True: 8-bit, what the decoder writes); the one place that turns
        latents into pixels, for decoding and for SGA's score."""
        y_hat = residuals.to(torch.float64, copy=True)
        y_hat += means
        log_gain = interpolated_rows(self.model.log_inv_gain_y.detach().double().cpu(),
                                     self.quality_tensor(quality).cpu())
        y_hat *= torch.exp(log_gain)[:, :, None, None]
        y_hat = y_hat.to(torch.float32)

        def synthesis(tile: torch.Tensor) -> torch.Tensor:
            tile = tile.to(self.device).contiguous(memory_format=torch.channels_last)
            x_hat = run_decoder(self.model.g_s, tile).float().clamp_(0, 1).cpu()
            return to_uint8(x_hat) if pixels else x_hat

        with precision.synthesis_threads(self.device), precision.autocast(self.compute, self.device):
            x_hat = SYNTHESIS_TILES.run(synthesis, y_hat, up=LATENT_STRIDE)
        return x_hat[0, :, :height, :width]

    def z_table_ids(self, shape) -> np.ndarray:
        """The table of each hyperlatent of a (1, N, h, w) array: one factorized density per channel."""
        return channel_table_ids(shape)


class HyperpriorCoding(LatentSynthesis):
    """A trained hyperprior ready to code: its integer tables, the fixed-point hyper-synthesis,
    and the analysis; what `hyper` and the codecs built on its latents share."""

    def __init__(self, model: MeanScaleHyperprior, coding: dict[str, torch.Tensor], device: torch.device | str = "cpu",
                 compute: str = "auto"):
        super().__init__(model, device, compute)
        self.y_table_scales = coding["y_table_scales"].numpy().astype(np.float64)
        self.scale_index = fixedpoint.TableIndex(self.y_table_scales)
        self.inv_gain_z_grid = coding["inv_gain_z"].numpy().astype(np.int64)
        self.hyper_synthesis = fixedpoint.freeze(model.h_s)
        self.z_coder = TableCoder(tables_from_tensors(coding, "z_tables"))
        self.y_coder = TableCoder(tables_from_tensors(coding, "y_tables"))
        if len(self.z_coder.tables) != model.config.channels or len(self.y_coder.tables) != len(self.y_table_scales):
            raise ValueError("coding tables do not match the network")

    @torch.inference_mode()
    def analyse(self, image: torch.Tensor, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The amortized (encoder-network) latents of a (3, H, W) uint8 image: continuous y and z
        in the gain-scaled domain, shapes (1, M, H'/16, W'/16) and (1, N, H'/64, W'/64), H' padded."""
        self.qualities.check(quality)
        return self.latents_at(self.analysis_features(image), quality)

    def latents_at(self, features: torch.Tensor, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, z) of an image's analysis features (before the gain) at one quality."""
        y = self.gained_latents(features, self.quality_tensor(quality))
        return y, self.hyper_analyse(y, quality)

    @torch.inference_mode()
    def prepare(self, image: torch.Tensor) -> PreparedLatents:
        """The analysis of a (3, H, W) image, run once; .encode(quality) then codes it at any quality
        (rate control), repeating only the gain, the hyper-analysis, quantisation and coding."""
        return PreparedLatents(self, self.analysis_features(image))

    def encode_analysed(self, y: torch.Tensor, z: torch.Tensor, quality: float) -> dict[str, bytes]:
        """The coded sections of continuous latents y and hyperlatents z (each family's coding)."""
        raise NotImplementedError

    def inv_gain_z_at(self, quality: float) -> torch.Tensor:
        """(N,) float64: the inverse hyperlatent gains on the 2^-12 grid that the fixed-point
        hyper-synthesis takes; between two trained qualities, their geometric interpolation in
        exact decimal arithmetic, so that every machine selects the same tables."""
        if float(quality).is_integer():
            grid = self.inv_gain_z_grid[int(quality)]
        else:
            low = min(int(quality), self.qualities.count - 2)
            grid = fixedpoint.geometric_interpolation(self.inv_gain_z_grid[low], self.inv_gain_z_grid[low + 1],
                                                      round((quality - low) * QUALITY_STEPS), QUALITY_STEPS)
        return torch.from_numpy(grid).to(torch.float64) * 2.0**-GAIN_FRAC_BITS

    @torch.inference_mode()
    def hyper_analyse(self, y: torch.Tensor, quality: float) -> torch.Tensor:
        """The continuous hyperlatents z of gain-scaled latents y (as `analyse` returns them)."""
        q = self.quality_tensor(quality)

        def hyper_analysis(tile: torch.Tensor) -> torch.Tensor:
            tile = tile.to(self.device).contiguous(memory_format=torch.channels_last)
            return self.model.hyper_analysis(tile, q).float().cpu()

        with precision.autocast(self.compute, self.device):
            return HYPER_ANALYSIS_TILES.run(hyper_analysis, y, down=DOWNSAMPLING // LATENT_STRIDE)


    @torch.inference_mode()
    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        """Returns the (3, height, width) uint8 reconstruction."""
        _, residuals, means = self.entropy_decode(sections, geometry, quality)
        return self.synthesise(residuals, means, quality, geometry.height, geometry.width, pixels=True)

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """The entropy-decoded integers: hyperlatents and latent residuals."""
        z_hat, residuals, _ = self.entropy_decode(sections, geometry, quality)
        return [z_hat.numpy(), residuals.numpy()]

    def decode_hyperlatents(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        """The integer hyperlatents of a file's `hyperlatent` section (the quality checked first)."""
        self.qualities.check(quality)
        z_shape = self.latent_shape(geometry, self.model.config.channels, DOWNSAMPLING)
        return torch.from_numpy(self.z_coder.decode(sections["hyperlatent"], self.z_table_ids(z_shape))
                                .reshape(z_shape))

    def entropy_decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_hat, residuals, exact means) of a file's two sections: each codec's own latent coding."""
        raise NotImplementedError


@dataclass
class PreparedLatents:
    """An image analysed once by a hyperprior codec (HyperpriorCoding.prepare)."""

    codec: HyperpriorCoding
    features: torch.Tensor  # the analysis transform's output before the quality gain

    @torch.inference_mode()
    def encode(self, quality: float) -> dict[str, bytes]:
        self.codec.qualities.check(quality)
        return self.codec.encode_analysed(*self.codec.latents_at(self.features, quality), quality)


class HyperCodec(HyperpriorCoding):
    """Encodes images to named byte sections and back with a trained MeanScaleHyperprior."""

    section_names = ("hyperlatent", "latent")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(refine=("sga",), prepares=True)
    continuous_quality = True

    def quantise(self, y: torch.Tensor, z: torch.Tensor, quality: int) -> Quantised:
        """What plain encoding codes for continuous latents: z rounded, y rounded around the exact
        means that z_hat predicts."""
        z_hat = torch.round(z).to(torch.int64)
        means, table_ids = self.latent_distribution(z_hat, quality)
        residuals = y.to(torch.float64, copy=True)
        residuals -= means
        return Quantised(z_hat, residuals.round_().to(torch.int64), means, table_ids)

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8. Returns the coded sections; options.refine runs SGA first."""
        check_refine(self.capabilities, options, "this model")
        if options.refine is not None:
            from .sga import refine
            result = refine(self, image, quality, options.refine, options.on_progress)
            return self.encode_latents(result.z_hat, result.residuals, quality)
        return self.encode_analysed(*self.analyse(image, quality), quality)

    def encode_analysed(self, y: torch.Tensor, z: torch.Tensor, quality: float) -> dict[str, bytes]:
        coded = self.quantise(y, z, quality)
        z_hat, residuals, table_ids = coded.z_hat, coded.residuals, coded.table_ids
        del coded  # the means: as large as the latents, and not needed for coding
        return self.encode_latents(z_hat, residuals, quality, table_ids)

    def encode_latents(self, z_hat: torch.Tensor, residuals: torch.Tensor, quality: int,
                       table_ids: np.ndarray | None = None) -> dict[str, bytes]:
        """Entropy-code integer hyperlatents and latent residuals round(y - mean(z_hat)).

        table_ids may be passed when the caller already ran the hyper-synthesis for z_hat."""
        if table_ids is None:
            _, table_ids = self.latent_distribution(z_hat, quality)
        return {
            "hyperlatent": self.z_coder.encode(z_hat.numpy(), self.z_table_ids(z_hat.shape)),
            "latent": self.y_coder.encode(residuals.numpy(), table_ids),
        }

    def latent_means(self, z_hat: torch.Tensor, quality: int) -> torch.Tensor:
        """The bit-exact means of y given integer z_hat (what the decoder will add back)."""
        return self.latent_distribution(z_hat, quality)[0]

    def entropy_decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_hat, residuals, exact means) of a file's two sections."""
        z_hat = self.decode_hyperlatents(sections, geometry, quality)
        means, table_ids = self.latent_distribution(z_hat, quality)
        residuals = torch.from_numpy(self.y_coder.decode(sections["latent"], table_ids).reshape(means.shape))
        return z_hat, residuals, means

    def latent_distribution(self, z_hat: torch.Tensor, quality: int) -> tuple[torch.Tensor, np.ndarray]:
        """Bit-exact means (float64, CPU) and scale-table indices of y given integer z_hat: the
        fixed-point hyper-synthesis that both encoder and decoder run."""
        scaled = z_hat.to(torch.float64) * self.inv_gain_z_at(quality)[None, :, None, None]
        id_type = np.uint8 if len(self.y_table_scales) <= 256 else np.int64

        def hyper_synthesis(tile: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            means, scales = fixedpoint.run(self.hyper_synthesis, tile).chunk(2, dim=1)
            return means.contiguous(), torch.from_numpy(self.scale_index(scales.numpy()).astype(id_type))

        means, table_ids = HYPER_SYNTHESIS_TILES.run(hyper_synthesis, scaled, up=DOWNSAMPLING // LATENT_STRIDE)
        return means, table_ids.numpy().ravel()
