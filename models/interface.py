"""The contracts between the families and the rest of lic, in three parts:

- the codec (``ImageCodec`` and friends): what `lic encode` / `lic decode` call;
- what a family declares to the registry (``ZooEntry``, ``Training``), in its ``family.py``;
- the training contract: the family's options as data (``option()`` fields, with the options
  the drivers implement to inherit) and what the drivers call on a network
  (``RateDistortionTrainable``, ``GanTrainable``).

Workflow (the CLI, the benchmarks and the conformance tests use nothing else)::

    codec = zoo.load_codec("hyper").codec               # an ImageCodec, weights loaded once
    q = codec.qualities.default                          # 0-based operating point
    sections = codec.encode(image, q, EncodeOptions())   # {section name: bytes}
    pixels = codec.decode(sections, Geometry(h, w), q)   # (3, h, w) uint8

``image`` is a (3, H, W) uint8 tensor of RGB pixels (a float one in [0, 1] is accepted too); a
codec never sees files, grey or alpha planes (the container and the CLI handle those). Codecs
run large images through their networks in tiles (``models.core.geometry.Tiles``), so memory stays
bounded whatever the image size. Section names are the ones the family's registry
entry declares; the container maps them to its section types.

A codec whose capabilities say ``carries_data`` (bits-back coding) also codes *albums*: several
images and arbitrary carried bytes in one stream (``encode_album`` / ``decode_album``); for it,
``encode`` is an album of one image carrying nothing.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bitstream.container import QUALITY_STEPS, quality_of_steps

if TYPE_CHECKING:  # the CLI reads these classes before (and often without) loading torch
    import numpy as np
    import torch

ProgressCallback = Callable[[int, float], None]  # (step, best loss so far) of an encode-time optimisation


@dataclass(frozen=True)
class Qualities:
    """A family's operating points, numbered 0..count-1 (users see 1..count). A continuous family
    also codes every quality between them on a grid of 1/QUALITY_STEPS (e.g. 2.5: halfway between
    the third and the fourth), by interpolating its quality gains."""

    count: int
    default: int  # 0-based: what `lic encode` uses without -q
    description: str  # for users, e.g. "6 (lambda 0.0006 ... 0.1)" or "1 (a fixed rate)"
    continuous: bool = False

    def check(self, quality: float) -> None:
        if not 0 <= quality <= self.count - 1:
            raise ValueError(f"quality index {quality:g} outside 0..{self.count - 1}")
        if quality != int(quality) and not (self.continuous and float(quality * QUALITY_STEPS).is_integer()):
            kind = f"a multiple of 1/{QUALITY_STEPS}" if self.continuous else "a whole number for this model"
            raise ValueError(f"quality index {quality:g} is not {kind}")

    def grid(self) -> list[int | float]:
        """Every quality this family codes, in increasing order (0-based; operating points as ints,
        which is what families without continuous qualities index with)."""
        if not self.continuous:
            return list(range(self.count))
        return [quality_of_steps(k) for k in range((self.count - 1) * QUALITY_STEPS + 1)]


@dataclass(frozen=True)
class Capabilities:
    """What a family can do beyond encode/decode; the CLI reads these instead of probing types."""

    refine: tuple[str, ...] = ()  # encode-time refinement methods it accepts, e.g. ("sga",)
    carries_data: bool = False  # bits-back: comments, side information and albums ride in the stream
    progressive: bool = False  # a prefix of the coded sections decodes to a coarser image
    max_pixels: int | None = None  # largest image it codes, if below the container's limit
    prepares: bool = False  # prepare(image) runs the analysis once; its .encode(quality) codes any quality
    selective: bool = False  # EncodeOptions.preserve: only the kept region is coded, the rest synthesised
    arrays: bool = False  # images in and out are numpy arrays (the torch-free runtime), not tensors


@dataclass(frozen=True)
class RefineOptions:
    """Encode-time optimisation of one image's latents (the decoder is unchanged)."""

    method: str = "sga"
    steps: int = 300
    lr: float = 5e-3
    seconds: float | None = None  # stop early when this wall-clock budget is spent
    evaluate_every: int = 10
    seed: int = 0


@dataclass(frozen=True)
class EncodeOptions:
    refine: RefineOptions | None = None
    posterior_steps: int | None = None  # carrying codecs: iterations of the posterior fit (None: default)
    on_progress: ProgressCallback | None = None
    # Selective models: (H, W) booleans at the image's size, True = keep faithfully; None = keep all.
    preserve: np.ndarray | None = None


PLAIN = EncodeOptions()  # no refinement, default effort


@dataclass(frozen=True)
class Geometry:
    height: int
    width: int


@dataclass(frozen=True)
class AlbumImage:
    """One image of an album as its codec sees it; channels (1, 3 or 4) is recorded, not coded."""

    pixels: torch.Tensor  # (3, H, W) uint8
    quality: int
    channels: int = 3


@dataclass(frozen=True)
class DecodedAlbumImage:
    pixels: torch.Tensor  # (3, H, W) uint8
    quality: int
    channels: int


@dataclass(frozen=True)
class EncodedAlbum:
    sections: dict[str, bytes]
    carried_bytes: int
    padding_bytes: int  # bytes the stream spent because the carried data was too small to borrow from
    borrowed_bytes: tuple[float, ...]  # per image: ideal bytes its choice of hyperlatents took back

    @property
    def borrowed_bytes_between_images(self) -> float:
        """What the second and later images borrowed from the images coded before them."""
        return sum(self.borrowed_bytes[1:])


class PreparedImage(Protocol):
    """An image analysed once (``codec.prepare(image)``, for codecs whose capabilities say
    ``prepares``): rate control codes it at many qualities, repeating only what depends on them."""

    def encode(self, quality: float) -> dict[str, bytes]:
        ...


@runtime_checkable
class ImageCodec(Protocol):
    """A trained model ready to code: what `zoo.load_codec` returns for every family."""

    qualities: Qualities
    capabilities: Capabilities
    section_names: tuple[str, ...]  # the coded sections every file of it holds
    optional_sections: tuple[str, ...]  # coded sections a file may hold besides (e.g. "preserve")

    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions) -> dict[str, bytes]:
        ...

    def decode(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> torch.Tensor:
        ...

    def decode_symbols(self, sections: dict[str, bytes], geometry: Geometry, quality: int) -> list[np.ndarray]:
        """The entropy-decoded integers (and carried bytes): what every machine must decode alike,
        whatever its arithmetic; the conformance files check them."""
        ...


@runtime_checkable
class TradeOffCodec(ImageCodec, Protocol):
    """A codec whose qualities are rate-distortion trade-offs: bits per pixel + lambda · 255² · MSE
    (MSE of [0, 1] pixels) is what its networks minimise. `lic encode --model auto` compares
    candidates by that cost."""

    def lambda_at(self, quality: float) -> float:
        ...


class CarryingCodec(ImageCodec, Protocol):
    """A codec with ``capabilities.carries_data``: albums and carried bytes in one stream."""

    def encode_album(self, images: Sequence[AlbumImage], carried: bytes, options: EncodeOptions) -> EncodedAlbum:
        ...

    def decode_album(self, sections: dict[str, bytes]) -> tuple[list[DecodedAlbumImage], bytes]:
        ...


@dataclass
class LoadedCodec:
    """A codec with the weight file it was loaded from (zoo.load_codec, or the torch-free runtime)."""

    name: str
    codec: ImageCodec
    weights_id: bytes  # the weight id a file names (models.weight_reader.weight_id_of_arrays)
    path: Path
    card: dict
    decoder_only: bool = False  # decodes only: an archived decoder part, or the torch-free runtime
    aliases: frozenset[bytes] = frozenset()  # earlier ids of the same decoder (files written before)

    def decodes(self, weights_id: bytes) -> bool:
        return weights_id == self.weights_id or weights_id in self.aliases


def check_refine(capabilities: Capabilities, options: EncodeOptions, name: str) -> None:
    if options.refine is not None and options.refine.method not in capabilities.refine:
        offered = ", ".join(capabilities.refine) or "none"
        raise ValueError(f"--refine {options.refine.method} is not available for {name} (it offers: {offered})")


# ---------------------------------------------------------------------------------------------
# What a family declares to the registry (models/zoo.py), which knows no family by name.
# ---------------------------------------------------------------------------------------------
def option(default, help: str, *, metavar: str | None = None, parse: Callable[[str], object] | None = None,
           config: str | None = None):
    """A field of a family's training options: `lic train` shows it as --NAME-WITH-DASHES with this
    help. A bool field is a flag. parse: turns the command-line text into the value (default: the
    field's type). config: the option overrides this key of the model configuration (a size)
    instead of reaching the training code."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "parse": parse, "config": config})


@dataclass(frozen=True)
class NoOptions:
    """A family whose training takes no options of its own."""


@dataclass(frozen=True)
class Training:
    """How `lic train` trains a family.

    driver: the training loop that runs it ("rate-distortion": one R-D loss over a quality ladder,
    the network a ``RateDistortionTrainable``; "gan": distortion, then adversarial, with a
    discriminator, the network a ``GanTrainable``; None: not trained by lic, e.g. imported).
    options: the dataclass of the family's own training options (``option()`` fields, see
    ``NoOptions``); `lic train --model NAME --help` lists them and the command line fills them in,
    so a new knob is one field here and the code in the family that reads it.
    sizes: `lic train` size options (``channels``, ``latent_channels``) -> configuration key.
    inherited_sizes: the sizes a run started from weights of a configuration keeps (--init).
    source_model: the form of q(x | x̂) for `--reg cse` (models.core.cse.KINDS), mirroring the
    family's latent entropy model; None where the regularizer does not apply."""

    driver: str | None
    options: type = NoOptions
    sizes: dict[str, str] = field(default_factory=dict)
    inherited_sizes: Callable[[dict], dict] = lambda config: config
    source_model: str | None = None


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo: how to build, load, code and train it. A family's ``family.py``
    lists its entries in ``ENTRIES``; the registry discovers them."""

    name: str
    description: str
    build: Callable[[dict], torch.nn.Module]
    codec: Callable[..., ImageCodec]  # (network, coding tensors, device, compute) -> codec
    weight_file: str
    config: dict
    freeze: Callable[[torch.nn.Module], dict]  # the exact coding tensors derived from a trained network
    qualities: Callable[[dict], Qualities]  # operating points of a configuration, without loading weights
    training: Training
    tiny_config: dict  # a network small enough for logic tests (random weights, seconds per round trip)
    init_from: dict[str, Callable] = field(default_factory=dict)  # other zoo model -> state adapter
    # Adapts a trained state to the target network's sizes (e.g. a grown latent, another ladder).
    fit_state: Callable[[dict, torch.nn.Module], dict] | None = None
    # Fits a trained network's operating points to data, the network frozen (`lic tune`):
    # (network, batches of crops in [0, 1], iterations, learning rate, log) -> None, in place.
    tune: Callable[..., None] | None = None
    # Network parameters that only the encoder reads (name prefixes): a weight file's id and a
    # decoder-only file leave them out.
    encoder_prefixes: tuple[str, ...] = ()
    shipped: bool = True  # False: registered and trainable, but no weight file is committed yet
    # A specialisation of that model (same qualities and trade-offs, e.g. tuned for illustrations):
    # `lic encode --model auto` codes each image with both and keeps the cheaper file.
    variant_of: str | None = None
    bench_by_default: bool = True  # False: `lic bench` runs it only when asked (--models)

    @property
    def sections(self) -> tuple[str, ...]:
        """The coded container sections its codec writes (bitstream.container names)."""
        return tuple(self.codec.section_names)

    def variant(self, name: str, description: str, shipped: bool = True) -> ZooEntry:
        """A specialisation of this model: the same network, codec, qualities and training, its own
        weight file (trained, e.g., with --init this model's weights, which it starts from as they are)."""
        return dataclasses.replace(self, name=name, description=description, weight_file=f"{name}.pt",
                                   init_from={**self.init_from, self.name: _same_network}, variant_of=self.name,
                                   shipped=shipped)


def _same_network(state: dict, target: torch.nn.Module) -> dict:
    """A variant starts from its base model's weights as they are."""
    return state


# ---------------------------------------------------------------------------------------------
# The training contract: family options as data, and what the drivers call on a network.
# ---------------------------------------------------------------------------------------------
def parse_quality_list(text: str) -> tuple[int, ...]:
    """'5,6' -> (4, 5): the 0-based indices of 1-based quality numbers."""
    try:
        return tuple(int(part) - 1 for part in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of numbers") from None


# Options that a driver implements; a family offers one by inheriting it into its options class.
@dataclass(frozen=True)
class QualitySubset:
    qualities: tuple[int, ...] | None = option(
        None, "Train only these qualities (comma-separated, e.g. 5,6); the others keep their gains but drift "
        "with the shared transforms. A quality listed twice is drawn twice as often (1,2,3,4,5,6,6).",
        metavar="LIST", parse=parse_quality_list)


@dataclass(frozen=True)
class StraightThrough:
    straight_through_after: float = option(
        0.6, "Fraction of the budget after which the synthesis sees rounded latents (straight-through) instead "
        "of noisy ones; 0 when fine-tuning a trained model.")


@dataclass(frozen=True)
class DecoderFineTune:
    freeze_encoder: bool = option(
        False, "Fine-tune the decoder side on exactly what the coder does (rounded latents and their rates), "
        "the analysis frozen: the 'hard' stage of soft-then-hard training.")


@dataclass(frozen=True)
class ContextStages:
    freeze_transforms: bool = option(
        False, "Train the context model alone, the transforms and the hyperprior frozen (stage one of the "
        "recipe, from --init weights of the model without context).")
    context_lr: float | None = option(
        None, "Training everything: the context model's peak learning rate on the same schedule (stage two "
        "of the recipe, e.g. 5e-4 with --lr 5e-5).", metavar="LR")


@dataclass(frozen=True)
class GrowLatent:
    grow_warmup: int = option(
        0, "With --init weights of a narrower latent (--latent-channels wider than theirs): the added "
        "channels pay no rate for STEPS steps, then a share ramped in over STEPS more.", metavar="STEPS")


@dataclass(frozen=True)
class GanSchedule:
    gan_after: float = option(0.3, "Fraction of the budget trained on distortion only before the GAN loss starts.")
    discriminator_width: int = option(
        64, "Width of the multi-scale discriminator's first layer (pix2pixHD: 64; 32 is cheaper on a CPU).")


class RateDistortionTrainable(Protocol):
    """A network that the "rate-distortion" driver trains (lic_cli/train.py).

    x: (B, 3, H, W) float32 crops in [0, 1], H and W multiples of 64; quality: (B,) int64, 0-based
    operating points. The driver sets ``straight_through`` by its schedule, ``training_options``
    before the first step, and ``exact_quantization`` / ``transforms_frozen`` for the stages
    that ask for them (DecoderFineTune, ContextStages)."""

    config: object  # a dataclass: the configuration the weight file stores
    num_qualities: int
    straight_through: bool
    training_options: object  # an instance of the family's Training.options

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training pass; its dict holds at least "x_hat", (B, 3, H, W) in [0, 1]."""
        ...

    def rate_distortion(self, x: torch.Tensor, quality: torch.Tensor, out: dict[str, torch.Tensor],
                        channel_rate_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Scalars: "loss" (what is minimised), "bpp" (estimated bits per pixel), "psnr" in dB and,
        where the family measures it, "msssim". channel_rate_weights: (M,) factors on each latent
        channel's bits in the loss (GrowLatent)."""
        ...


class GanTrainable(Protocol):
    """A network that the "gan" driver trains (lic_cli/train_gan.py). x as for
    RateDistortionTrainable; forward(x) returns "x_hat" (B, 3, H, W) in [0, 1], "w_hat" and
    "symbols" (the quantized bottleneck and its symbol indices) and, for selective models,
    "preserve" (B, 1, h, w) at latent resolution."""

    config: object
    encoder: torch.nn.Module  # with the generator: trained by the coder's optimiser
    generator: torch.nn.Module
    context: torch.nn.Module  # the entropy model of W, trained by its own optimiser; .bits(w_hat, symbols)
    training_options: object

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        ...

    def make_discriminator(self, width: int) -> torch.nn.Module:
        ...

    def generator_losses(self, x: torch.Tensor, x_hat: torch.Tensor, real, fake,
                         preserve: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """"loss", "mse" and the terms it adds (the discriminator's outputs: None before the GAN)."""
        ...

    def discriminator_loss(self, real, fake) -> torch.Tensor:
        ...

    def rate_bound_bits(self, height: int, width: int) -> float:
        ...
