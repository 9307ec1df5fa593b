import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models import zoo

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "kodim23.png"


def export_tiny(name: str, seed: int, folder: Path) -> Path:
    """A randomly initialised, tiny model of a hyper family, exported like a real one (logic tests only)."""
    torch.manual_seed(seed)
    model = zoo.build_trainable(name, {"channels": 8, "latent_channels": 12})
    return zoo.export_weights(model, name, folder / f"tiny-{name}.pt", {"note": "random init, tests only"})


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    return export_tiny("hyper", 1234, tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def tiny_bb_weights(tmp_path_factory) -> Path:
    return export_tiny("hyper-bb", 4321, tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def tiny_codec(tiny_weights):
    return zoo.load_codec("hyper", tiny_weights)


def png_bytes(pixels: np.ndarray, **save_options) -> bytes:
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    image = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **save_options)
    return buffer.getvalue()


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xx / 7 + c) * 60 + np.cos(yy / 5 - c) * 50 + 128 for c in range(channels)], axis=2)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def png_folder(folder: Path, count: int, height: int, width: int) -> Path:
    """Create folder holding `count` different smooth PNG photos (0.png, 1.png, ...), as `lic train
    --data` and `lic bench` read them."""
    folder.mkdir()
    for i in range(count):
        (folder / f"{i}.png").write_bytes(png_bytes(smooth_image(height, width, seed=i)))
    return folder
