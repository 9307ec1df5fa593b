"""The interface every model family's codec implements, and what a family declares about itself.

Workflow (the CLI, the benchmarks and the conformance tests use nothing else)::

    codec = zoo.load_codec("hyper").codec               # an ImageCodec, weights loaded once
    q = codec.qualities.default                          # 0-based operating point
    sections = codec.encode(image, q, EncodeOptions())   # {section name: bytes}
    pixels = codec.decode(sections, Geometry(h, w), q)   # (3, h, w) uint8

``image`` is a (3, H, W) uint8 tensor of RGB pixels (a float one in [0, 1] is accepted too); a
codec never sees files, grey or alpha planes (the container and the CLI handle those). Codecs
run large images through their networks in tiles (``models.geometry.Tiles``), so memory stays
bounded whatever the image size. Section names are the ones the family's registry
entry declares; the container maps them to its section types.

A codec whose capabilities say ``carries_data`` (bits-back coding) also codes *albums*: several
images and arbitrary carried bytes in one stream (``encode_album`` / ``decode_album``); for it,
``encode`` is an album of one image carrying nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


class CarryingCodec(ImageCodec, Protocol):
    """A codec with ``capabilities.carries_data``: albums and carried bytes in one stream."""

    def encode_album(self, images: Sequence[AlbumImage], carried: bytes, options: EncodeOptions) -> EncodedAlbum:
        ...

    def decode_album(self, sections: dict[str, bytes]) -> tuple[list[DecodedAlbumImage], bytes]:
        ...


def check_refine(capabilities: Capabilities, options: EncodeOptions, name: str) -> None:
    if options.refine is not None and options.refine.method not in capabilities.refine:
        offered = ", ".join(capabilities.refine) or "none"
        raise ValueError(f"--refine {options.refine.method} is not available for {name} (it offers: {offered})")
