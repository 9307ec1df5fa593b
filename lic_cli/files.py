"""Input/output plumbing for batch and pipeline use: '-' for stdio, atomic writes, no silent overwrites."""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

STDIO = "-"
MAX_INPUT_BYTES = 1 << 30


class PlanError(ValueError):
    """The requested inputs/outputs cannot be honoured; the message is one line."""


@dataclass(frozen=True)
class Job:
    source: str  # a path or '-'
    target: str  # a path or '-'


def plan_jobs(inputs: tuple[str, ...], output: str | None, suffix: str, force: bool) -> list[Job]:
    """Map inputs to outputs. -o is a file for one input, a directory for several, '-' for stdout."""
    if not inputs:
        raise PlanError("no input files given")
    if STDIO in inputs and len(inputs) > 1:
        raise PlanError("'-' (standard input) cannot be combined with other inputs")
    if output == STDIO and len(inputs) > 1:
        raise PlanError("only a single input can be written to standard output")
    jobs = [Job(source, _target_for(source, output, suffix, several=len(inputs) > 1)) for source in inputs]
    seen: dict[str, str] = {}
    for job in jobs:
        if job.target == STDIO:
            if sys.stdout.isatty():
                raise PlanError("refusing to write binary data to a terminal: redirect standard output or use -o FILE")
            continue
        key = os.path.realpath(job.target)
        if key in seen:
            raise PlanError(f"{seen[key]} and {job.source} would both be written to {job.target}")
        if os.path.realpath(job.source) == key:
            raise PlanError(f"{job.source}: output would overwrite the input")
        seen[key] = job.source
        if not force and os.path.exists(job.target):
            raise PlanError(f"{job.target} exists (use --force to overwrite)")
    return jobs


def _target_for(source: str, output: str | None, suffix: str, several: bool) -> str:
    if output == STDIO or (output is None and source == STDIO):
        return STDIO
    name = ("stdin" if source == STDIO else Path(source).stem) + suffix
    if output is None:
        return str(Path(source).with_name(name))
    if several or os.path.isdir(output) or output.endswith(os.sep):
        return str(Path(output) / name)  # the folder is made when the first output is written
    return output


def read_input(source: str) -> bytes:
    """All bytes of a file, a pipe or standard input, refusing more than MAX_INPUT_BYTES."""
    if source == STDIO:
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    else:
        path = Path(source)
        if path.is_dir():
            raise PlanError("is a directory")
        if not path.exists():
            raise PlanError("no such file")
        if path.is_file() and path.stat().st_size > MAX_INPUT_BYTES:
            raise PlanError("larger than the 1 GiB input limit")
        with path.open("rb") as handle:  # also pipes and devices, whose size is unknown up front
            data = handle.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise PlanError("larger than the 1 GiB input limit")
    return data


def write_output(target: str, data: bytes) -> None:
    """Write all bytes or nothing: a temporary file in the target's directory, then rename."""
    if target == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as error:
        raise OSError(error.errno, error.strerror, target) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # like cp or cwebp; mkstemp would leave 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, target) from None  # name the output, not the temporary
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
