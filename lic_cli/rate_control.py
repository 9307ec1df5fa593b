"""Rate control: per image, the smallest file that meets a quality target, or the best quality
within a byte budget (`lic encode --target-size / --target-bpp / --target-psnr / --target-ms-ssim`).

The search is a bisection over the qualities a model codes: its operating points, or for a model
with continuous qualities every 1/256 between them (about 11 encodes). Size and quality are
measured on the real file (quality after a real decode), so a target is met exactly as a reader
will see it. Models that can (capabilities.prepares) run their analysis transform once per image;
each step repeats only the gain, quantisation and coding.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import codec
from .imageio import ImageData

SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2}


@dataclass(frozen=True)
class Target:
    """kind: "size" (bytes, at most), "bpp" (at most), "psnr" (dB, at least) or "ms-ssim" (at least)."""

    kind: str
    value: float

    @property
    def is_budget(self) -> bool:
        return self.kind in ("size", "bpp")

    def describe(self) -> str:
        return {"size": f"at most {self.value:,.0f} bytes", "bpp": f"at most {self.value:g} bpp",
                "psnr": f"at least {self.value:g} dB PSNR", "ms-ssim": f"MS-SSIM at least {self.value:g}"}[self.kind]


@dataclass(frozen=True)
class Achieved:
    data: bytes
    quality: float  # 0-based
    bpp: float
    measure: float  # what the target is about: bytes, bpp, dB or MS-SSIM
    encodes: int


class TargetError(ValueError):
    """The target cannot be met by any quality of the model; the message says what comes nearest."""


def parse_size(text: str) -> int:
    """'40000', '40k' (1000s), '40KiB' (1024s), '1.5M' -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (e.g. 40000, 40k, 40KiB, 1.5M)")
    size = round(float(match.group(1)) * SIZE_UNITS[unit])
    if size < 1:
        raise ValueError(f"{text!r} is not a positive size")
    return size


def encode_to_target(image: ImageData, loaded, target: Target, session: codec.CodecSession,
                     whole_qualities: bool = False) -> Achieved:
    """The file of `image` that meets `target` best (see the module docstring); whole_qualities:
    search the operating points only (what a model without continuous qualities offers)."""
    make = file_maker(image, loaded)
    measure = measurer(image, target, session)
    grid = loaded.codec.qualities.grid()
    if whole_qualities:
        grid = [q for q in grid if float(q).is_integer()]
    if len(grid) < 2:
        raise ValueError(f"model {loaded.name} has a single operating point; a target needs several")
    tried: dict[int, tuple[bytes, float]] = {}

    def attempt(index: int) -> tuple[bytes, float]:
        if index not in tried:
            data = make(grid[index])
            tried[index] = (data, measure(data))
        return tried[index]

    def meets(index: int) -> bool:
        value = attempt(index)[1]
        return value <= target.value if target.is_budget else value >= target.value

    best = _bisect(len(grid), meets, target.is_budget)
    if best is None:
        raise TargetError(_unreachable(target, grid, attempt, len(grid)))
    data, value = attempt(best)
    return Achieved(data, grid[best], 8 * len(data) / (image.width * image.height), value, len(tried))


def _bisect(count: int, meets: Callable[[int], bool], budget: bool) -> int | None:
    """The best index that meets the target, assuming what is measured grows with the index: for
    a budget the highest index within it, for a quality floor the lowest index above it."""
    edge = 0 if budget else count - 1
    if not meets(edge):
        return None
    good, bad = edge, (count if budget else -1)
    while abs(bad - good) > 1:
        middle = (good + bad) // 2
        if meets(middle):
            good = middle
        else:
            bad = middle
    return good


def _unreachable(target: Target, grid: list[float], attempt, count: int) -> str:
    edge = 0 if target.is_budget else count - 1
    _, value = attempt(edge)
    nearest = {"size": f"{value:,.0f} bytes", "bpp": f"{value:.4f} bpp", "psnr": f"{value:.2f} dB",
               "ms-ssim": f"MS-SSIM {value:.4f}"}[target.kind]
    where = "smallest file" if target.is_budget else "best quality"
    return f"cannot meet {target.describe()}: the {where} of this model is {nearest} (-q {grid[edge] + 1:g})"


def file_maker(image: ImageData, loaded) -> Callable[[float], bytes]:
    """quality -> the bytes of the .lic file, analysing the image once where the codec can."""
    if not loaded.codec.capabilities.prepares:
        return lambda quality: codec.encode_image(image, loaded, quality)
    codec.check_size(image, loaded)
    codec.check_can_encode(loaded)
    prepared = loaded.codec.prepare(codec.rgb_tensor(image))
    return lambda quality: codec.pack_image(image, loaded, quality, prepared.encode(quality))


def measurer(image: ImageData, target: Target, session: codec.CodecSession) -> Callable[[bytes], float]:
    """file bytes -> the measured value the target speaks of (a real decode for quality targets)."""
    from .metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr  # torch (pytorch-msssim): only where a quality is measured

    if target.kind == "size":
        return len
    if target.kind == "bpp":
        return lambda data: 8 * len(data) / (image.width * image.height)
    colour = slice(0, 3) if image.channels == 4 else slice(None)  # alpha is lossless: it would flatter
    original = image.pixels[:, :, colour]

    def decoded(data: bytes) -> np.ndarray:
        return codec.decode_file(data, session).image.pixels[:, :, colour]

    if target.kind == "psnr":
        return lambda data: psnr(original, decoded(data))
    if min(image.height, image.width) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"MS-SSIM needs an image of at least {MS_SSIM_MIN_SIDE} pixels on each side")

    def as_rgb(pixels: np.ndarray) -> np.ndarray:
        return pixels if pixels.shape[2] == 3 else np.repeat(pixels, 3, axis=2)

    reference = as_rgb(original)
    return lambda data: ms_ssim(reference, as_rgb(decoded(data)))
