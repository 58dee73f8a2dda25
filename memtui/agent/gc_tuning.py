"""The profile's ``[tuner]`` section as the agent applies it: gc thresholds and a one-time
``gc.freeze()``. Checked strictly; applying reports each change as ``{key: [old, new]}``.
"""
from __future__ import annotations

import gc
from typing import Any, Dict, List, Mapping, Tuple

KEYS = ("enabled", "gc_thresholds", "gc_freeze")
_C_INT_MAX = 2 ** 31 - 1
# gc.freeze() moves every object alive now into the permanent generation; doing it again later
# would also freeze what the app allocated since. Once per process (a forked child inherits it).
_FROZEN_BY_US = False


def check(section: Any, where: str = "tuner") -> Dict[str, Any]:
    """The section with only the keys the agent acts on, each checked; ValueError names the key."""
    if not isinstance(section, Mapping):
        raise ValueError("%s must be a table, got %r" % (where, section))
    unknown = sorted(set(section) - set(KEYS))
    if unknown:
        raise ValueError("%s: unknown key %s (the agent acts on %s)"
                         % (where, ", ".join(repr(str(k)) for k in unknown), ", ".join(KEYS)))
    out: Dict[str, Any] = {}
    for key in ("enabled", "gc_freeze"):
        if key in section:
            if not isinstance(section[key], bool):
                raise ValueError("%s.%s must be true or false, got %r" % (where, key, section[key]))
            out[key] = section[key]
    if "gc_thresholds" in section:
        value = section["gc_thresholds"]
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 3 or any(
                isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _C_INT_MAX
                for v in value):
            raise ValueError("%s.gc_thresholds must be a list of 1 to 3 integers >= 0 "
                             "(generation 0, 1, 2), got %r" % (where, value))
        out["gc_thresholds"] = [int(v) for v in value]
    return out


def plan(section: Mapping[str, Any]) -> Dict[str, List[Any]]:
    """``{key: [old, new]}`` that :func:`apply` would change now (*section* already checked)."""
    if section.get("enabled") is False:
        return {}
    out: Dict[str, List[Any]] = {}
    wanted = section.get("gc_thresholds")
    if wanted:
        old = list(gc.get_threshold())
        new = list(wanted) + old[len(wanted):]
        if new != old:
            out["gc_thresholds"] = [old, new]
    if section.get("gc_freeze") and not _FROZEN_BY_US:
        out["gc_freeze"] = [False, True]
    return out


def apply(section: Mapping[str, Any]) -> Tuple[Dict[str, List[Any]], int]:
    """Apply a checked section: ``({key: [old, new]}, objects frozen now)``."""
    global _FROZEN_BY_US
    changes = plan(section)
    frozen = 0
    if "gc_thresholds" in changes:
        gc.set_threshold(*changes["gc_thresholds"][1])
    if "gc_freeze" in changes:
        before = gc.get_freeze_count()
        gc.freeze()
        _FROZEN_BY_US = True
        frozen = gc.get_freeze_count() - before
    return changes, frozen
