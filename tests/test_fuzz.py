"""A bounded fuzz run on every family's decoder (tiny random models): mutated files decode or end
in the project's one-line error types, never in another exception. `python benchmarks/fuzz.py`
runs long ones with the shipped weights, in a separate process with time and memory watched."""
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lic_cli.cli import USER_ERRORS
from lic_cli.codec import CodecSession, decode_file, encode_album, encode_image
from lic_cli.imageio import ImageData
from models import zoo
from models.interface import EncodeOptions

from .conftest import smooth_image
from .fuzzing import mutate

FUZZ_EXAMPLES = 4000
FUZZ_MAX_PIXELS = 1 << 16  # larger declared images are refused up front (their decoding is timed elsewhere)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[CodecSession, list[tuple[str, bytes]]]:
    folder = tmp_path_factory.mktemp("fuzz")
    weights = {}
    for name in zoo.ZOO:
        torch.manual_seed(11)
        model = zoo.build_trainable(name, zoo.entry(name).tiny_config)
        weights[name] = zoo.export_weights(model, name, folder / f"{name}.pt")
    session = CodecSession(weights)
    rgba = smooth_image(21, 34, channels=4, seed=2)
    files = []
    for name in zoo.ZOO:
        loaded = session.get(name)
        for quality in sorted({0, loaded.codec.qualities.count - 1}):
            if loaded.codec.capabilities.carries_data:
                data = encode_album([("a", ImageData(rgba)), ("b", ImageData(smooth_image(17, 9)))], loaded, quality,
                                    comment="c", side_info=b"side", options=EncodeOptions(posterior_steps=2))[0]
            else:
                data = encode_image(ImageData(rgba, icc_profile=b"icc", exif=b"Exif\0\0"), loaded, quality)
            files.append((name, data))
    return session, files


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True)
@given(pick=st.integers(0, 10**6), seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 3))
def test_mutated_files_decode_or_fail_cleanly(corpus, pick, seed, rounds):
    session, files = corpus
    name, data = files[pick % len(files)]
    rng = random.Random(seed)
    for _ in range(rounds):
        data = mutate(data, rng)
    try:
        decoded = decode_file(data, session, max_pixels=FUZZ_MAX_PIXELS)
    except USER_ERRORS:
        return
    assert all(image.pixels.dtype == np.uint8 for image in decoded.images), name
