import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitstream.coders import TableCoder
from bitstream.container import FormatError
from bitstream.tables import TOTAL, IntegerTables, quantize_pmfs
from models.core.entropy import gaussian_pmfs


def small_tables() -> IntegerTables:
    pmfs = [np.array([0.1, 0.2, 0.4, 0.2, 0.1]), np.array([0.9, 0.1]), np.array([1.0])]
    return quantize_pmfs(np.array([-2, 0, 5]), pmfs)


def test_quantized_tables_sum_to_total_and_keep_every_symbol():
    tables = small_tables()
    assert (tables.counts.sum(axis=1) == TOTAL).all()
    for t in range(len(tables)):
        assert (tables.counts[t, : tables.lengths[t] + 1] >= 1).all()


@pytest.mark.parametrize("scale", [0.11, 0.5, 3.0, 40.0, 256.0])
def test_quantization_costs_little_over_the_float_pmf(scale):
    """Supports sized like the shipped Gaussian tables (about 5 sigma, tails via escape)."""
    offsets, rows = gaussian_pmfs(np.array([scale]))
    pmf = rows[0]
    tables = quantize_pmfs(offsets, rows)
    quantized = tables.counts[0, : len(pmf)] / TOTAL
    overhead_bits = float(np.sum(pmf * np.log2(pmf.clip(1e-300) / quantized)))
    entropy = float(-np.sum(pmf * np.log2(pmf.clip(1e-300))))
    assert overhead_bits < 0.002 + 0.003 * entropy


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**62), 2**62), st.integers(0, 2)), min_size=0, max_size=300))
def test_any_integers_round_trip_including_escapes(pairs):
    coder = TableCoder(small_tables())
    values = np.array([v for v, _ in pairs], dtype=np.int64)
    ids = np.array([t for _, t in pairs], dtype=np.int64)
    assert np.array_equal(coder.decode(coder.encode(values, ids), ids), values)


def test_code_length_is_close_to_the_ideal():
    rng = np.random.default_rng(0)
    pmf = np.array([0.05, 0.15, 0.6, 0.15, 0.05])
    tables = quantize_pmfs(np.array([-2]), [pmf])
    values = rng.choice(np.arange(-2, 3), size=20000, p=pmf)
    ids = np.zeros_like(values)
    coded_bits = 8 * len(TableCoder(tables).encode(values, ids))
    ideal = tables.bits(values, ids)
    assert ideal <= coded_bits <= ideal * 1.01 + 64


def test_leftover_data_is_reported():
    coder = TableCoder(small_tables())
    ids = np.array([0, 0, 1])
    data = coder.encode(np.array([0, 1, 0]), ids)
    with pytest.raises(FormatError):
        coder.decode(data, ids[:1])
    with pytest.raises(FormatError):
        coder.decode(data[:-1], ids)
