"""Strict live settings for the building blocks: checks that name the bad key, and the
``settings()`` / ``preview()`` pair every block offers next to its ``configure()``.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Optional

from ..agent.options import parse_duration, parse_size


def check_keys(owner: str, values: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """ValueError naming the first key of *values* that is not in *accepted*."""
    accepted = tuple(accepted)
    for key in values:
        if key not in accepted:
            raise ValueError("%s: unknown setting %r (accepted: %s)"
                             % (owner, key, ", ".join(accepted)))


def check_int(owner: str, key: str, value: Any, low: int) -> int:
    """*value* if it is an int (not a bool) >= *low*; else ValueError naming *key*."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError("%s: %s must be an integer >= %d, got %r" % (owner, key, low, value))
    return int(value)


def check_duration(owner: str, key: str, value: Any, none_ok: bool = False) -> Optional[float]:
    """Seconds > 0 from a number or a string with a unit (None only when *none_ok*)."""
    if value is None and none_ok:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError("%s: %s: %s" % (owner, key, exc)) from None
    if seconds <= 0:
        raise ValueError("%s: %s must be a duration > 0%s, got %r"
                         % (owner, key, " or None" if none_ok else "", value))
    return seconds


def check_fraction(owner: str, key: str, value: Any) -> float:
    """A real number in [0, 1]; else ValueError naming *key*."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0.0 <= value <= 1.0:
        raise ValueError("%s: %s must be a number in [0, 1], got %r" % (owner, key, value))
    return float(value)


# -- the Cache's settings ------------------------------------------------------------------------
CACHE_POLICIES = ("lru", "lfu", "ttl")
CACHE_SETTINGS = ("policy", "max_entries", "max_bytes", "ttl", "tti")


def check_cache_settings(current: Mapping[str, Any], values: Mapping[str, Any]) -> Dict[str, Any]:
    """The whole new set of a Cache's settings: *current* overlaid with *values*, every value
    checked (sizes and durations parsed); ValueError, naming the key, on the first bad one."""
    unknown = set(values) - set(CACHE_SETTINGS)
    if unknown:
        raise ValueError("unknown cache settings %s (live settings: %s)"
                         % (sorted(unknown), ", ".join(CACHE_SETTINGS)))
    new = dict(current)
    for key, value in values.items():
        if value is None or key == "policy":
            new[key] = value
        elif key == "max_entries":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 <= value < 2 ** 63 or int(value) != value:
                raise ValueError("max_entries must be an integer >= 0, got %r" % (value,))
            new[key] = int(value)
        elif key == "max_bytes":
            new[key] = parse_size(value)
        else:
            new[key] = parse_duration(value)
            if new[key] <= 0:
                raise ValueError("%s must be > 0, got %r" % (key, value))
    if new["policy"] not in CACHE_POLICIES:
        raise ValueError("policy must be one of %s, got %r"
                         % (", ".join(CACHE_POLICIES), new["policy"]))
    if new["policy"] == "ttl" and new["ttl"] is None:
        raise ValueError("policy 'ttl' needs a ttl (e.g. ttl='5m')")
    return new


# -- settings() and preview() ------------------------------------------------------------------
class Tunable:
    """What a block with live settings offers besides ``configure(values)``. The block defines
    ``SETTINGS``, ``_current_settings()`` (its values now: seconds as numbers, None for "no
    bound") and ``_checked(values)`` (the whole new set, checked exactly as ``configure()``
    checks it, changing nothing)."""

    __slots__ = ()
    SETTINGS: tuple = ()

    def _current_settings(self) -> Dict[str, Any]:  # pragma: no cover - every block defines it
        raise NotImplementedError

    def _checked(self, values: Mapping[str, Any]) -> Dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def settings(self) -> Dict[str, Any]:
        """The current value of every key in SETTINGS (JSON-safe)."""
        return dict(self._current_settings())

    def preview(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """``{setting: new value}`` that ``configure(values)`` would change now. Raises the
        ValueError configure() would raise; changes nothing either way."""
        current = self._current_settings()
        return {k: v for k, v in self._checked(values).items() if current.get(k) != v}

    def _set(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """For blocks keeping each setting as an attribute: check, then set what changed."""
        changed = self.preview(values)
        for key, value in changed.items():
            setattr(self, key, value)
        return changed
