"""The agent's profiler/alerts settings: their keys and defaults, and how they are parsed and
checked (``read``) and compared (``changes``)."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from .options import parse_duration, parse_size

# The profile keys the agent acts on, with their defaults: equal to memtui/config/schema.json's
# (tests/agent/test_monitor.py reads the schema to keep them in sync). profiles.component_settings
# hands the agent these keys when a profile sets them.
DEFAULTS: Dict[str, Any] = {
    "profiler.output_dir": "",
    "profiler.memory_threshold": 0,
    "profiler.gc_threshold": "100ms",
    "profiler.auto_snapshot": False,
    "profiler.snapshot_interval": "10m",
    "profiler.snapshot_cooldown": "5m",
    "profiler.retention": 20,
    "alerts.cache_hit_rate_warning": 0.6,
    "alerts.pool_saturation": 0.9,
    "alerts.queue_backlog": 0.8,
    "alerts.pressure_actions.enabled": True,
    "alerts.pressure_actions.shrink_fraction": 0.25,
    "alerts.pressure_actions.gc_at_critical": True,
    "alerts.pressure_actions.throttle_at_critical": True,
}
SETTING_KEYS = tuple(DEFAULTS)
# Keys of those sections that are agent options (config.apply takes them under "options").
OPTION_KEYS = ("profiler.enabled", "profiler.interval", "profiler.history", "profiler.trace",
               "profiler.tracemalloc_frames", "alerts.memory_limit", "alerts.warning_pct",
               "alerts.critical_pct", "alerts.hysteresis_pct")
MIN_SNAPSHOT_INTERVAL = 0.1  # seconds; below this periodic snapshots would never stop


class MonitorSettings(NamedTuple):
    """The profiler and alerts keys, parsed: sizes in bytes, durations in seconds."""
    output_dir: Optional[str]  # None: the snapshots module's default directory
    memory_threshold: int  # 0: off
    gc_threshold: float  # 0: off
    auto_snapshot: bool
    snapshot_interval: float
    snapshot_cooldown: float
    retention: int
    cache_hit_rate_warning: float
    pool_saturation: float
    queue_backlog: float
    pressure_enabled: bool
    shrink_fraction: float
    gc_at_critical: bool
    throttle_at_critical: bool


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError("must be a fraction between 0 and 1")
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be an integer >= 1")
    return value


def _directory(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        raise ValueError("must be a directory path (empty: the default)")
    return value or None


def _interval(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds < MIN_SNAPSHOT_INTERVAL:
        raise ValueError("must be at least %gs" % MIN_SNAPSHOT_INTERVAL)
    return seconds


_PARSE = {
    "profiler.output_dir": _directory, "profiler.memory_threshold": parse_size,
    "profiler.gc_threshold": parse_duration, "profiler.auto_snapshot": _flag,
    "profiler.snapshot_interval": _interval, "profiler.snapshot_cooldown": parse_duration,
    "profiler.retention": _count, "alerts.cache_hit_rate_warning": _fraction,
    "alerts.pool_saturation": _fraction, "alerts.queue_backlog": _fraction,
    "alerts.pressure_actions.enabled": _flag, "alerts.pressure_actions.shrink_fraction": _fraction,
    "alerts.pressure_actions.gc_at_critical": _flag,
    "alerts.pressure_actions.throttle_at_critical": _flag,
}


def flat_values(settings: Mapping[str, Any]) -> Dict[str, Any]:
    """The dotted profiler/alerts keys present in the settings sections (as given)."""
    out: Dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, "%s.%s" % (prefix, key))
        else:
            out[prefix] = node

    for section in ("profiler", "alerts"):
        if section in settings:
            walk(settings[section], section)
    return out


def read(settings: Mapping[str, Any]) -> Tuple[MonitorSettings, Dict[str, Any], List[str]]:
    """(parsed settings, {dotted key: effective value as given}, problems). A bad or unknown key
    is a problem and leaves its default in place: the agent runs on, config.apply refuses."""
    effective = dict(DEFAULTS)
    problems: List[str] = []
    for key, value in flat_values(settings).items():
        if key in _PARSE:
            try:
                _PARSE[key](value)
            except (TypeError, ValueError) as exc:
                problems.append("%s: %s, got %r" % (key, str(exc).rstrip("."), value))
                continue
            effective[key] = value
        elif key == "alerts.pressure_actions":
            problems.append("%s: must be a table of %s, got %r" % (key, ", ".join(
                k.rsplit(".", 1)[1] for k in SETTING_KEYS if k.startswith(key + ".")), value))
        elif key in OPTION_KEYS:
            problems.append("%s is an agent option: pass it under 'options' (%s)"
                            % (key, key.split(".", 1)[1]))
        else:
            problems.append("%s: unknown key; the agent takes %s" % (key, ", ".join(SETTING_KEYS)))
    v = {k: _PARSE[k](effective[k]) for k in SETTING_KEYS}
    parsed = MonitorSettings(
        v["profiler.output_dir"], v["profiler.memory_threshold"], v["profiler.gc_threshold"],
        v["profiler.auto_snapshot"], v["profiler.snapshot_interval"],
        v["profiler.snapshot_cooldown"], v["profiler.retention"],
        v["alerts.cache_hit_rate_warning"], v["alerts.pool_saturation"], v["alerts.queue_backlog"],
        v["alerts.pressure_actions.enabled"], v["alerts.pressure_actions.shrink_fraction"],
        v["alerts.pressure_actions.gc_at_critical"],
        v["alerts.pressure_actions.throttle_at_critical"])
    return parsed, effective, problems


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Dict[str, List[Any]]:
    """``{dotted key: [old, new]}`` of the effective profiler/alerts values two settings give."""
    a, b = read(old)[1], read(new)[1]
    return {k: [a[k], b[k]] for k in SETTING_KEYS if a[k] != b[k]}
