"""The torch-free runtime (models/runtime): its fixed point equals the torch path's, it decodes
files to the same symbols and to pixels within one level, and `lic decode` and the Pillow plugin
work where torch cannot be imported."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bitstream.container import unpack
from lic_cli.codec import CodecSession, coded_sections, encode_image
from lic_cli.imageio import ImageData
from models import zoo
from models.core import fixedpoint
from models.hyper.exact import hyper_synthesis_layers
from models.interface import EncodeOptions, Geometry
from models.runtime import fixed
from models.runtime.export import export_model_graphs
from models.runtime.graphs import Graph, GraphMismatch, graph_path
from models.runtime.registry import encoder_prefixes, graph_parts, runtime_class
from models.weight_reader import read_weight_arrays

from .conftest import smooth_image

pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO / "tests" / "conformance"


def as_runtime_layer(layer: fixedpoint.FixedLayer) -> fixed.FixedConv:
    return fixed.FixedConv(layer.weight.double().numpy(), layer.bias.double().numpy(), layer.transposed, layer.stride,
                           layer.padding, layer.output_padding, layer.relu, layer.negative_slope, layer.shuffle)


def test_numpy_fixed_point_equals_the_torch_layers_bit_for_bit():
    torch.manual_seed(0)
    stack = nn.Sequential(nn.ConvTranspose2d(8, 12, 5, 2, 2, 1), nn.ReLU(), nn.ConvTranspose2d(12, 10, 3, 2, 1, 1),
                          nn.LeakyReLU(), nn.Conv2d(10, 16, 3, 1, 1), nn.PixelShuffle(2), nn.Conv2d(4, 8, 5, 2, 2))
    layers = fixedpoint.freeze(stack)
    x = torch.randn(1, 8, 7, 9) * 3
    expected = fixedpoint.run(layers, x)[0].numpy()
    assert np.array_equal(fixed.run([as_runtime_layer(layer) for layer in layers], x[0].numpy()), expected)


@pytest.fixture(scope="module", params=["hyper", "hyper-ctx", "gc-c4", "gc-c4-sc", "cpm", "flow"])
def tiny(request, tmp_path_factory):
    """(model name, torch session, weight file, runtime) of a tiny random network."""
    name, folder = request.param, tmp_path_factory.mktemp(request.param)
    torch.manual_seed(7)
    model = zoo.build_trainable(name, zoo.entry(name).tiny_config)
    with torch.no_grad():  # a context model away from its zero start
        for parameter in getattr(model, "aggregate", nn.Module()).parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        for parameter in getattr(model, "generator", nn.Module()).parameters():  # ChannelNorm away from 1, 0
            parameter.add_(0.05 * torch.randn_like(parameter))
    weights = zoo.export_weights(model, name, folder / f"{name}.pt")
    export_model_graphs(name, zoo.load_codec(name, weights, compute="fp32").codec.model, folder)
    runtime = runtime_class(name)(read_weight_arrays(weights, encoder_prefixes), graphs(name, folder))
    return name, CodecSession({name: weights}, compute="fp32"), weights, runtime


def graphs(name: str, folder: Path) -> dict[str, bytes]:
    return {part: graph_path(name, part, folder).read_bytes() for part in graph_parts(name, encoding=True)}


def quality_at(runtime, fraction: float) -> float:
    """A quality a fraction of the way up the model's ladder (0 for a single-rate model; a whole
    one where the model has no qualities between its operating points)."""
    quality = fraction * (runtime.qualities.count - 1)
    return quality if runtime.qualities.continuous else round(quality)


@pytest.mark.parametrize("tiny", ["hyper", "hyper-ctx"], indirect=True)
def test_the_runtime_hyper_synthesis_is_the_torch_one(tiny):
    name, session, _, _ = tiny
    torch_layers = fixedpoint.freeze(session.get(name).codec.model.h_s)
    network = {key: value.numpy() for key, value in session.get(name).codec.model.state_dict().items()}
    for ours, theirs in zip(hyper_synthesis_layers(network), torch_layers, strict=True):
        reference = as_runtime_layer(theirs)
        assert np.array_equal(ours.weight, reference.weight) and np.array_equal(ours.bias, reference.bias)
        assert (ours.transposed, ours.stride, ours.padding, ours.output_padding, ours.relu) == \
            (reference.transposed, reference.stride, reference.padding, reference.output_padding, reference.relu)


@pytest.mark.parametrize("fraction", [0, 0.5, 1])
def test_the_runtime_decodes_torch_files_to_the_same_symbols_and_close_pixels(tiny, fraction):
    name, session, _, runtime = tiny
    loaded = session.get(name)
    quality = quality_at(runtime, fraction)
    data = encode_image(ImageData(smooth_image(70, 90)), loaded, quality)
    container = unpack(data)
    sections, geometry = coded_sections(container, loaded), Geometry(container.height, container.width)
    ours = runtime.decode_symbols(sections, geometry, container.quality_value)
    theirs = loaded.codec.decode_symbols(sections, geometry, container.quality_value)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    pixels = runtime.decode(sections, geometry, container.quality_value).astype(int)
    reference = loaded.codec.decode(sections, geometry, container.quality_value).numpy().astype(int)
    assert pixels.shape == reference.shape == (3, 70, 90) and np.abs(pixels - reference).max() <= 1


@pytest.mark.parametrize("fraction", [0.2, 0.7])
def test_files_the_runtime_encodes_decode_on_the_torch_path(tiny, fraction):
    name, session, _, runtime = tiny
    loaded = session.get(name)
    quality = quality_at(runtime, fraction)
    image = smooth_image(70, 90)
    ours = runtime.encode(np.ascontiguousarray(image.transpose(2, 0, 1)), quality)
    theirs = loaded.codec.encode(torch.from_numpy(image).permute(2, 0, 1), quality)
    geometry = Geometry(70, 90)
    symbols = loaded.codec.decode_symbols(ours, geometry, quality)
    assert all(np.array_equal(a, b) for a, b in zip(symbols, runtime.decode_symbols(ours, geometry, quality),
                                                     strict=True))
    # float analysis on another library: a latent may round the other way, rarely
    assert abs(sum(map(len, ours.values())) - sum(map(len, theirs.values()))) <= 0.02 * sum(map(len, theirs.values()))


def test_the_synthesis_gives_the_same_pixels_on_any_thread_count(tiny):
    """What lets the runtime use no more threads than cores (graphs.synthesis_threads)."""
    name, session, _, runtime = tiny
    quality = quality_at(runtime, 0.5)
    sections = session.get(name).codec.encode(torch.from_numpy(smooth_image(48, 64)).permute(2, 0, 1), quality)
    arrays = runtime.synthesis.arrays
    pixels = {}
    try:
        for threads in (1, 4):
            runtime.__dict__["synthesis"] = Graph(runtime.graphs["synthesis"], arrays, threads)
            pixels[threads] = runtime.decode(sections, Geometry(48, 64), quality)
    finally:
        del runtime.__dict__["synthesis"]  # the fixture's own, built again on next use
    assert np.array_equal(pixels[1], pixels[4])


@pytest.mark.parametrize("tiny", ["flow"], indirect=True)
def test_a_prefix_of_a_progressive_file_decodes_as_on_the_torch_path(tiny):
    name, session, _, runtime = tiny
    assert runtime.capabilities.progressive
    loaded = session.get(name)
    quality = quality_at(runtime, 0.5)
    sections = loaded.codec.encode(torch.from_numpy(smooth_image(48, 64)).permute(2, 0, 1), quality)
    geometry = Geometry(48, 64)
    for prefix in ({"latent": sections["latent"]}, {k: sections[k] for k in ("latent", "detail1")}):
        assert all(np.array_equal(a, b) for a, b in zip(runtime.decode_symbols(prefix, geometry, quality),
                                                         loaded.codec.decode_symbols(prefix, geometry, quality),
                                                         strict=True))
        pixels = runtime.decode(prefix, geometry, quality).astype(int)
        assert np.abs(pixels - loaded.codec.decode(prefix, geometry, quality).numpy().astype(int)).max() <= 1


@pytest.mark.parametrize("tiny", ["gc-c4-sc"], indirect=True)
def test_selective_files_the_runtime_encodes_keep_the_same_latents(tiny):
    name, session, _, runtime = tiny
    assert runtime.capabilities.selective
    loaded = session.get(name)
    image = smooth_image(70, 90)
    preserve = np.zeros((70, 90), bool)
    preserve[10:30, 40:80] = True
    ours = runtime.encode(np.ascontiguousarray(image.transpose(2, 0, 1)), 0, EncodeOptions(preserve=preserve))
    theirs = loaded.codec.encode(torch.from_numpy(image).permute(2, 0, 1), 0, EncodeOptions(preserve=preserve))
    assert ours["preserve"] == theirs["preserve"]
    geometry = Geometry(70, 90)
    symbols, kept = runtime.decode_symbols(ours, geometry, 0)
    torch_symbols, torch_kept = loaded.codec.decode_symbols(ours, geometry, 0)
    assert np.array_equal(symbols, torch_symbols) and np.array_equal(kept, torch_kept)
    pixels = runtime.decode(ours, geometry, 0).astype(int)
    assert np.abs(pixels - loaded.codec.decode(ours, geometry, 0).numpy().astype(int)).max() <= 1


def test_a_graph_refuses_weights_of_another_shape(tiny, tmp_path):
    name, _, weights, _ = tiny
    tiny_config = zoo.entry(name).tiny_config
    size = zoo.entry(name).training.sizes.get("channels", "widths")
    wider_sizes = [2 * width for width in tiny_config[size]] if size == "widths" else 2 * tiny_config[size]
    wider = zoo.export_weights(zoo.build_trainable(name, {**tiny_config, size: wider_sizes}), name,
                               tmp_path / "wider.pt")
    runtime = runtime_class(name)(read_weight_arrays(wider, encoder_prefixes), graphs(name, Path(weights).parent))
    with pytest.raises(GraphMismatch):  # graphs are built on first use; registry.decoder_for builds it at once
        runtime.synthesis  # noqa: B018


WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # importing torch fails, as in an install without it
from lic_cli.cli import main


def lic(*arguments):
    sys.argv = ["lic", *arguments, "--quiet"]
    try:
        main()
    except SystemExit as end:
        assert not end.code, end.code

"""
"""A script's start: lic(...) runs a command in a process where torch cannot be imported."""

DECODE_WITHOUT_TORCH = WITHOUT_TORCH + """
source, target, model, quality = sys.argv[1:5]
lic("decode", source, "-o", target)
lic("encode", target, "-o", target + ".lic", "--model", model, "-q", quality)
lic("decode", target + ".lic", "-o", target + ".again.png")
if model == "flow":  # a progressive file's preview
    lic("decode", source, "-o", target + ".preview.png", "--levels", "1")
if model == "gc-c4-sc":  # selective coding of a mask's white part
    from PIL import Image
    with Image.open(target) as decoded:
        Image.new("L", decoded.size, 255).crop((0, 0, decoded.width // 2, decoded.height)).save(target + ".mask.png")
    lic("encode", target, "-o", target + ".kept.lic", "--model", model, "--preserve", target + ".mask.png")
    lic("decode", target + ".kept.lic", "-o", target + ".kept.png")
import lic_cli
from PIL import Image
lic_cli.register_lic_opener()
with Image.open(source) as image:
    image.load()
    print(image.size, image.mode)
"""


@pytest.mark.slow
@pytest.mark.parametrize("name, model, quality", [
    ("hyper-ctx-q2.lic", "hyper-ctx", "2"), ("hyper-q3.5.lic", "hyper", "2"),
    ("gc-c4-sc-preserve.lic", "gc-c4-sc", "1"), ("cpm-q4.lic", "cpm", "3"), ("flow-q12.lic", "flow", "4")])
def test_lic_decode_encode_and_the_pillow_plugin_work_where_torch_cannot_be_imported(name, model, quality, tmp_path):
    source = CONFORMANCE / name
    result = subprocess.run([sys.executable, "-c", DECODE_WITHOUT_TORCH, str(source), str(tmp_path / "out.png"), model,
                             quality],
                            capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    reference = np.asarray(Image.open(CONFORMANCE / name.replace(".lic", "-0.png"))).astype(int)
    assert np.abs(np.asarray(Image.open(tmp_path / "out.png")).astype(int) - reference).max() <= 1
    assert np.asarray(Image.open(tmp_path / "out.png.again.png")).shape == reference.shape


@pytest.mark.slow
def test_auto_decodes_large_images_with_torch_where_it_is_installed():
    from lic_cli import codec

    container = unpack((CONFORMANCE / "hyper-ctx-q2.lic").read_bytes())
    session = CodecSession()
    small = session.decoder_for(container.model_id, container.weights_id, 768 * 512)
    large = session.decoder_for(container.model_id, container.weights_id, codec.AUTO_TORCH_PIXELS + 1)
    assert small.codec.capabilities.arrays and not large.codec.capabilities.arrays  # the runtime, then torch
    forced = CodecSession(engine="onnx").decoder_for(container.model_id, container.weights_id,
                                                     codec.AUTO_TORCH_PIXELS + 1)
    assert forced.codec.capabilities.arrays
