"""The conformance suite: every zoo entry, and a toy family registered here, through the real CLI
and real files, with tiny randomly initialised networks (the registry's tiny_config).

A new family gets these checks by registering: round trips at 1x1, odd sizes, grey and RGBA at
its lowest and highest quality; identical pixels on a second decode and with 1 or 2 threads; the
reported size is the file's; damaged coded sections give one error line and exit status 2."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bitstream.container import CODED_SECTIONS, unpack
from lic_cli.cli import main
from lic_cli.codec import CodecSession, decode_file
from models import weight_files, weight_reader, zoo
from models.interface import CarryingCodec, ImageCodec

from .conftest import png_bytes, png_folder, smooth_image
from .fuzzing import pack_unchecked

FAMILIES_FOLDER = Path(__file__).parent / "families"
TEST_FAMILIES = zoo.discover_families(FAMILIES_FOLDER, "tests.families")
FAMILIES = [*zoo.ZOO, *(item.name for item in TEST_FAMILIES)]
GEOMETRIES = [(1, 1, 3), (37, 53, 3), (20, 31, 1), (19, 70, 4)]  # height, width, channels


class Subject:
    """One zoo model with tiny random weights, driven through the CLI."""

    def __init__(self, name: str, weights, folder):
        self.name, self.weights, self.folder = name, weights, folder
        self.runner = CliRunner()

    def run(self, *args: str):
        return self.runner.invoke(main, [str(a) for a in args])

    def encode(self, pixels: np.ndarray, quality: int, stem: str = "image"):
        source = self.folder / f"{stem}.png"
        source.write_bytes(png_bytes(pixels))
        target = self.folder / f"{stem}-q{quality}.lic"
        result = self.run("encode", source, "-o", target, "--model", self.name, "--weights", self.weights,
                          "-q", quality, "--force", "--verbose")
        assert result.exit_code == 0, result.output
        return target, result.output

    def decode(self, coded, *options: str) -> tuple[np.ndarray, object]:
        target = coded.with_suffix(f".{len(options)}.png")
        result = self.run("decode", coded, "-o", target, "--force", "--weights", f"{self.name}={self.weights}",
                          *options)
        return (np.asarray(Image.open(target)) if result.exit_code == 0 else None), result


@pytest.fixture(scope="module", params=FAMILIES)
def subject(request, tmp_path_factory):
    name = request.param
    registered = [item for item in TEST_FAMILIES if item.name == name]
    for item in registered:
        zoo.register(item)
    try:
        folder = tmp_path_factory.mktemp(name)
        torch.manual_seed(7)
        model = zoo.build_trainable(name, zoo.entry(name).tiny_config)
        weights = zoo.export_weights(model, name, folder / f"tiny-{name}.pt", {"note": "random init, tests only"})
        yield Subject(name, weights, folder)
    finally:
        for item in registered:
            zoo.ZOO.pop(item.name, None)


def qualities(subject: Subject) -> list[int]:
    item = zoo.entry(subject.name)
    count = item.qualities({**item.config, **item.tiny_config}).count
    return sorted({1, count})


def test_the_registry_entry_matches_its_codec(subject):
    loaded = zoo.load_codec(subject.name, subject.weights)
    codec, zoo_entry = loaded.codec, zoo.entry(subject.name)
    assert isinstance(codec, ImageCodec)
    assert tuple(codec.section_names) == tuple(zoo_entry.sections)
    assert set(zoo_entry.sections) <= CODED_SECTIONS.keys()
    assert codec.qualities.count == zoo_entry.qualities({**zoo_entry.config, **zoo_entry.tiny_config}).count
    assert 0 <= codec.qualities.default < codec.qualities.count
    assert isinstance(codec, CarryingCodec) or not codec.capabilities.carries_data


@pytest.mark.parametrize("height, width, channels", GEOMETRIES)
def test_round_trip_through_a_real_file(subject, height, width, channels):
    pixels = smooth_image(height, width, channels, seed=height)
    if channels == 4:
        pixels[:, :, 3] = np.arange(height * width).reshape(height, width) % 251
    for quality in qualities(subject):
        coded, _ = subject.encode(pixels, quality, f"{height}x{width}x{channels}")
        decoded, result = subject.decode(coded)
        assert result.exit_code == 0, result.output
        assert decoded.reshape(height, width, -1).shape == (height, width, channels)
        if channels == 4:
            assert np.array_equal(decoded[:, :, 3], pixels[:, :, 3])
        header = unpack(coded.read_bytes())
        assert (header.model_id, header.quality + 1, header.width, header.height, header.channels) == \
            (subject.name, quality, width, height, channels)


def test_decoding_is_deterministic_whatever_the_thread_count(subject):
    coded, _ = subject.encode(smooth_image(45, 67, seed=3), qualities(subject)[-1], "threads")
    once, _ = subject.decode(coded, "--threads", "1")
    again, _ = subject.decode(coded, "--threads", "2")
    third, _ = subject.decode(coded, "--threads", "2", "--quiet")
    assert np.array_equal(once, again) and np.array_equal(once, third)


def test_the_reported_size_is_the_file_size(subject):
    coded, summary = subject.encode(smooth_image(33, 50, seed=5), 1, "size")
    size = coded.stat().st_size
    assert f"{size:,} bytes" in summary
    info = subject.run("info", coded, "--json")
    record = json.loads(info.output)
    assert record["bytes"] == size and record["bpp"] == pytest.approx(8 * size / (33 * 50))


def damaged_files(data: bytes):
    """(what was done, file bytes) for each coded section: truncated, emptied, one bit flipped;
    each with a valid container checksum, so that only the section decoder can notice."""
    container = unpack(data)
    for kind in [k for k in container.sections if k in CODED_SECTIONS.values()]:
        payload = container.sections[kind]
        if not payload:  # a refinement level with nothing coded (allowed empty): nothing to damage
            continue
        middle = len(payload) // 2
        flipped = payload[:middle] + bytes([payload[middle] ^ 0x10]) + payload[middle + 1 :]
        for what, damaged in (("truncated", payload[: max(0, len(payload) - 4)]), ("emptied", b""),
                              ("bit flipped", flipped)):
            sections = dict(container.sections)
            sections[kind] = damaged
            damaged_container = type(container)(**{**container.__dict__, "sections": sections})
            yield f"{kind.name.lower()} {what}", pack_unchecked(damaged_container)


def test_damaged_sections_are_one_line_errors(subject):
    coded, _ = subject.encode(smooth_image(64, 80, seed=8), qualities(subject)[-1], "damaged")
    for what, data in damaged_files(coded.read_bytes()):
        broken = coded.with_name(re.sub(r"\W+", "-", what) + ".lic")
        broken.write_bytes(data)
        _, result = subject.decode(broken)
        assert result.exit_code == 2, f"{subject.name}, {what}: exit {result.exit_code}: {result.output}"
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lic: error:"), f"{subject.name}, {what}: {result.output}"


def test_resaving_a_weight_file_keeps_its_id(subject):
    payload = torch.load(subject.weights, weights_only=True)
    resaved = subject.folder / "resaved.pt"
    network = dict(reversed(list(payload["network"].items())))
    torch.save({**payload, "network": network, "card": {"note": "edited card"}}, resaved)
    assert resaved.read_bytes() != subject.weights.read_bytes()
    assert zoo.load_codec(subject.name, resaved).weights_id == zoo.load_codec(subject.name, subject.weights).weights_id


def test_files_of_replaced_weights_decode_from_their_kept_decoder(subject, monkeypatch, tmp_path):
    """Replace the weights by others: a file written with the first ones decodes, from the decoder
    part that was kept of them, to what the full weights decoded; that part encodes nothing."""
    coded, _ = subject.encode(smooth_image(40, 56, seed=11), qualities(subject)[-1], "replaced")
    expected, _ = subject.decode(coded)
    weights = weight_files.read_weight_file(subject.weights, lambda model: zoo.entry(model).encoder_prefixes)
    kept = weight_files.write_decoder_part(weights, zoo.entry(subject.name).encoder_prefixes, tmp_path / "archive")
    monkeypatch.setattr(weight_reader, "ARCHIVE_DIR", tmp_path / "archive")
    torch.manual_seed(99)
    replacement = zoo.export_weights(zoo.build_trainable(subject.name, zoo.entry(subject.name).tiny_config),
                                     subject.name, tmp_path / "replacement.pt")
    session = CodecSession({subject.name: replacement})  # the arithmetic of `lic decode`
    assert session.get(subject.name).weights_id != weights.weight_id
    decoded = decode_file(coded.read_bytes(), session).images[0].pixels
    assert np.array_equal(decoded.reshape(expected.shape), expected)
    prefixes = zoo.entry(subject.name).encoder_prefixes
    assert not any(name.startswith(prefixes) for name in torch.load(kept, weights_only=True)["network"])
    refused = subject.run("encode", subject.folder / "replaced.png", "-o", tmp_path / "x.lic", "--weights", kept)
    assert refused.exit_code == 2 and "holds only the decoder" in refused.output


def test_a_family_option_reaches_the_network_through_lic_train(tmp_path, monkeypatch):
    """The toy family's own training option: shown by --help, passed to the network by the generic
    rate-distortion driver, refused for other models."""
    toy = TEST_FAMILIES[0]
    registered_here = toy.name not in zoo.ZOO
    if registered_here:
        zoo.register(toy)
    try:
        runner = CliRunner()
        shown = runner.invoke(main, ["train", "--model", toy.name, "--help"])
        assert "--distortion-weight" in shown.output and f"Options of --model {toy.name}" in shown.output
        seen = []
        network = type(zoo.build_trainable(toy.name))
        original = network.rate_distortion
        monkeypatch.setattr(network, "rate_distortion",
                            lambda self, *args: seen.append(self.training_options) or original(self, *args))
        data = png_folder(tmp_path / "data", 3, 64, 64)
        result = runner.invoke(main, ["train", "--model", toy.name, "--data", str(data), "--val", str(data),
                                      "--steps", "3", "--batch-size", "2", "--crop", "64", "--compile", "off",
                                      "--precision", "fp32", "--out", str(tmp_path / "run"),
                                      "--distortion-weight", "2.5"])
        assert result.exit_code == 0, result.output
        assert seen and all(options.distortion_weight == 2.5 for options in seen)
        assert zoo.load_codec(toy.name, tmp_path / "run" / f"{toy.name}.pt").card["steps"] == 3
        foreign = runner.invoke(main, ["train", "--model", "hyper", "--data", str(data), "--distortion-weight", "1"])
        assert foreign.exit_code == 2 and "does not apply to --model hyper" in foreign.output
    finally:
        if registered_here:
            zoo.ZOO.pop(toy.name, None)
