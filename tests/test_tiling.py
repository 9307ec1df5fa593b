"""Large images run through the networks in tiles: the tiles must meet without seams."""
import numpy as np
import pytest
import torch
from torch import nn

from models import zoo
from models.core.geometry import Tiles
from models.gc import codec as gc_codec
from models.hyper import coding as hyper_coding
from models.hyper import exact as hyper_exact
from models.interface import PLAIN, Geometry

from .conftest import smooth_image


def test_tiles_give_what_the_whole_input_gives():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 5, stride=2, padding=2),
                            nn.ReLU(), nn.ConvTranspose2d(4, 2, 4, stride=4))
    x = torch.rand(1, 3, 52, 76)
    with torch.no_grad():
        whole = network(x)
        tiled = Tiles(core=16, margin=8).run(network, x, up=2)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-5)


def small_tiles(monkeypatch, module, **names: Tiles) -> None:
    for name, tiles in names.items():
        monkeypatch.setattr(module, name, tiles)


@pytest.mark.parametrize("name", ["hyper", "gc-c4"])
def test_a_tiled_codec_codes_the_same_symbols_and_nearly_the_same_pixels(tmp_path, monkeypatch, name):
    torch.manual_seed(3)
    model = zoo.build_trainable(name, zoo.entry(name).tiny_config)
    loaded = zoo.load_codec(name, zoo.export_weights(model, name, tmp_path / f"{name}.pt"))
    codec = loaded.codec
    image = torch.from_numpy(smooth_image(150, 230, seed=4)).permute(2, 0, 1).float() / 255
    whole_sections = codec.encode(image, 0, PLAIN)
    whole_pixels = codec.decode(whole_sections, Geometry(150, 230), 0)
    if name == "hyper":
        small_tiles(monkeypatch, hyper_coding, ANALYSIS_TILES=Tiles(64, 64), HYPER_ANALYSIS_TILES=Tiles(4, 16),
                    SYNTHESIS_TILES=Tiles(3, 4))
        small_tiles(monkeypatch, hyper_exact, HYPER_SYNTHESIS_TILES=Tiles(1, 4))
    else:
        small_tiles(monkeypatch, gc_codec, ENCODER_TILES=Tiles(64, 64), GENERATOR_TILES=Tiles(3, 24))
    tiled_sections = codec.encode(image, 0, PLAIN)
    tiled_pixels = codec.decode(whole_sections, Geometry(150, 230), 0)
    assert tiled_sections == whole_sections  # float differences too small to move any rounding here
    assert tiled_pixels.shape == whole_pixels.shape
    assert int((tiled_pixels.int() - whole_pixels.int()).abs().max()) <= 1  # pixels within rounding


def test_the_fixed_point_hyper_synthesis_is_exact_in_tiles(tmp_path, monkeypatch):
    torch.manual_seed(5)
    model = zoo.build_trainable("hyper", zoo.entry("hyper").tiny_config)
    codec = zoo.load_codec("hyper", zoo.export_weights(model, "hyper", tmp_path / "h.pt")).codec
    z_hat = torch.randint(-6, 7, (1, model.config.channels, 5, 7))
    means, ids = codec.latent_distribution(z_hat, 2)
    monkeypatch.setattr(hyper_exact, "HYPER_SYNTHESIS_TILES", Tiles(2, 4))
    tiled_means, tiled_ids = codec.latent_distribution(z_hat, 2)
    assert torch.equal(means, tiled_means) and np.array_equal(ids, tiled_ids)
