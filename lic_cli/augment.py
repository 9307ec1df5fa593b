"""Training-crop augmentations beyond crops and flips, for models that must code illustrations and
screenshots as well as photos (`lic train --augment`):

- ``colours``: a random permutation of the RGB channels of each crop from the --mix pool, so that
  a few illustrations' palettes stand for many (photos keep their colours: skies stay blue).
- ``compositions``: a share of the crops replaced by synthetic flat-colour compositions: hard-edged
  rectangles and discs of flat colours, linear gradients and one-pixel lines on a flat or graded
  background, the structures that photo-trained models code worst.

Deterministic for a given random generator, numpy only.
"""
from __future__ import annotations

import random

import numpy as np

AUGMENTATIONS = ("colours", "compositions")
COMPOSITION_SHARE = 0.1  # of all crops, with --augment compositions


def parse_augmentations(text: str | None) -> tuple[str, ...]:
    """'colours,compositions' -> ('colours', 'compositions'); None or '' -> ()."""
    names = tuple(name.strip() for name in (text or "").split(",") if name.strip())
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r} (known: {', '.join(AUGMENTATIONS)})")
    return names


def permute_colours(patch: np.ndarray, rng: random.Random) -> np.ndarray:
    """The (H, W, 3) crop with its channels in a random order (the identity one time in six)."""
    order = [0, 1, 2]
    rng.shuffle(order)
    return patch[:, :, order]


def flat_composition(size: int, rng: random.Random) -> np.ndarray:
    """A (size, size, 3) uint8 synthetic illustration: a flat or graded background, then 3-12
    shapes (rectangles, discs, gradient bars) and 0-6 thin lines, each of one flat colour."""
    canvas = _background(size, rng)
    rows, cols = np.mgrid[0:size, 0:size]
    for _ in range(rng.randint(3, 12)):
        kind = rng.random()
        top, left = rng.randrange(size), rng.randrange(size)
        height, width = rng.randint(4, size // 2), rng.randint(4, size // 2)
        if kind < 0.45:
            mask = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
            canvas[mask] = _colour(rng)
        elif kind < 0.8:
            radius = max(height, width) // 2
            canvas[(rows - top) ** 2 + (cols - left) ** 2 < radius**2] = _colour(rng)
        else:
            mask = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
            ramp = np.clip((cols - left) / max(width - 1, 1), 0, 1)[..., None]
            canvas[mask] = (_colour(rng) * (1 - ramp) + _colour(rng) * ramp)[mask]
    for _ in range(rng.randint(0, 6)):
        thickness = rng.randint(1, 2)
        if rng.random() < 0.5:
            start = rng.randrange(size - thickness)
            canvas[start : start + thickness, rng.randrange(size // 2):] = _colour(rng)
        else:
            start = rng.randrange(size - thickness)
            canvas[rng.randrange(size // 2):, start : start + thickness] = _colour(rng)
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


def _background(size: int, rng: random.Random) -> np.ndarray:
    if rng.random() < 0.6:
        return np.broadcast_to(_colour(rng), (size, size, 3)).copy()
    ramp = np.linspace(0, 1, size)[:, None, None]
    ramp = ramp if rng.random() < 0.5 else ramp.transpose(1, 0, 2)
    return np.broadcast_to(_colour(rng) * (1 - ramp) + _colour(rng) * ramp, (size, size, 3)).copy()


def _colour(rng: random.Random) -> np.ndarray:
    """A flat colour: saturated, pastel, grey or near black/white (what UIs and drawings use)."""
    kind = rng.random()
    if kind < 0.25:
        grey = rng.choice([rng.randint(0, 30), rng.randint(225, 255), rng.randint(0, 255)])
        return np.full(3, float(grey))
    return np.array([float(rng.randint(0, 255)) for _ in range(3)])
