"""The `lic` executable. Ctrl-C at any moment, even while torch loads, ends it with one line and
exit status 130; this module imports nothing heavy before it can say so."""
from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as command_line

        command_line(prog_name="lic")
    except KeyboardInterrupt:
        sys.stderr.write("lic: interrupted\n")
        sys.exit(130)
