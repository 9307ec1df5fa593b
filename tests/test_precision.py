"""Choosing the arithmetic of the transforms."""
from models.core import precision


def test_kernels_limited_below_avx512_are_not_native_bf16(monkeypatch):
    """With oneDNN capped at AVX2 (a container setting, or how benchmarks emulate older CPUs)
    bf16 would be emulated, dozens of times slower than fp32: auto must choose fp32 then."""
    native = precision.cpu_has_native_bf16.__wrapped__
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not native()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    assert not native()
