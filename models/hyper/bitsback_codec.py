"""`hyper-bb`'s codec: bits-back coding of the hyperlatent, albums and carried data, and the
reproducible posterior fit both sides run."""
from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from bitstream import album, bitsback
from bitstream.coders import ClosedTableCoder, TableCoder, stack_from_bytes, words_to_bytes
from bitstream.container import FormatError

from ..core import fixedpoint, precision
from ..core.annealing import anneal, sga_round
from ..core.entropy import gaussian_likelihood
from ..core.geometry import unit_float
from ..interface import (
    PLAIN,
    AlbumImage,
    Capabilities,
    DecodedAlbumImage,
    EncodedAlbum,
    EncodeOptions,
    Geometry,
    ProgressCallback,
    RefineOptions,
    check_refine,
)
from .bitsback import (
    BBVI_LR,
    BBVI_SEED,
    DEFAULT_BBVI_STEPS,
    LEGACY_Q_SCALES,
    LOG_SCALE_RANGE,
    MAX_PIXELS,
    MEAN_FRACTIONS,
    PADDING_MARGIN_BITS,
    Q_SCALE_RATIO,
    Y_SCALES,
    Z_STEP,
    BitsBackHyperprior,
    _unpack_tables,
    gaussian_entropy_bits,
    table_entropies,
)
from .coding import GAIN_FRAC_BITS, LatentSynthesis
from .network import DOWNSAMPLING


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Posterior:
    """q(z | y-hat) snapped to the coding grid: what selects the bits-back tables."""

    mean_codes: torch.Tensor  # int64, mean / (Z_STEP / MEAN_FRACTIONS), rounded
    scale_ids: torch.Tensor  # int64 index into the codec's q scale grid

    def checksum(self) -> int:
        data = self.mean_codes.numpy().astype("<i8").tobytes() + self.scale_ids.numpy().astype("<i2").tobytes()
        return zlib.crc32(data)


@dataclass(frozen=True)
class CodedImage:
    """What the container records per image of a bits-back stream."""

    height: int
    width: int
    quality: int
    bbvi_steps: int
    checksum: int


@dataclass
class BitsBackStream:
    data: bytes  # the ANS stack, 32-bit little-endian words
    images: list[CodedImage]
    carried_bytes: int
    padding_words: int
    borrowed_bits: list[float]  # ideal bits taken back by each image's z-hat


class BitsBackCodec(LatentSynthesis):
    """Codes an album of images into one ANS stack that also carries arbitrary bytes."""

    section_names = ("bitsback", "album")
    optional_sections: tuple[str, ...] = ()
    # The posterior fit runs on the whole image in float64 on one thread, on both sides: bounded here.
    capabilities = Capabilities(refine=("sga",), carries_data=True, max_pixels=MAX_PIXELS)

    def __init__(self, model: BitsBackHyperprior, coding: dict[str, torch.Tensor], device="cpu",
                 compute: str = "auto"):
        super().__init__(model, device, compute)
        self.inv_gain_z = coding["inv_gain_z"].to(torch.float64) * 2.0**-GAIN_FRAC_BITS
        self.hyper_synthesis = fixedpoint.freeze(model.h_s)
        self.scale_index = fixedpoint.TableIndex(Y_SCALES)
        self.z_coder = TableCoder(_unpack_tables(coding, "z_tables"))
        self.q_coder = ClosedTableCoder(_unpack_tables(coding, "q_tables"))
        self.y_coder = TableCoder(_unpack_tables(coding, "y_tables"))
        self.q_entropy = table_entropies(self.q_coder.tables)
        self.q_scales = q_scale_grid(coding)
        if len(self.z_coder.tables) != model.config.channels:
            raise ValueError("coding tables do not match the network")
        if len(self.q_coder.tables) != len(self.q_scales) * MEAN_FRACTIONS or \
                len(self.y_coder.tables) != len(Y_SCALES) * MEAN_FRACTIONS:
            raise ValueError("bits-back tables do not match this version of lic")
        self._float64 = None

    # -- analysis ---------------------------------------------------------------------------
    @torch.inference_mode()
    def amortized_latents(self, image: torch.Tensor, quality: int) -> torch.Tensor:
        """Integer y-hat = round(g_a(x) * gain) of a (3, H, W) image in [0, 1]."""
        y, _ = self.analyse(image, quality)
        return torch.round(y).to(torch.int64)

    @torch.inference_mode()
    def analyse(self, image: torch.Tensor, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous y and the mean of q(z|y) (gain-scaled domain) of a (3, H, W) uint8 image."""
        self.qualities.check(quality)
        q = torch.tensor([quality], device=self.device)
        y = self.analysis_latents(image, q)
        mean, _ = self.model.posterior(y.to(self.device), q)
        return y, mean.float().cpu()

    # -- reproducible BBVI ------------------------------------------------------------------
    def reproducible_bbvi(self, y_hat: torch.Tensor, quality: int, steps: int = DEFAULT_BBVI_STEPS) -> Posterior:
        """Fit q(z) to p(z | y_hat) from y_hat alone, bit-reproducibly: float64 on the CPU, one
        thread, deterministic kernels, a fixed seed, and the result snapped to the table grid."""
        return snap_posterior(*self.bbvi_floats(y_hat, quality, steps), self.q_scales)

    def bbvi_floats(self, y_hat: torch.Tensor, quality: int, steps: int = DEFAULT_BBVI_STEPS
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The float64 (mean, log scale) of q(z) that reproducible_bbvi snaps to the table grid."""
        h_a, h_s, density, log_gain_z, log_inv_gain_z = self._float64_parts()
        y = y_hat.to(torch.float64).cpu()
        with _reproducible():
            log_gain = log_gain_z[quality][None, :, None, None]
            inv_gain = log_inv_gain_z[quality][None, :, None, None].exp()
            with torch.no_grad():
                mean, log_scale = h_a(y).chunk(2, dim=1)
                mean = mean * log_gain.exp()
                log_scale = log_scale.clamp(*LOG_SCALE_RANGE) + log_gain
            mean, log_scale = mean.clone().requires_grad_(True), log_scale.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([mean, log_scale], lr=BBVI_LR)
            generator = torch.Generator().manual_seed(BBVI_SEED)
            for _ in range(steps):
                noise = torch.randn(mean.shape, generator=generator, dtype=torch.float64)
                z = mean + log_scale.exp() * noise
                means, scales = h_s(z * inv_gain).chunk(2, dim=1)
                bits = -torch.log2(gaussian_likelihood(y, means, scales)).sum()
                bits = bits + (-torch.log2(density.likelihood(z, Z_STEP) / Z_STEP)
                               - gaussian_entropy_bits(log_scale)).sum()
                optimizer.zero_grad(set_to_none=True)
                bits.backward()
                optimizer.step()
        return mean.detach(), log_scale.detach()

    def _float64_parts(self):
        if self._float64 is None:
            import copy
            model = self.model
            h_a = copy.deepcopy(model.h_a).cpu().double().to(memory_format=torch.contiguous_format)
            h_s = copy.deepcopy(model.h_s).cpu().double().to(memory_format=torch.contiguous_format)
            density = copy.deepcopy(model.density).cpu().double()
            for module in (h_a, h_s, density):
                module.requires_grad_(False)
            self._float64 = (h_a, h_s, density, model.log_gain_z.detach().cpu().double(),
                             model.log_inv_gain_z.detach().cpu().double())
        return self._float64

    # -- table selection ------------------------------------------------------------------
    def q_symbols(self, posterior: Posterior) -> tuple[np.ndarray, np.ndarray]:
        """(table ids, integer anchors n): z-hat index = n + decoded symbol."""
        codes = posterior.mean_codes.numpy().ravel()
        anchors = np.floor_divide(codes, MEAN_FRACTIONS)
        table_ids = posterior.scale_ids.numpy().ravel() * MEAN_FRACTIONS + (codes - anchors * MEAN_FRACTIONS)
        return table_ids, anchors

    def y_symbols(self, z_index: torch.Tensor, quality: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """(table ids, integer anchors, exact means) of y-hat given the z-hat grid indices."""
        scaled = z_index.to(torch.float64) * Z_STEP * self.inv_gain_z[quality][None, :, None, None]
        means, scales = fixedpoint.run(self.hyper_synthesis, scaled).chunk(2, dim=1)
        codes = torch.round(means * MEAN_FRACTIONS).to(torch.int64).numpy().ravel()
        anchors = np.floor_divide(codes, MEAN_FRACTIONS)
        scale_ids = self.scale_index(scales.numpy().ravel())
        return scale_ids * MEAN_FRACTIONS + (codes - anchors * MEAN_FRACTIONS), anchors, means

    def z_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        return self.latent_shape(Geometry(height, width), self.model.config.channels, DOWNSAMPLING)

    # -- the codec interface ------------------------------------------------------------------
    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """One image carrying nothing (the stream pays for the hyperlatent bits it borrows)."""
        return self.encode_album([AlbumImage(image, quality)], b"", options).sections

    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        images, _ = self.decode_album(sections)
        first = images[0]
        if first.pixels.shape[1:] != (geometry.height, geometry.width) or first.quality != quality:
            raise FormatError("header geometry disagrees with the album's first image")
        return first.pixels

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """The integer latents of every image, then the carried bytes."""
        _, latents, carried = self._decode_latents(sections)
        return [y_hat.numpy() for y_hat in latents] + [np.frombuffer(carried, dtype=np.uint8)]

    def encode_album(self, images: Sequence[AlbumImage], carried: bytes, options: EncodeOptions = PLAIN
                     ) -> EncodedAlbum:
        """Several images and the carried bytes in one stream; sections 'bitsback' (the ANS stack)
        and 'album' (the image table)."""
        check_refine(self.capabilities, options, "this model")
        steps = DEFAULT_BBVI_STEPS if options.posterior_steps is None else options.posterior_steps
        if not 1 <= len(images) <= album.MAX_IMAGES:
            raise ValueError(f"a bits-back file holds 1..{album.MAX_IMAGES} images, not {len(images)}")
        if not 0 <= steps <= album.MAX_BBVI_STEPS:
            raise ValueError(f"BBVI steps must be within 0..{album.MAX_BBVI_STEPS}")
        latents = []
        for image in images:
            height, width = image.pixels.shape[1:]
            if options.refine is None:
                y_hat = self.amortized_latents(image.pixels, image.quality)
            else:
                y_hat = refine_latents(self, image.pixels, image.quality, options.refine, options.on_progress)
            latents.append((y_hat, image.quality, height, width))
        stream = self.encode_stream(latents, carried, steps)
        entries = [album.AlbumEntry(coded.width, coded.height, image.channels, coded.quality, coded.bbvi_steps,
                                    coded.checksum) for image, coded in zip(images, stream.images, strict=True)]
        table = album.AlbumTable(entries, stream.carried_bytes, stream.padding_words)
        return EncodedAlbum({"bitsback": stream.data, "album": album.pack_table(table)}, stream.carried_bytes,
                            4 * stream.padding_words, tuple(bits / 8 for bits in stream.borrowed_bits))

    def decode_album(self, sections: dict[str, bytes]) -> tuple[list[DecodedAlbumImage], bytes]:
        table, latents, carried = self._decode_latents(sections)
        images = [DecodedAlbumImage(self.reconstruct(y_hat, e.quality, e.height, e.width, pixels=True), e.quality,
                                    e.channels) for e, y_hat in zip(table.entries, latents, strict=True)]
        return images, carried

    def _decode_latents(self, sections: dict[str, bytes]) -> tuple[album.AlbumTable, list[torch.Tensor], bytes]:
        """(image table, each image's integer y-hat, carried bytes) of a file's two sections."""
        stream = sections["bitsback"]
        table = album.unpack_table(sections["album"], len(stream))
        for entry in table.entries:
            if entry.quality >= self.qualities.count:
                raise FormatError(f"quality index {entry.quality} is not an operating point of this model")
        coded = [CodedImage(e.height, e.width, e.quality, e.bbvi_steps, e.checksum) for e in table.entries]
        latents, carried = self.decode_stream(stream, coded, table.carried_bytes, table.padding_words)
        return table, latents, carried

    # -- coding -----------------------------------------------------------------------------
    def encode_stream(self, latents: list[tuple[torch.Tensor, int, int, int]], carried: bytes,
                      bbvi_steps: int = DEFAULT_BBVI_STEPS) -> BitsBackStream:
        """latents: per image (integer y_hat, quality, height, width), in album order.

        Image k borrows its z-hat bits from everything pushed before it: the carried bytes for
        the first image, the previous image's stream for the others."""
        if not latents:
            raise ValueError("nothing to encode")
        posteriors = [self.reproducible_bbvi(y, q, bbvi_steps) for y, q, _, _ in latents]
        first_need = float(self.q_entropy[self.q_symbols(posteriors[0])[0]].sum()) + PADDING_MARGIN_BITS
        padding = max(0, math.ceil((first_need - 8 * len(carried)) / 32))
        stack, first_z = self._start(carried, padding, posteriors[0])
        # Padding the first pop never reached is dead weight: drop it (the pop sees the same bits).
        unused = min(padding, bitsback.untouched_bottom_words(stack))
        if unused:
            padding -= unused
            stack, again = self._start(carried, padding, posteriors[0])
            if not np.array_equal(again, first_z):
                raise RuntimeError("bits-back padding trim changed the decoded hyperlatents")
        images, borrowed = [], []
        for k, ((y_hat, quality, height, width), posterior) in enumerate(zip(latents, posteriors, strict=True)):
            q_ids, q_anchors = self.q_symbols(posterior)
            z_index = first_z if k == 0 else self.q_coder.pop(stack, q_ids) + q_anchors
            borrowed.append(self.q_coder.tables.bits(z_index - q_anchors, q_ids))
            z_index = torch.from_numpy(z_index.reshape(self.z_shape(height, width)))
            y_ids, y_anchors, _ = self.y_symbols(z_index, quality)
            self.y_coder.push(stack, y_hat.numpy().ravel() - y_anchors, y_ids)
            self.z_coder.push(stack, z_index.numpy().ravel(), self.z_table_ids(z_index.shape))
            images.append(CodedImage(height, width, quality, bbvi_steps, posterior.checksum()))
        return BitsBackStream(words_to_bytes(stack.get_compressed()), images, len(carried), padding, borrowed)

    def _start(self, carried: bytes, padding: int, posterior: Posterior):
        stack = bitsback.initial_stack(carried, padding)
        q_ids, q_anchors = self.q_symbols(posterior)
        return stack, self.q_coder.pop(stack, q_ids) + q_anchors

    def decode_stream(self, data: bytes, images: list[CodedImage], carried_bytes: int, padding: int,
                      ) -> tuple[list[torch.Tensor], bytes]:
        """Returns each image's integer y_hat (album order) and the carried bytes."""
        stack = stack_from_bytes(data)
        latents: list[torch.Tensor] = []
        for image in reversed(images):
            self.qualities.check(image.quality)
            shape = self.z_shape(image.height, image.width)
            z_index = torch.from_numpy(self.z_coder.pop(stack, self.z_table_ids(shape)).reshape(shape))
            y_ids, y_anchors, means = self.y_symbols(z_index, image.quality)
            y_hat = torch.from_numpy((self.y_coder.pop(stack, y_ids) + y_anchors).reshape(means.shape))
            posterior = self.reproducible_bbvi(y_hat, image.quality, image.bbvi_steps)
            if posterior.checksum() != image.checksum:
                raise FormatError("bits-back posterior differs from the encoder's (reproducible_bbvi mismatch: "
                                  "different lic/torch build or corrupted file); carried data cannot be recovered")
            q_ids, q_anchors = self.q_symbols(posterior)
            self.q_coder.push(stack, z_index.numpy().ravel() - q_anchors, q_ids)
            latents.append(y_hat)
        carried = bitsback.recover_carried(stack, carried_bytes, padding)
        return latents[::-1], carried

    def reconstruct(self, y_hat: torch.Tensor, quality: int, height: int, width: int,
                    pixels: bool = False) -> torch.Tensor:
        return self.synthesise(y_hat, torch.zeros_like(y_hat, dtype=torch.float64), quality, height, width, pixels)


def q_scale_grid(coding: dict[str, torch.Tensor]) -> np.ndarray:
    """The q scale grid of a weight file's coding tensors: its own, or the legacy one."""
    if "q_scales" not in coding:
        return LEGACY_Q_SCALES
    grid = coding["q_scales"].to(torch.float64).numpy()
    if grid.ndim != 1 or len(grid) < 2 or not np.all(grid > 0) or not np.allclose(grid[1:] / grid[:-1], Q_SCALE_RATIO):
        raise ValueError("bits-back q scale grid is not one this version of lic can use")
    return grid


def snap_posterior(mean: torch.Tensor, log_scale: torch.Tensor, q_scales: np.ndarray) -> Posterior:
    mean_position, scale_position = _grid_positions(mean, log_scale, q_scales)
    mean_codes = torch.round(mean_position).to(torch.int64)
    scale_ids = torch.round(scale_position).clamp(0, len(q_scales) - 1).to(torch.int64)
    return Posterior(mean_codes.cpu(), scale_ids.cpu())


def snapping_margins(mean: torch.Tensor, log_scale: torch.Tensor, q_scales: np.ndarray) -> tuple[float, float]:
    """How close the fitted means and log scales come to a rounding boundary of the snapping grid,
    in grid steps (0.5: every value exactly on a grid point). A decoder whose float arithmetic
    differs from the encoder's by less than this cannot pick another table."""
    mean_position, scale_position = _grid_positions(mean, log_scale, q_scales)
    # Scale ids clamp at the grid's ends, so values beyond them have no boundary to cross.
    inside = (scale_position > -0.5) & (scale_position < len(q_scales) - 0.5)
    return _distance_to_boundary(mean_position), _distance_to_boundary(scale_position[inside])


def _distance_to_boundary(position: torch.Tensor) -> float:
    if position.numel() == 0:
        return 0.5
    return float((0.5 - (position - torch.round(position)).abs()).min())


def snapping_steps(q_scales: np.ndarray) -> tuple[float, float]:
    """One step of the snapping grid: for posterior means, and for log scales."""
    return Z_STEP / MEAN_FRACTIONS, math.log(q_scales[1] / q_scales[0])


def _grid_positions(mean: torch.Tensor, log_scale: torch.Tensor, q_scales: np.ndarray
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    mean_step, log_scale_step = snapping_steps(q_scales)
    mean_position = mean / mean_step
    scale_position = (log_scale - math.log(Z_STEP) - math.log(q_scales[0])) / log_scale_step
    return mean_position, scale_position


@contextmanager
def _reproducible():
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


# ---------------------------------------------------------------------------------------------
# Encode-time inference (Algorithm 1, line 2): SGA over y-hat jointly with BBVI over q(z)
# ---------------------------------------------------------------------------------------------
def refine_latents(codec: BitsBackCodec, image: torch.Tensor, quality: int, options: RefineOptions,
                   on_progress: ProgressCallback | None = None) -> torch.Tensor:
    """Integer y-hat for one image, optimised for its R-D objective with tempered stochastic
    rounding (SGA) while q(z) follows by reparameterised BBVI. Candidates are scored with the
    decoder's own pixels and the model's rate at the mean of q; the best one seen is returned,
    starting from the amortized rounding."""
    model = codec.model
    height, width = image.shape[1:]
    q = torch.tensor([quality])
    lam = float(model.lambdas[quality])
    target = unit_float(image.cpu())
    y, _ = codec.analyse(image, quality)
    with torch.no_grad():
        mean, log_scale = model.posterior(y.to(codec.device), q.to(codec.device))

    def objective(y_values: torch.Tensor, z: torch.Tensor, log_sigma: torch.Tensor, x_hat: torch.Tensor):
        with precision.autocast(codec.compute, codec.device):
            means, scales = model.hyper_synthesis(z.to(codec.device), q.to(codec.device))
        bits = -torch.log2(gaussian_likelihood(y_values, means.float().cpu(), scales.float().cpu())).sum()
        bits = bits + model.z_net_bits(z, log_sigma).sum()
        return bits / (height * width) + lam * 255**2 * torch.mean((x_hat - target) ** 2)

    def relaxed_loss(tau: float, generator: torch.Generator) -> torch.Tensor:
        z = mean + log_scale.exp() * torch.randn(mean.shape, generator=generator)
        y_values = sga_round(proxy, tau, generator)
        y_in = y_values.to(codec.device).contiguous(memory_format=torch.channels_last)
        with precision.autocast(codec.compute, codec.device):
            x_hat = model.synthesis(y_in, q.to(codec.device)).float().cpu()[0, :, :height, :width]
        return objective(y_values, z, log_scale, x_hat)

    @torch.no_grad()
    def exact(y_hat: torch.Tensor, z_mean: torch.Tensor, log_sigma: torch.Tensor) -> float:
        pixels = torch.round(codec.reconstruct(y_hat, quality, height, width) * 255) / 255
        return float(objective(y_hat.float(), z_mean, log_sigma, pixels))

    best = {"y": torch.round(y).to(torch.int64)}
    best["loss"] = exact(best["y"], mean.cpu(), log_scale.cpu())
    proxy = y.clone().requires_grad_(True)
    mean = mean.cpu().clone().requires_grad_(True)
    log_scale = log_scale.cpu().clone().requires_grad_(True)

    def score(step: int) -> float:
        candidate = torch.round(proxy.detach()).to(torch.int64)
        value = exact(candidate, mean.detach(), log_scale.detach())
        if value < best["loss"]:
            best.update(loss=value, y=candidate)
        return best["loss"]

    anneal(model, [proxy, mean, log_scale], relaxed_loss, score, options, on_progress)
    return best["y"]
