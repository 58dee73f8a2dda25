"""Semantic comparison of resolved profiles: one row per key, one value per environment.

Values are compared by magnitude, so ``"1GiB"`` and ``1073741824`` are the same; what is shown is
what the profile says. Used by ``memtui config diff`` and the dashboard's profile pane.
"""
from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from . import schema
from .profiles import Layer, Resolved, masked


class _Missing:
    def __repr__(self) -> str:
        return "(unset)"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class DiffRow(NamedTuple):
    key: str
    values: Tuple[Any, ...]  # one per environment, MISSING where it has no value
    sources: Tuple[Optional[Layer], ...]
    differs: bool

    def set_somewhere(self) -> bool:
        """True when some environment sets the key (not only its schema default)."""
        return any(s is not None and s.kind != "default" for s in self.sources)


def comparable(key: str, value: Any) -> Any:
    """The value as compared: sizes in bytes, durations in seconds, numbers as floats."""
    if value is MISSING:
        return value
    field = schema.lookup(key)
    if field is not None:
        try:
            value = schema.magnitude(field, value)
        except (ValueError, TypeError):
            return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def keys_of(resolved: Sequence[Resolved]) -> List[str]:
    keys = set()
    for r in resolved:
        keys.update(r.chains)
    keys.discard("environment")
    return sorted(keys)


def compare(resolved: Sequence[Resolved], mask: bool = True) -> List[DiffRow]:
    """Every key any of *resolved* has, with each environment's effective value (a per-name key
    an environment does not set shows the section default it inherits)."""
    rows = []
    for key in keys_of(resolved):
        sources = tuple(r.source(key) for r in resolved)
        values = tuple(masked(key, s.value, mask) if s is not None else MISSING for s in sources)
        differs = len({repr(comparable(key, s.value)) if s is not None else "\0missing"
                       for s in sources}) > 1
        rows.append(DiffRow(key, values, sources, differs))
    return rows


def differs(rows: Sequence[DiffRow]) -> bool:
    return any(r.differs for r in rows)


def render_value(value: Any) -> str:
    """A value as TOML would write it (strings quoted), or ``(unset)``."""
    if value is MISSING:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(value, list):
        return "[%s]" % ", ".join(render_value(v) for v in value)
    if isinstance(value, dict):
        return "{%s}" % ", ".join("%s = %s" % (k, render_value(v)) for k, v in value.items())
    return str(value)


def unified(a: Resolved, b: Resolved, rows: Optional[Sequence[DiffRow]] = None,
            mask: bool = True, context: bool = False) -> str:
    """``diff -u`` style text of two environments' differing keys (all keys with *context*)."""
    if rows is None:
        rows = compare([a, b], mask)
    out = ["--- %s" % a.env, "+++ %s" % b.env]
    for row in rows:
        if row.differs:
            if row.values[0] is not MISSING:
                out.append("-%s = %s" % (row.key, render_value(row.values[0])))
            if row.values[1] is not MISSING:
                out.append("+%s = %s" % (row.key, render_value(row.values[1])))
        elif context:
            out.append(" %s = %s" % (row.key, render_value(row.values[0])))
    return "\n".join(out) + "\n"


def to_json(resolved: Sequence[Resolved], rows: Sequence[DiffRow]) -> Dict[str, Any]:
    envs = [r.env for r in resolved]

    def plain(v: Any) -> Any:
        return None if v is MISSING else v

    return {
        "envs": envs,
        "differs": differs(rows),
        "differing": [r.key for r in rows if r.differs],
        "keys": {r.key: {"values": dict(zip(envs, map(plain, r.values))),
                         "sources": {e: (s.label() if s is not None else None)
                                     for e, s in zip(envs, r.sources)},
                         "differs": r.differs} for r in rows},
    }
