"""Files made on another machine still decode: the committed conformance files (tests/conformance/,
written by its regenerate.py) must give the same entropy-decoded symbols on every CPU, and the
same pixels within rounding (fp32 transforms)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lic_cli.codec import CodecSession, decode_file, decode_symbols

from .conformance.regenerate import symbols_sha256

FOLDER = Path(__file__).parent / "conformance"
MANIFEST = json.loads((FOLDER / "manifest.json").read_text())

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session():
    return CodecSession(compute="fp32")


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_a_committed_file_decodes_to_its_symbols_and_pixels(session, name):
    data = (FOLDER / name).read_bytes()
    assert symbols_sha256(decode_symbols(data, session)) == MANIFEST[name]["symbols_sha256"]
    decoded = decode_file(data, session)
    assert len(decoded.images) == len(MANIFEST[name]["pixels"])
    for image, picture in zip(decoded.images, MANIFEST[name]["pixels"], strict=True):
        reference = np.asarray(Image.open(FOLDER / picture))
        pixels = image.pixels if reference.ndim == 3 else image.pixels[:, :, 0]
        assert pixels.shape == reference.shape
        assert int(np.abs(pixels.astype(int) - reference.astype(int)).max()) <= 1
