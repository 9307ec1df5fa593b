"""`lic encode --model auto`: per image, the candidate model whose file costs least.

The candidates are the default model and its variants (models/zoo.auto_candidates), which share
qualities and trade-offs. At a quality, each candidate encodes the image and the file is decoded;
the kept file is the one with the lower rate-distortion cost, bits per pixel + lambda · 255² · MSE,
the quantity both networks were trained to minimise at that quality's lambda. With a rate-control
target, each candidate runs its own search and the kept file is the smaller one that meets a
quality target, or the one of higher PSNR within a byte budget. Decoders need nothing new: the
file names its model, as every file does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import zoo
from models.defaults import DEFAULT_MODEL
from models.interface import TradeOffCodec

from . import codec
from .imageio import ImageData
from .metrics import psnr
from .rate_control import Achieved, Target, TargetError, encode_to_target


@dataclass(frozen=True)
class Choice:
    data: bytes
    model: str
    costs: dict[str, float]  # each candidate's cost (rate control: its measure)


def candidates(session: codec.CodecSession) -> list[zoo.LoadedCodec]:
    """The loaded candidates of --model auto (with the session's weight files, which may add a
    variant not shipped, e.g. one trained with `lic train`); each must weigh rate against
    distortion."""
    names = zoo.auto_candidates(DEFAULT_MODEL)
    for name in session.weights:
        if not is_candidate(name):
            variants = [item for item, entry in zoo.ZOO.items() if entry.variant_of == DEFAULT_MODEL]
            raise ValueError(f"--model auto chooses among {DEFAULT_MODEL} and its variants "
                             f"({', '.join(variants) or 'none'}); --weights holds {name}")
        if name not in names:
            names.append(name)
    loaded = [session.get(name) for name in names]
    for item in loaded:
        if not isinstance(item.codec, TradeOffCodec):
            raise ValueError(  # noqa: TRY004 (a user's error: one line, exit status 2)
                f"--model auto needs models with rate-distortion trade-offs; {item.name} has none")
    return loaded


def is_candidate(name: str) -> bool:
    """Whether --model auto may code with model `name`: the default model or one of its variants."""
    return name == DEFAULT_MODEL or (name in zoo.ZOO and zoo.entry(name).variant_of == DEFAULT_MODEL)


def colour(pixels: np.ndarray) -> np.ndarray:
    """The colour channels (alpha is coded losslessly, so it would flatter a comparison)."""
    return pixels[:, :, :3] if pixels.ndim == 3 and pixels.shape[2] == 4 else pixels


def rate_distortion_cost(image: ImageData, data: bytes, lam: float, session: codec.CodecSession) -> float:
    """bpp + lambda · 255² · MSE of the decoded file (pixels in [0, 1])."""
    decoded = colour(codec.decode_file(data, session).image.pixels).astype(np.float64)
    mse = float(np.mean((decoded - colour(image.pixels)) ** 2)) / 255**2
    return 8 * len(data) / (image.width * image.height) + lam * 255**2 * mse


def encode_cheapest(image: ImageData, loaded: list[zoo.LoadedCodec], quality: float,
                    session: codec.CodecSession) -> Choice:
    """Each candidate's file at `quality`; the one of lowest cost at the first candidate's lambda
    (a single candidate: its file, no comparison)."""
    if len(loaded) == 1:
        return Choice(codec.encode_image(image, loaded[0], quality), loaded[0].name, {})
    lam = loaded[0].codec.lambda_at(quality)
    files, costs = {}, {}
    for item in loaded:
        files[item.name] = codec.encode_image(image, item, quality)
        costs[item.name] = rate_distortion_cost(image, files[item.name], lam, session)
    best = min(costs, key=costs.__getitem__)
    return Choice(files[best], best, costs)


def encode_to_target_cheapest(image: ImageData, loaded: list[zoo.LoadedCodec], target: Target,
                              session: codec.CodecSession) -> tuple[Achieved, str]:
    """Each candidate's rate-controlled file; the smaller of those meeting a quality floor, or the
    one of higher PSNR within a budget. TargetError (the first candidate's) where none meets it."""
    achieved: dict[str, Achieved] = {}
    first_error = None
    for item in loaded:
        try:
            achieved[item.name] = encode_to_target(image, item, target, session)
        except TargetError as error:
            first_error = first_error or error
    if not achieved:
        raise first_error
    if len(achieved) == 1:
        return next(iter(achieved.values())), next(iter(achieved))
    if target.is_budget:
        original = colour(image.pixels)

        def score(name: str) -> float:
            return -psnr(original, colour(codec.decode_file(achieved[name].data, session).image.pixels))
    else:
        def score(name: str) -> float:
            return len(achieved[name].data)
    best = min(achieved, key=score)
    return achieved[best], best
