"""Data-parallel training on torch.distributed: one process per CPU socket or GPU, started by
`torchrun`, which sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address.

Every rank builds the same model and steps on its own crops; DistributedDataParallel averages the
gradients, so the replicas stay identical. Rank 0 alone reads checkpoints and --init weights
(and hands their contents to the others, so the other machines need no copy), logs, validates,
checkpoints and exports. Decisions that must agree (the wall-clock budget, hence the learning
rate and when to stop) are rank 0's, broadcast every step.

A rank that fails exits with a one-line error naming itself; torchrun then stops the others.
A rank that hangs (a lost machine) makes the others' collectives time out after TIMEOUT.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

TIMEOUT = timedelta(minutes=30)  # longer than any validation or checkpoint pause of rank 0
T = TypeVar("T")


class RankFailed(RuntimeError):
    """Raised on the other ranks when what rank 0 did for all of them failed (it reports why)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in a run: world_size 1 is an ordinary single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


SINGLE = Ranks()


def one_line_failures(ranks: Ranks) -> tuple[type[Exception], ...]:
    """What a distributed run reports in one line: a lost peer or a timed-out collective
    (torch raises RuntimeError subclasses for both), or replicas that drifted apart."""
    return (RuntimeError,) if ranks.distributed else ()


def from_environment() -> Ranks:
    """The ranks torchrun (or any launcher using its variables) gave this process."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK {rank} is outside WORLD_SIZE {world_size}")
    return Ranks(rank, world_size, local_rank)


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group (gloo on CPUs, NCCL on CUDA); returns this rank's device."""
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if ranks.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world_size, timeout=TIMEOUT)
    return device


def finish(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """The module itself, or across ranks a DistributedDataParallel of it: rank 0's parameters are
    copied to the others now, and every backward pass averages the gradients of all ranks."""
    if not ranks.distributed:
        return module
    # A channels-last weight with one input channel has two valid stride layouts; its gradient and
    # DDP's bucket may pick different ones, which costs a copy, not correctness.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def on_main(ranks: Ranks, work: Callable[[], T]) -> T:
    """Run `work` on rank 0 and give its result (a picklable object) to every rank; if it raises,
    rank 0 re-raises it and the others raise RankFailed, instead of waiting for it forever."""
    if not ranks.distributed:
        return work()
    message: list = [None]
    if ranks.is_main:
        try:
            message = [("ok", work())]
        except Exception as error:
            message = [("error", str(error))]
            dist.broadcast_object_list(message, src=0)
            raise
    dist.broadcast_object_list(message, src=0)
    status, value = message[0]
    if status == "error":
        raise RankFailed(f"rank 0 failed: {value}")
    return value


def agree(ranks: Ranks, value: float, device: torch.device) -> float:
    """Rank 0's value of a number every rank measures differently (e.g. elapsed seconds)."""
    if not ranks.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def parameters_agree(ranks: Ranks, module: nn.Module, device: torch.device) -> bool:
    """Whether every rank holds the same parameters (bit for bit): a replica that drifted would
    make the exported file depend on which rank wrote it."""
    if not ranks.distributed:
        return True
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()])
        # Two independent sums catch a permutation as well as a changed value.
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
        local = torch.stack([flat.sum(), (flat * weights).sum()]).to(device)
    gathered = [torch.empty_like(local) for _ in range(ranks.world_size)]
    dist.all_gather(gathered, local)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])
