"""lic train --augment: synthetic flat-colour compositions and colour permutations of --mix crops."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lic_cli import augment
from lic_cli.train import CropSampler

from .conftest import png_folder


def test_augmentation_names_are_checked():
    assert augment.parse_augmentations("colours, compositions") == ("colours", "compositions")
    assert augment.parse_augmentations(None) == ()
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        augment.parse_augmentations("colours,blur")


def test_compositions_are_deterministic_flat_colour_images():
    first = augment.flat_composition(64, random.Random(5))
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(first, augment.flat_composition(64, random.Random(5)))
    # Few colours, unlike a photo crop; most images mostly flat (the rest on a graded background).
    flat = 0
    for seed in range(8):
        _, counts = np.unique(augment.flat_composition(64, random.Random(seed)).reshape(-1, 3), axis=0,
                              return_counts=True)
        assert len(counts) < 200
        flat += np.sort(counts)[::-1][:8].sum() > 0.5 * 64 * 64
    assert flat >= 3


def test_a_permutation_moves_whole_channels():
    patch = np.stack([np.full((4, 4), value, np.uint8) for value in (10, 20, 30)], axis=2)
    permuted = augment.permute_colours(patch, random.Random(1))
    assert sorted(permuted[0, 0].tolist()) == [10, 20, 30] and np.all(permuted == permuted[0, 0])


def test_the_sampler_mixes_in_compositions_and_permutes_only_mix_crops(tmp_path, monkeypatch):
    photos = png_folder(tmp_path / "photos", 2, 64, 64)
    drawings = png_folder(tmp_path / "drawings", 2, 64, 64)
    monkeypatch.setattr(augment, "COMPOSITION_SHARE", 0.5)
    sampler = CropSampler(sorted(photos.glob("*.png")), 64, torch.device("cpu"), lambda line: None,
                          sorted(drawings.glob("*.png")), 0.5, ("colours", "compositions"))
    crops = sampler.batch(32, random.Random(0))
    assert crops.shape == (32, 3, 64, 64)
    plain = CropSampler(sorted(photos.glob("*.png")), 64, torch.device("cpu"), lambda line: None)
    assert plain.augmentations == () and plain.batch(4, random.Random(0)).shape == (4, 3, 64, 64)
