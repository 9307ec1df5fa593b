"""Which arithmetic the transforms use: bf16 where the hardware does it natively, else fp32.

Only the analysis/synthesis transforms are affected. Everything that selects probabilities
(hyper-synthesis, tables) is exact fixed point, so precision never changes what can be decoded,
only the decoded pixels by rounding-level amounts.

The transforms that make decoded pixels also run on a fixed number of CPU threads: oneDNN splits
some convolution reductions between threads, so their rounding depends on the thread count.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
from pathlib import Path

import torch

CHOICES = ("auto", "bf16", "fp32")

from ..defaults import SYNTHESIS_THREADS


@cache
def cpu_has_native_bf16() -> bool:
    """Whether bf16 arithmetic runs natively here: the CPU has AVX512-BF16 or AMX, and neither
    ATEN_CPU_CAPABILITY nor ONEDNN_MAX_CPU_ISA limits the kernels below it (limited kernels
    emulate bf16, dozens of times slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    if not (" amx_bf16" in flags or " avx512_bf16" in flags):
        return False
    if "AVX512" not in torch.backends.cpu.get_cpu_capability().upper():
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return isa in ("ALL", "DEFAULT") or any(name in isa for name in ("BF16", "AMX", "FP16", "AVX10"))


def resolve(precision: str, device: torch.device | str) -> str:
    """'bf16' or 'fp32' for a requested precision ('auto', 'bf16', 'fp32') on a device."""
    if precision not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(precision: str, device: torch.device | str):
    """A context that runs eligible ops in bf16 when precision is 'bf16'."""
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def synthesis_threads(device: torch.device | str) -> Iterator[None]:
    """Run the enclosed CPU kernels on SYNTHESIS_THREADS threads, so that decoded pixels do not
    depend on the caller's thread count; the caller's count is restored afterwards."""
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(SYNTHESIS_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def select_device(name: str) -> torch.device:
    """'auto' (CUDA when present, else the CPU), 'cpu' or 'cuda'; ValueError when CUDA is asked
    for and absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return torch.device(name)
