"""Output shared by the command groups: one console, JSON lines, one-sentence errors."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

from ..protocol import sentence  # noqa: F401 - re-exported for the command modules

EXIT_CHECK = 1  # a check failed, a value differs, a key is missing
EXIT_ERROR = 2  # usage or runtime error


def stdout_gone() -> None:
    """Our reader went away (`memtui … | head -1`): that is not an error, exit 0 quietly.

    fd 1 is pointed at /dev/null first so that the interpreter's final flush of what is still
    buffered does not fail again ("Exception ignored … BrokenPipeError") at shutdown.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno() if sys.stdout is not None else 1)
        os.close(devnull)
    except (OSError, ValueError):
        pass
    raise SystemExit(0)


class _Console(Console):
    def on_broken_pipe(self) -> None:  # rich's default exits with status 1
        self.quiet = True
        stdout_gone()


console = _Console()

class UsageFailure(Exception):
    """A bad value the user can fix; printed as one line, exit 2."""


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)``: TOML dates and times (valid in ``custom``) as ISO 8601 text;
    anything else JSON has no type for as its str()."""
    iso = getattr(obj, "isoformat", None)
    if callable(iso):
        return iso()
    return str(obj)


def print_json(obj: Any) -> None:
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        stdout_gone()
    try:
        sys.stdout.write(json.dumps(obj, separators=(",", ":"), default=json_default) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # ValueError: the file object itself was closed
        stdout_gone()
