"""The cpm family's own logic: the exact context model, wavefront decoding, the importance map and
the training objective (tiny random networks; the conformance suite covers files and the CLI)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bitstream.coders import InformationBudget, stack_from_bytes, words_to_bytes
from bitstream.container import FormatError
from bitstream.tables import TOTAL
from models import zoo
from models.core import fixedpoint
from models.cpm import layout as cpm_layout
from models.cpm.codec import CpmCodec, build
from models.cpm.context_model import context_planes, quality_values
from models.cpm.importance_coding import SPREADS, channel_mask, pop_importance, push_importance, residual_counts
from models.cpm.layout import context_tiles
from models.cpm.network import channel_masks, importance_map_bits
from models.cpm.wavefront import FixedContext, wavefront_steps
from models.interface import Geometry

TINY = zoo.entry("cpm").tiny_config


def tiny_codec(seed: int = 0, biases=(-1.0, 0.0, 1.0, 2.0)) -> CpmCodec:
    torch.manual_seed(seed)
    model = build(TINY)
    with torch.no_grad():  # spread the qualities' importance maps so that masks are partial
        model.importance_bias.copy_(torch.tensor(biases))
        for layer in model.context.layers:
            layer.weight.mul_(4)
    return CpmCodec(model, {})


def random_volume(shape, seed: int, coded_share: float = 0.6):
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < coded_share
    symbols = rng.integers(0, 6, shape)
    return mask, symbols


class RecordingContext:
    """Wraps a FixedContext to keep the logits of every wavefront step, by volume position."""

    def __init__(self, context: FixedContext):
        self.context, self.seen = context, {}

    def __getattr__(self, name):
        return getattr(self.context, name)

    def logits(self, volume, positions):
        out = self.context.logits(volume, positions)
        for position, row in zip(positions[volume.needed[-1][positions]], out, strict=True):
            assert position not in self.seen, "a position was evaluated twice"
            self.seen[int(position)] = row.copy()
        return out


@pytest.mark.parametrize("shape", [(6, 1, 1), (6, 5, 7), (3, 8, 2), (6, 4, 13), (6, 9, 9)])
def test_wavefront_logits_equal_one_parallel_pass(shape):
    codec = tiny_codec()
    mask, symbols = random_volume(shape, seed=sum(shape))
    parallel_volume = codec.symbol_coder.context.volume(shape, mask, 1)
    known = np.flatnonzero(mask.ravel())
    codec.symbol_coder.context.set_symbols(parallel_volume, known, symbols.ravel()[known])
    parallel = codec.symbol_coder.context.all_logits(parallel_volume)

    recording = RecordingContext(codec.symbol_coder.context)
    codec.symbol_coder.context = recording
    import constriction
    coder = constriction.stream.stack.AnsCoder()
    family = constriction.stream.model.Categorical(perfect=False)
    order, _ = wavefront_steps(shape)
    order = order[mask.ravel()[order]]
    by_position = np.zeros((mask.size, parallel.shape[1]))
    by_position[known] = parallel
    probabilities = fixedpoint.integer_softmax(by_position[order])
    if order.size:
        coder.encode_reverse(symbols.ravel()[order].astype(np.int32), family, probabilities / TOTAL)
    budget = InformationBudget(coder)
    decoded = codec.symbol_coder.decode_tile(coder, budget, family, mask, 1)

    assert np.array_equal(decoded[mask], symbols[mask]) and np.all(decoded[~mask] == -1)
    assert coder.is_empty()
    assert sorted(recording.seen) == known.tolist()  # every coded position's logits exactly once
    wavefront = np.stack([recording.seen[i] for i in known]) if known.size else parallel
    assert np.array_equal(wavefront, parallel)  # bit for bit, not approximately


def test_no_logit_depends_on_a_symbol_decoded_at_or_after_its_step():
    codec = tiny_codec(seed=3)
    shape = (4, 5, 6)
    mask = np.ones(shape, dtype=bool)
    _, symbols = random_volume(shape, seed=1)
    order, starts = wavefront_steps(shape)
    step_of = np.empty(mask.size, dtype=np.int64)
    for step in range(len(starts) - 1):
        step_of[order[starts[step]:starts[step + 1]]] = step

    def logits(values):  # every position is coded here, so all_logits covers the volume
        volume = codec.symbol_coder.context.volume(shape, mask, 0)
        codec.symbol_coder.context.set_symbols(volume, np.arange(mask.size), values.ravel())
        return codec.symbol_coder.context.all_logits(volume)

    base = logits(symbols)
    for changed in (0, 17, mask.size // 2, mask.size - 1):
        other = symbols.copy().ravel()
        other[changed] = (other[changed] + 3) % 6
        moved = np.flatnonzero(np.any(logits(other.reshape(shape)) != base, axis=1))
        assert np.all(step_of[moved] > step_of[changed])


def test_fixed_point_context_follows_the_trained_float_model():
    torch.manual_seed(1)
    model = build({**TINY, "latent_channels": 5})
    fixed = FixedContext.of_model(model)
    shape = (5, 7, 9)
    mask, symbols = random_volume(shape, seed=2)
    volume = fixed.volume(shape, mask, 2)
    known = np.flatnonzero(mask.ravel())
    fixed.set_symbols(volume, known, symbols.ravel()[known])
    exact = fixed.all_logits(volume)
    values = torch.from_numpy(fixed.values)[torch.from_numpy(symbols)] * torch.from_numpy(mask)
    planes = context_planes(values[None].float(), torch.from_numpy(mask)[None].float(),
                                quality_values(4)[2:3].float())
    with torch.no_grad():
        reference = model.context(planes)[0].permute(1, 2, 3, 0).reshape(-1, 6).numpy()[known]
    assert np.abs(exact - reference).max() < 0.02


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (7, 1), (6, 11)])
def test_importance_maps_round_trip_including_empty_and_full(size):
    import constriction
    channels = 6
    rng = np.random.default_rng(size[0] * 31 + size[1])
    for counts in (np.zeros(size, np.int64), np.full(size, channels), rng.integers(0, channels + 1, size)):
        coder = constriction.stream.stack.AnsCoder()
        push_importance(coder, counts, channels)
        decoder = stack_from_bytes(words_to_bytes(coder.get_compressed()))
        decoded = pop_importance(decoder, InformationBudget(decoder), *size, channels)
        assert np.array_equal(decoded, counts) and decoder.is_empty()


def test_residual_tables_are_valid_and_ordered():
    for spread in range(len(SPREADS)):
        counts = residual_counts(spread, 32)
        assert counts.sum() == TOTAL and counts.min() >= 1 and np.argmax(counts) == 32
        assert np.array_equal(counts, counts[::-1])


@pytest.mark.parametrize("size", [(1, 1), (37, 53), (9, 300)])
def test_codec_round_trips_symbols_at_every_quality(size):
    codec = tiny_codec()
    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    for quality in range(codec.qualities.count):
        counts, symbols = codec.analyse(image, quality)
        data = codec.symbol_coder.encode_symbols(counts, symbols, quality)
        decoded_counts, decoded = codec.decode_symbols({"latent": data}, Geometry(*size), quality)
        mask = channel_mask(counts, codec.channels)
        assert np.array_equal(decoded_counts, counts)
        assert np.array_equal(decoded[mask], symbols[mask]) and np.all(decoded[~mask] == -1)
        assert codec.decode({"latent": data}, Geometry(*size), quality).shape == (3, *size)


def test_context_tiles_code_independently_and_round_trip(monkeypatch):
    monkeypatch.setattr(cpm_layout, "CONTEXT_TILE", 3)
    codec = tiny_codec()
    image = torch.randint(0, 256, (3, 61, 43), dtype=torch.uint8)
    counts, symbols = codec.analyse(image, 2)
    assert len(list(context_tiles(*counts.shape))) == 6  # 8 x 6 latents
    data = codec.symbol_coder.encode_symbols(counts, symbols, 2)
    _, decoded = codec.decode_symbols({"latent": data}, Geometry(61, 43), 2)
    mask = channel_mask(counts, codec.channels)
    assert np.array_equal(decoded[mask], symbols[mask])


def test_damaged_streams_are_refused():
    codec = tiny_codec()
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    data = codec.encode(image, 3)["latent"]
    with pytest.raises(FormatError):
        codec.decode_symbols({"latent": data[:-4]}, Geometry(40, 40), 3)
    with pytest.raises(FormatError):  # the same bytes cannot hold an image 50 times larger
        codec.decode_symbols({"latent": data}, Geometry(400, 200), 3)


def test_training_objective_reaches_every_part():
    torch.manual_seed(0)
    model = build(TINY).train()
    x = torch.rand(2, 3, 64, 64)
    quality = torch.tensor([0, 3])
    stats = model.rate_distortion(x, quality, model(x, quality))
    assert torch.isfinite(stats["loss"]) and 0 < float(stats["msssim"].detach()) <= 1
    stats["loss"].backward()
    for name in ("centres", "importance_bias", "log_gain", "log_inverse_gain", "context.layers.0.weight",
                 "encoder.0.weight", "decoder.0.weight"):
        gradient = dict(model.named_parameters())[name].grad
        assert gradient is not None and gradient.abs().sum() > 0, name


def test_masks_are_ceil_of_the_importance():
    importance = torch.tensor([0.0, 0.5, 1.0, 2.2, 6.0]).view(1, 1, 1, 5)
    masks = channel_masks(importance, 6)[0, :, 0]
    assert masks.sum(dim=0).tolist() == [0, 1, 1, 3, 6]


def test_skipping_unneeded_positions_changes_no_logit():
    codec = tiny_codec(seed=5)
    shape = (6, 6, 8)
    _, symbols = random_volume(shape, seed=4)
    mask = channel_mask(np.random.default_rng(4).integers(0, 3, shape[1:]), shape[0])  # as a real map
    known = np.flatnonzero(mask.ravel())

    def logits(prune: bool):
        volume = codec.symbol_coder.context.volume(shape, mask, 3)
        if not prune:
            volume.needed = [np.ones(mask.size, bool)] * (len(volume.needed) - 1) + [volume.needed[-1]]
        codec.symbol_coder.context.set_symbols(volume, known, symbols.ravel()[known])
        return codec.symbol_coder.context.all_logits(volume), volume

    pruned, volume = logits(True)
    assert volume.needed[0].sum() < mask.size  # something was skipped
    assert np.array_equal(pruned, logits(False)[0])


def test_training_estimate_of_the_importance_map_follows_the_coder():
    import constriction
    channels = 32
    rng = np.random.default_rng(0)
    smooth = np.clip(np.cumsum(rng.integers(-1, 2, (24, 40)), axis=1) // 3 + 12, 0, channels)
    estimate = float(importance_map_bits(torch.from_numpy(smooth)[None].float(), channels)[0])
    coder = constriction.stream.stack.AnsCoder()
    push_importance(coder, smooth, channels)
    real = 32 * len(coder.get_compressed())
    assert 0.8 * real < estimate < 1.1 * real
