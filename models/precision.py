"""Which arithmetic the transforms use: bf16 where the hardware does it natively, else fp32.

Only the analysis/synthesis transforms are affected. Everything that selects probabilities
(hyper-synthesis, tables) is exact fixed point, so precision never changes what can be decoded,
only the decoded pixels by rounding-level amounts.
"""
from __future__ import annotations

from contextlib import nullcontext
from functools import cache
from pathlib import Path

import torch

CHOICES = ("auto", "bf16", "fp32")


@cache
def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


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
