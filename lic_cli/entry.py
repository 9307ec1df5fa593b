"""The `lic` executable. Ctrl-C at any moment, even while torch loads, ends it with one line and
exit status 130; this module imports nothing heavy before it can say so."""
from __future__ import annotations

import os
import sys


def main() -> None:
    try:
        from .cli import main as command_line

        command_line(prog_name="lic")
    except KeyboardInterrupt:
        sys.stderr.write("lic: interrupted\n")
        code = 130
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code is not None and not isinstance(done.code, int):
            sys.stderr.write(f"{done.code}\n")
    else:
        code = 0
    _exit_now(code)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown: every output is already written and closed, and
    unloading torch's libraries is a noticeable share of a small file's decode."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
    os._exit(code)
