"""Imported CompressAI models on the torch-free runtime: the shipped graphs (one per architecture,
exported once) take the networks of any checkpoint's widths; files decode to the torch path's
symbols and to pixels within one level, either way round, and `lic decode --weights` works where
torch cannot be imported. Tiny random networks of other widths than the graphs were exported with;
CompressAI itself is not needed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lic_cli.codec import CodecSession
from models import zoo
from models.compressai.layout import ARCHITECTURES
from models.interface import Geometry
from models.runtime.graphs import Graph, graph_path
from models.runtime.registry import encoder_prefixes, graph_parts, runtime_class
from models.weight_reader import read_weight_arrays

from .conftest import smooth_image
from .test_runtime import WITHOUT_TORCH

pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"elic2022-official": {"widths": [[12, 20], [12, 24]], "groups": [[4, 8, 8], [4, 4, 8, 8]],
                                 "channel_context_widths": [[8, 8], [12, 8]]},
           "cheng2020-anchor": {"widths": [[12, 12], [16, 16]]}}
OTHER_WIDTHS = {"widths": [[12, 20], [16, 24]]}  # not the tiny configuration the graphs came from
HEIGHT, WIDTH = 70, 90


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def imported(request, tmp_path_factory):
    """(model name, torch codec, weight file, runtime codec) of a tiny random imported network."""
    name = request.param
    entry = zoo.entry(name)
    torch.manual_seed(11)
    model = entry.build(CONFIGS.get(name, OTHER_WIDTHS))
    with torch.no_grad():  # away from the initialisation, so that latents and contexts are not all zero
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    weights = zoo.export_weights(model, name, tmp_path_factory.mktemp(name) / f"{name}.pt")
    graphs = {part: graph_path(name, part).read_bytes() for part in graph_parts(name, encoding=True)}
    runtime = runtime_class(name)(read_weight_arrays(weights, encoder_prefixes), graphs)
    torch_codec = CodecSession({name: weights}, engine="torch", compute="fp32").get(name).codec
    return name, torch_codec, weights, runtime


def image_tensor() -> torch.Tensor:
    return torch.from_numpy(smooth_image(HEIGHT, WIDTH)).permute(2, 0, 1)


@pytest.mark.parametrize("quality", [0, 1])
def test_torch_files_decode_on_the_runtime_to_the_same_symbols_and_close_pixels(imported, quality):
    _, torch_codec, _, runtime = imported
    sections = torch_codec.encode(image_tensor(), quality)
    geometry = Geometry(HEIGHT, WIDTH)
    ours, theirs = runtime.decode_symbols(sections, geometry, quality), torch_codec.decode_symbols(
        sections, geometry, quality)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert np.count_nonzero(theirs[1])  # latents that say something
    pixels = runtime.decode(sections, geometry, quality).astype(int)
    reference = torch_codec.decode(sections, geometry, quality).numpy().astype(int)
    assert pixels.shape == reference.shape == (3, HEIGHT, WIDTH) and np.abs(pixels - reference).max() <= 1


@pytest.mark.parametrize("quality", [0, 1])
def test_files_the_runtime_encodes_decode_on_the_torch_path(imported, quality):
    _, torch_codec, _, runtime = imported
    ours = runtime.encode(image_tensor().numpy(), quality)
    theirs = torch_codec.encode(image_tensor(), quality)
    geometry = Geometry(HEIGHT, WIDTH)
    assert all(np.array_equal(a, b) for a, b in zip(torch_codec.decode_symbols(ours, geometry, quality),
                                                     runtime.decode_symbols(ours, geometry, quality), strict=True))
    # float analysis on another library: a latent may round the other way, rarely
    assert abs(sum(map(len, ours.values())) - sum(map(len, theirs.values()))) <= 0.02 * sum(map(len, theirs.values()))


def test_the_synthesis_gives_the_same_pixels_on_any_thread_count(imported):
    _, torch_codec, _, runtime = imported
    sections = torch_codec.encode(image_tensor(), 1)
    built = runtime.graph("synthesis", 1)
    pixels = {}
    try:
        for threads in (1, 4):
            runtime._built["synthesis", 1] = Graph(runtime.graphs["synthesis"], built.arrays, threads, any_widths=True)
            pixels[threads] = runtime.decode(sections, Geometry(HEIGHT, WIDTH), 1)
    finally:
        runtime._built["synthesis", 1] = built
    assert np.array_equal(pixels[1], pixels[4])


def test_a_session_with_weights_codes_imported_models_on_the_runtime(imported):
    name, _, weights, _ = imported
    session = CodecSession({name: weights}, compute="fp32")
    assert session.encoder(name).codec.capabilities.arrays
    loaded = session.encoder(name)
    assert session.decoder_for(name, loaded.weights_id).codec.capabilities.arrays


CODE_WITHOUT_TORCH = WITHOUT_TORCH + """
image, weights, target = sys.argv[1:4]
lic("encode", image, "-o", target + ".lic", "--weights", weights, "-q", "2")
lic("decode", target + ".lic", "-o", target + ".png", "--weights", weights)
"""


@pytest.mark.slow
@pytest.mark.parametrize("imported", ["mbt2018", "elic2022-official"], indirect=True)
def test_lic_codes_imported_models_where_torch_cannot_be_imported(imported, tmp_path):
    from PIL import Image

    _, torch_codec, weights, _ = imported
    Image.fromarray(smooth_image(HEIGHT, WIDTH)).save(tmp_path / "in.png")
    result = subprocess.run([sys.executable, "-c", CODE_WITHOUT_TORCH, str(tmp_path / "in.png"), str(weights),
                             str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    decoded = np.asarray(Image.open(tmp_path / "out.png")).astype(int)
    reference = torch_codec.decode(torch_codec.encode(image_tensor(), 1), Geometry(HEIGHT, WIDTH), 1)
    assert decoded.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(decoded - reference.permute(1, 2, 0).numpy().astype(int)).mean() < 2
