"""The config layer's one exception family: every problem found, each as ``SOURCE::$.path: message``."""
from __future__ import annotations

from typing import Iterable, List, NamedTuple, Sequence, Union

PathPart = Union[str, int]


def json_path(parts: Sequence[PathPart]) -> str:
    """``$.cache.max_entries``, ``$.tuner.gc_thresholds[0]``, ``$.caches['my cache']``."""
    out = "$"
    for p in parts:
        if isinstance(p, int):
            out += "[%d]" % p
        elif p and all(c.isalnum() or c in "_-" for c in p):
            out += "." + p
        else:
            out += "[%r]" % p
    return out


class Problem(NamedTuple):
    source: str  # a file path, ``env:MEMTUI__X__Y``, ``--set`` or ``agent``
    path: tuple  # JSON path parts
    message: str

    def __str__(self) -> str:
        return "%s::%s: %s" % (self.source, json_path(self.path), self.message)

    def to_dict(self) -> dict:
        return {"source": self.source, "path": json_path(self.path), "message": self.message}


class ConfigError(Exception):
    """A profile, override or write that cannot be used; ``problems`` lists every one found."""

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.problems: List[Problem] = list(problems)

    def lines(self) -> List[str]:
        return [str(p) for p in self.problems] or [str(self)]


class WriteError(ConfigError):
    """A write that did not happen; the file on disk is exactly as it was."""
