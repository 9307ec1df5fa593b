"""Files made on another machine, or by an earlier lic with weights it has since replaced, still
decode: the committed conformance files (tests/conformance/, written by its regenerate.py; and
tests/conformance/legacy/, written by earlier versions of lic with weight files that were shipped
then) must give the same entropy-decoded symbols on every CPU, and the same pixels within rounding
(fp32 transforms)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lic_cli.codec import CodecSession, decode_file, decode_symbols

from .conformance.regenerate import symbols_sha256

CONFORMANCE = Path(__file__).parent / "conformance"
FILES = {(folder / name): entry for folder in (CONFORMANCE, CONFORMANCE / "legacy")
         for name, entry in json.loads((folder / "manifest.json").read_text()).items()}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session():
    return CodecSession(compute="fp32")


@pytest.mark.parametrize("path", sorted(FILES), ids=lambda path: str(path.relative_to(CONFORMANCE)))
def test_a_committed_file_decodes_to_its_symbols_and_pixels(session, path):
    data = path.read_bytes()
    assert symbols_sha256(decode_symbols(data, session)) == FILES[path]["symbols_sha256"]
    decoded = decode_file(data, session)
    assert len(decoded.images) == len(FILES[path]["pixels"])
    for image, picture in zip(decoded.images, FILES[path]["pixels"], strict=True):
        reference = np.asarray(Image.open(path.parent / picture))
        pixels = image.pixels if reference.ndim == 3 else image.pixels[:, :, 0]
        assert pixels.shape == reference.shape
        assert int(np.abs(pixels.astype(int) - reference.astype(int)).max()) <= 1
