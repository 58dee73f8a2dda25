"""The agent's settings as one immutable object, built from keywords or from ``MEMTUI_AGENT_OPTIONS``.

Sizes accept units (``"512MiB"``, ``"1.5GB"``) and durations accept ``"90s"``, ``"250ms"``, ``"2m"``.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
from typing import Any, Dict, Mapping, Optional

ENV_OPTIONS = "MEMTUI_AGENT_OPTIONS"

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
    "t": 1000 ** 4, "tb": 1000 ** 4,
    "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4,
}
_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_NUM_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


def _parse_unit(value: Any, units: Dict[str, float], what: str, examples: str) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a %s, got %r" % (what, value))
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError("%s must be a finite number >= 0, got %r" % (what, value))
        return value
    m = _NUM_UNIT.match(str(value))
    if not m or m.group(2).lower() not in units:
        raise ValueError("not a %s: %r (try %s)" % (what, value, examples))
    result = float(m.group(1)) * units[m.group(2).lower()]
    if not math.isfinite(result):
        raise ValueError("%s out of range: %r" % (what, value))
    return result


def parse_size(value: Any) -> int:
    """Bytes from an int or a string with a unit; ValueError names the bad value."""
    return int(_parse_unit(value, _SIZE_UNITS, "size", "512MiB, 2GB or a number of bytes"))


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string with a unit."""
    return float(_parse_unit(value, _DURATION_UNITS, "duration", "250ms, 90s or 2m"))


# Uncatchable, or raised by a fault in the process itself: a Python handler there would loop.
_UNUSABLE = {getattr(signal, n) for n in ("SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS", "SIGFPE",
                                          "SIGILL") if hasattr(signal, n)}


def parse_signal(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("not a signal: %r" % value)
    if isinstance(value, int):
        sig = int(value)
    else:
        name = str(value).upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        found = getattr(signal, name, None)
        if not isinstance(found, int):
            raise ValueError("not a signal: %r" % value)
        sig = int(found)
    if sig in _UNUSABLE or not 0 < sig < getattr(signal, "NSIG", 65):
        raise ValueError("signal %r cannot activate the agent; use SIGUSR2 or SIGUSR1" % value)
    return sig


# name -> default. A plain slotted class rather than a dataclass: `dataclasses` imports inspect,
# ast, dis and tokenize (~20 modules, ~10 ms) into every host at start-up (benchmarks/startup).
DEFAULTS: Dict[str, Any] = {
    "env": "dev",
    "interval": 1.0,  # seconds between samples
    "history": 600,  # samples kept in the ring buffer
    "component_history": 120,  # samples that also keep every component's stats
    "events": 1000,  # events kept
    "memory_limit": None,  # bytes; None: cgroup limit, else machine RAM
    "warning_pct": 80.0,
    "critical_pct": 95.0,
    "hysteresis_pct": 5.0,  # an alert clears this many points below its threshold
    "trace": False,  # start tracemalloc with the agent
    "trace_frames": 1,
    "runtime_dir": None,
    "socket_path": None,
    "serve": True,
    "max_clients": 32,
    "request_timeout": 10.0,  # a started request frame must complete within this
    "write_timeout": 10.0,  # a reply must make progress within this
    "idle_timeout": 600.0,
    "stats_max_age": 0.1,  # `stats` requests within this window share one sample
    "mutations_burst": 5,  # mutating ops: token bucket size...
    "mutations_per_s": 0.5,  # ...and refill rate
    "signal": int(getattr(signal, "SIGUSR2", 12)),
}
_TYPES = {"memory_limit": int, "runtime_dir": str, "socket_path": str}


class AgentOptions:
    """Immutable agent settings; ``AgentOptions(interval=0.5)``, ``.replace(...)``, ``.merged(...)``."""

    __slots__ = tuple(DEFAULTS)
    env: str
    interval: float
    history: int
    component_history: int
    events: int
    memory_limit: Optional[int]
    warning_pct: float
    critical_pct: float
    hysteresis_pct: float
    trace: bool
    trace_frames: int
    runtime_dir: Optional[str]
    socket_path: Optional[str]
    serve: bool
    max_clients: int
    request_timeout: float
    write_timeout: float
    idle_timeout: float
    stats_max_age: float
    mutations_burst: int
    mutations_per_s: float
    signal: int

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(DEFAULTS))
        if unknown:
            raise TypeError("unknown agent option %s" % ", ".join(repr(u) for u in unknown))
        for key, default in DEFAULTS.items():
            object.__setattr__(self, key, values.get(key, default))

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("AgentOptions is immutable; use .replace(%s=...)" % key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AgentOptions) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self.to_json().items())))

    def __repr__(self) -> str:
        changed = ", ".join("%s=%r" % (k, getattr(self, k)) for k in DEFAULTS
                            if getattr(self, k) != DEFAULTS[k])
        return "AgentOptions(%s)" % changed

    _CONVERT = {
        "interval": parse_duration, "request_timeout": parse_duration,
        "write_timeout": parse_duration, "idle_timeout": parse_duration,
        "stats_max_age": parse_duration,
        "memory_limit": lambda v: None if v in (None, "", 0) else parse_size(v),
        "signal": parse_signal,
    }

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "AgentOptions":
        """Build from a mapping; unknown keys and bad values raise ValueError naming the key."""
        kwargs: Dict[str, Any] = {}
        for key, raw in values.items():
            if key not in DEFAULTS:
                raise ValueError("unknown agent option %r" % key)
            conv = cls._CONVERT.get(key)
            try:
                if conv is not None:
                    value = conv(raw)
                elif raw is None:
                    value = None
                else:
                    default = DEFAULTS[key]
                    typ = type(default) if default is not None else _TYPES.get(key, str)
                    if typ is bool and not isinstance(raw, bool):
                        raise ValueError("expected true or false")
                    value = typ(raw)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError("agent option %s: %s" % (key, exc)) from None
            kwargs[key] = value
        opts = cls(**kwargs)
        opts.check()
        return opts

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "AgentOptions":
        data = env_options(os.environ if environ is None else environ)
        return cls.from_mapping(data) if data else cls()

    def merged(self, values: Mapping[str, Any]) -> "AgentOptions":
        base = self.to_json()
        base.update(values)
        return type(self).from_mapping(base)

    def check(self) -> None:
        for name in DEFAULTS:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("agent option %s must be a finite number, got %r" % (name, value))
        if self.interval < 0.01:
            raise ValueError("agent option interval must be at least 10ms")
        if self.history < 2 or self.component_history < 0 or self.events < 1:
            raise ValueError("agent options history >= 2, component_history >= 0, events >= 1")
        if not 0 < self.warning_pct < self.critical_pct:
            raise ValueError("agent options need 0 < warning_pct < critical_pct")
        if not 1 <= self.trace_frames <= 100:
            raise ValueError("agent option trace_frames must be between 1 and 100")
        if self.max_clients < 1:
            raise ValueError("agent option max_clients must be >= 1")

    def replace(self, **changes: Any) -> "AgentOptions":
        values = self.to_json()
        values.update(changes)
        return type(self)(**values)

    def to_json(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in DEFAULTS}


def env_options(environ: Mapping[str, str]) -> Dict[str, Any]:
    """``MEMTUI_AGENT_OPTIONS`` as given (values not yet parsed), ``{}`` when unset."""
    raw = environ.get(ENV_OPTIONS)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("%s is not valid JSON" % ENV_OPTIONS) from None
    if not isinstance(data, dict):
        raise ValueError("%s must be a JSON object" % ENV_OPTIONS)
    return data
