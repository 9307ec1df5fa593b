"""Bits-back coding with hyper-bb: carried data and album images come back exactly, the decoder's
reproducible_bbvi matches the encoder's, and carrying data makes the net rate smaller."""
import json
import math
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bitstream import album, bitsback
from bitstream.coders import ClosedTableCoder
from bitstream.container import FormatError, SectionType, pack, unpack
from bitstream.tables import quantize_pmfs
from lic_cli import codec
from lic_cli.cli import main
from lic_cli.imageio import ImageData
from models import zoo
from models.hyper.bitsback import MEAN_FRACTIONS, Z_STEP
from models.hyper.bitsback_codec import snap_posterior, snapping_margins
from models.interface import EncodeOptions

from .conftest import png_bytes, smooth_image


@pytest.fixture(scope="module")
def bb(tiny_bb_weights):
    return zoo.load_codec("hyper-bb", tiny_bb_weights)


def latents_of(bb, pixels, quality):
    tensor = torch.from_numpy(pixels[:, :, :3]).permute(2, 0, 1).float() / 255
    return bb.codec.amortized_latents(tensor, quality), quality, pixels.shape[0], pixels.shape[1]


def test_popping_arbitrary_bits_and_pushing_back_is_exact():
    tables = quantize_pmfs(np.array([-2]), [np.array([0.1, 0.2, 0.4, 0.2, 0.1])])
    coder = ClosedTableCoder(tables)
    for carried, padding in [(b"", 0), (b"x", 0), (b"some side information", 3), (os.urandom(999), 0)]:
        stack = bitsback.initial_stack(carried, padding)
        values = coder.pop(stack, np.zeros(300, dtype=np.int64))
        assert values.min() >= -2 and values.max() <= 2
        coder.push(stack, values, np.zeros(300, dtype=np.int64))
        assert bitsback.recover_carried(stack, len(carried), padding) == carried


def test_damaged_padding_is_detected():
    import constriction
    words = np.concatenate([np.array([12345], dtype=np.uint32), bitsback.carried_words(b"abcd")])
    stack = constriction.stream.stack.AnsCoder(words, seal=True)
    with pytest.raises(FormatError, match="padding"):
        bitsback.recover_carried(stack, 4, 1)
    with pytest.raises(FormatError, match="number of carried words"):
        bitsback.recover_carried(bitsback.initial_stack(b"abcd", 4), 4, 3)


def test_stream_recovers_carried_bytes_and_every_image(bb):
    images = [smooth_image(40, 70, seed=1), smooth_image(1, 1, seed=2), smooth_image(64, 64, seed=3)]
    latents = [latents_of(bb, pixels, q) for pixels, q in zip(images, [0, 3, 5], strict=True)]
    for carried in [b"", b"tiny", os.urandom(3000)]:
        stream = bb.codec.encode_stream(latents, carried, bbvi_steps=10)
        decoded, back = bb.codec.decode_stream(stream.data, stream.images, stream.carried_bytes, stream.padding_words)
        assert back == carried
        for (y_hat, *_), y_back in zip(latents, decoded, strict=True):
            assert torch.equal(y_hat, y_back)


def test_snapping_margins_measure_the_distance_to_a_rounding_boundary(bb):
    grid = bb.codec.q_scales
    mean_step = Z_STEP / MEAN_FRACTIONS
    on_grid_log_scale = torch.full((3,), math.log(Z_STEP * grid[5]), dtype=torch.float64)
    on_grid = torch.tensor([0.0, 2 * mean_step, -7 * mean_step], dtype=torch.float64)
    assert snapping_margins(on_grid, on_grid_log_scale, grid) == pytest.approx((0.5, 0.5))
    near_boundary = on_grid + torch.tensor([0.0, 0.499 * mean_step, 0.0], dtype=torch.float64)
    mean_margin, _ = snapping_margins(near_boundary, on_grid_log_scale, grid)
    assert mean_margin == pytest.approx(0.001, abs=1e-9)
    # Beyond the grid's largest scale every value snaps to the last table: no boundary to cross.
    huge = on_grid_log_scale + 40.0
    assert snapping_margins(on_grid, huge, grid)[1] == 0.5


def test_reproducible_bbvi_snaps_its_float_fit(bb):
    y_hat = latents_of(bb, smooth_image(64, 96, seed=5), 2)[0]
    mean, log_scale = bb.codec.bbvi_floats(y_hat, 2, steps=5)
    snapped = bb.codec.reproducible_bbvi(y_hat, 2, steps=5)
    expected = snap_posterior(mean, log_scale, bb.codec.q_scales)
    assert torch.equal(snapped.mean_codes, expected.mean_codes)
    assert torch.equal(snapped.scale_ids, expected.scale_ids)
    assert 0 < min(snapping_margins(mean, log_scale, bb.codec.q_scales)) <= 0.5


def test_reproducible_bbvi_is_bit_identical_across_runs_and_threads(bb):
    y_hat = latents_of(bb, smooth_image(64, 96, seed=5), 2)[0]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        first = bb.codec.reproducible_bbvi(y_hat, 2, steps=25)
        again = bb.codec.reproducible_bbvi(y_hat, 2, steps=25)
        torch.set_num_threads(2)
        other = bb.codec.reproducible_bbvi(y_hat, 2, steps=25)
    finally:
        torch.set_num_threads(threads)
    for result in (again, other):
        assert torch.equal(first.mean_codes, result.mean_codes)
        assert torch.equal(first.scale_ids, result.scale_ids)
        assert first.checksum() == result.checksum()
    assert torch.get_num_threads() == threads


def test_net_rate_is_below_plain_coding_of_the_same_latents(bb):
    pixels = smooth_image(128, 128, seed=7)
    latents = [latents_of(bb, pixels, 3)]
    carried = os.urandom(4000)  # plenty: no padding needed
    stream = bb.codec.encode_stream(latents, carried, bbvi_steps=10)
    assert stream.padding_words == 0
    # The same z-hat and y-hat pushed onto an empty stack: what coding them costs without bits-back.
    _decoded, _ = bb.codec.decode_stream(stream.data, stream.images, len(carried), 0)
    plain = _plain_bytes(bb.codec, stream, latents)
    net = len(stream.data) - len(carried)
    assert stream.borrowed_bits[0] > 0
    assert net < plain
    assert abs((plain - net) * 8 - stream.borrowed_bits[0]) < 64 + 0.05 * stream.borrowed_bits[0]


def _plain_bytes(codec_, stream, latents):
    import constriction
    y_hat, quality, height, width = latents[0]
    # Recover z-hat by popping the stream's top image.
    stack = constriction.stream.stack.AnsCoder(np.frombuffer(stream.data, dtype="<u4").astype(np.uint32))
    shape = codec_.z_shape(height, width)
    z_index = codec_.z_coder.pop(stack, codec_.z_table_ids(shape))
    fresh = constriction.stream.stack.AnsCoder()
    y_ids, y_anchors, _ = codec_.y_symbols(torch.from_numpy(z_index.reshape(shape)), quality)
    codec_.y_coder.push(fresh, y_hat.numpy().ravel() - y_anchors, y_ids)
    codec_.z_coder.push(fresh, z_index, codec_.z_table_ids(shape))
    return 4 * len(fresh.get_compressed())


def test_metadata_comment_and_side_info_ride_inside_and_come_back(bb):
    pixels = smooth_image(30, 41, channels=4, seed=9)
    image = ImageData(pixels, icc_profile=b"fake icc profile", exif=b"Exif\0\0fake")
    data, _stream = codec.encode_album([(None, image)], bb, 2, comment="caption", side_info=b"\0side\0",
                                       options=EncodeOptions(posterior_steps=5))
    container = unpack(data)
    assert container.version == 2 and set(container.sections) == {SectionType.BITSBACK, SectionType.ALBUM}
    session = codec.CodecSession({"hyper-bb": bb.path})
    decoded = session and codec.decode_file(data, session)
    assert decoded.side_info == b"\0side\0" and decoded.comment == "caption"
    restored = decoded.image
    assert restored.icc_profile == b"fake icc profile" and restored.exif == b"Exif\0\0fake"
    assert np.array_equal(restored.pixels[:, :, 3], pixels[:, :, 3])  # alpha is lossless


def test_a_mismatching_posterior_is_a_clear_error(bb):
    image = ImageData(smooth_image(20, 20, seed=11))
    data, _ = codec.encode_album([(None, image)], bb, 1, side_info=b"payload", options=EncodeOptions(posterior_steps=5))
    container = unpack(data)
    table = album.unpack_table(container.sections[SectionType.ALBUM], len(container.sections[SectionType.BITSBACK]))
    entry = table.entries[0]
    forged = album.AlbumTable([album.AlbumEntry(entry.width, entry.height, entry.channels, entry.quality,
                                                entry.bbvi_steps, entry.checksum ^ 1)], table.carried_bytes,
                              table.padding_words)
    container.sections[SectionType.ALBUM] = album.pack_table(forged)
    with pytest.raises(FormatError, match="reproducible_bbvi"):
        codec.decode_file(pack(container), codec.CodecSession({"hyper-bb": bb.path}))


@pytest.mark.parametrize("payload, message", [
    (b"", "truncated"),
    (album._HEAD.pack(0, 0, 0), "0 images"),
    (album._HEAD.pack(1, 0, 0), "wrong length"),
    (album._HEAD.pack(1, 0, 0) + album._ENTRY.pack(0, 5, 3, 0, 1, 0), "image size"),
    (album._HEAD.pack(1, 0, 0) + album._ENTRY.pack(5, 5, 2, 0, 1, 0), "channel"),
    (album._HEAD.pack(1, 0, 0) + album._ENTRY.pack(5, 5, 3, 0, 60000, 0), "BBVI steps"),
    (album._HEAD.pack(1, 0, 1 << 30) + album._ENTRY.pack(5, 5, 3, 0, 1, 0), "carried"),
])
def test_album_table_is_parsed_defensively(payload, message):
    with pytest.raises(FormatError, match=message):
        album.unpack_table(payload, stream_bytes=64)


@pytest.mark.parametrize("data, message", [
    (b"\x01\x00", "truncated"),
    (album._RECORD.pack(1, 0, 99) + b"abc", "past the end"),
    (album._RECORD.pack(77, 0, 0), "unknown"),
    (album._RECORD.pack(1, 3, 0), "image 3"),
])
def test_carried_records_are_parsed_defensively(data, message):
    with pytest.raises(FormatError, match=message):
        album.unpack_records(data, image_count=2)


def test_cli_album_round_trip_with_names(tmp_path, tiny_bb_weights):
    sources = []
    for name, shape in [("first", (24, 40, 3)), ("second", (9, 13, 1)), ("third", (33, 17, 4))]:
        path = tmp_path / f"{name}.png"
        path.write_bytes(png_bytes(smooth_image(*shape[:2], channels=shape[2], seed=len(sources))))
        sources.append(path)
    runner = CliRunner()
    target = tmp_path / "album.lic"
    result = runner.invoke(main, ["encode", *map(str, sources), "-o", str(target), "--model", "hyper-bb",
                                  "--weights", str(tiny_bb_weights), "--bbvi-steps", "5", "--comment", "trip"])
    assert result.exit_code == 0, result.output
    info = runner.invoke(main, ["info", str(target), "--json"])
    record = json.loads(info.output)
    assert record["carried_bytes"] > 0 and len(record["images"]) == 3 and record["format_version"] == 2
    out = tmp_path / "out"
    result = runner.invoke(main, ["decode", str(target), "-o", f"{out}{os.sep}",
                                  "--weights", f"hyper-bb={tiny_bb_weights}"])
    assert result.exit_code == 0, result.output
    for source in sources:
        original = Image.open(source)
        restored = Image.open(out / f"{source.stem}.png")
        assert restored.size == original.size and restored.mode == original.mode
        assert restored.info.get("Comment") == "trip"
    refused = runner.invoke(main, ["decode", str(target), "-o", str(tmp_path / "one.png"),
                                   "--weights", f"hyper-bb={tiny_bb_weights}"])
    assert refused.exit_code == 2 and "directory" in refused.output


def test_cli_side_info_round_trip_and_refusal_for_plain_models(tmp_path, tiny_bb_weights, tiny_weights):
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes(smooth_image(20, 30, seed=4)))
    side = tmp_path / "side.bin"
    side.write_bytes(os.urandom(300))
    runner = CliRunner()
    result = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "a.lic"), "--model", "hyper-bb",
                                  "--weights", str(tiny_bb_weights), "--side-info", str(side), "--bbvi-steps", "3"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["decode", str(tmp_path / "a.lic"), "-o", str(tmp_path / "b.png"),
                                  "--side-info-out", str(tmp_path / "side.out"),
                                  "--weights", f"hyper-bb={tiny_bb_weights}"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "side.out").read_bytes() == side.read_bytes()
    refused = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "c.lic"),
                                   "--weights", str(tiny_weights), "--comment", "no"])
    assert refused.exit_code == 2 and "carries data" in refused.output


def _with_q_grid(weights, tmp_path, grid):
    """A copy of a hyper-bb weight file whose q tables are built on `grid` (None: the legacy
    layout, with no stored grid, as weight files had before the grid reached below 0.5 steps)."""
    from models.hyper.bitsback import LEGACY_Q_SCALES, q_coding_tensors

    payload = torch.load(weights, weights_only=True)
    coding = {**payload["coding"], **q_coding_tensors(LEGACY_Q_SCALES if grid is None else grid)}
    if grid is None:
        del coding["q_scales"]
    payload["coding"] = coding
    path = tmp_path / "hyper-bb-grid.pt"
    torch.save(payload, path)
    return path


def test_weight_files_without_a_stored_q_grid_keep_the_legacy_grid(tiny_bb_weights, tmp_path):
    from models.hyper.bitsback import LEGACY_Q_SCALES, Q_SCALES

    assert Q_SCALES[0] < 0.5 * Q_SCALES[12] and np.allclose(Q_SCALES[12:], LEGACY_Q_SCALES)
    legacy = zoo.load_codec("hyper-bb", _with_q_grid(tiny_bb_weights, tmp_path, None))
    assert np.array_equal(legacy.codec.q_scales, LEGACY_Q_SCALES)
    latents = [latents_of(legacy, smooth_image(48, 64, seed=7), 1)]
    stream = legacy.codec.encode_stream(latents, b"carried", bbvi_steps=5)
    decoded, back = legacy.codec.decode_stream(stream.data, stream.images, stream.carried_bytes,
                                               stream.padding_words)
    assert back == b"carried" and torch.equal(decoded[0], latents[0][0])
    posterior = legacy.codec.reproducible_bbvi(latents[0][0], 1, steps=5)
    assert int(posterior.scale_ids.max()) < len(LEGACY_Q_SCALES)


def test_a_q_grid_this_version_cannot_use_is_refused(tiny_bb_weights, tmp_path):
    with pytest.raises(ValueError, match="q scale grid"):
        zoo.load_codec("hyper-bb", _with_q_grid(tiny_bb_weights, tmp_path, [0.5, 1.0, 2.0]))
