"""The profile schema read with the standard library: key lookup, defaults, string coercion by
type, units, secrets and the cross-field rules (JSON Schema itself is checked in ``validate``)."""
from __future__ import annotations

import json
import math
import os
import re
import tomllib
from functools import lru_cache
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from ..agent.options import parse_duration, parse_size

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.json")
NAMED = {"pools": "pool", "caches": "cache", "worker_pools": "workers"}  # named -> default section
FREE = ("custom",)  # free-form sections: any key, any TOML value
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@lru_cache(maxsize=None)
def load_schema() -> Dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


class Field(NamedTuple):
    key: str  # dotted: "cache.max_entries", "caches.users.ttl", "custom.db_password"
    spec: Dict[str, Any]  # the schema node ({} for free-form keys)

    @property
    def types(self) -> Tuple[str, ...]:
        t = self.spec.get("type", ())
        return (t,) if isinstance(t, str) else tuple(t)

    @property
    def unit(self) -> Optional[str]:
        return self.spec.get("x-unit")

    @property
    def applies(self) -> str:
        return self.spec.get("x-applies", "app")

    @property
    def has_default(self) -> bool:
        return "default" in self.spec

    @property
    def default(self) -> Any:
        return self.spec.get("default")

    @property
    def free(self) -> bool:
        return not self.spec

    def type_label(self) -> str:
        """What a user should write: ``size``, ``duration``, ``integer``, ``lru|lfu|ttl``..."""
        if "enum" in self.spec:
            return "|".join(self.spec["enum"])
        if self.unit == "bytes":
            return "size"
        if self.unit == "seconds":
            return "duration"
        if self.free:
            return "any"
        return "/".join(self.types) or "table"


def _resolve_ref(node: Dict[str, Any]) -> Dict[str, Any]:
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = load_schema()
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return target


def lookup(key: str) -> Optional[Field]:
    """The schema node for a dotted key, or None when the schema has no such key. Named sections
    (``caches.NAME.ttl``) resolve through their ``$defs`` entry; ``custom.*`` is free-form."""
    parts = key.split(".")
    if not all(parts):
        return None
    if parts[0] in FREE:
        return Field(key, {}) if len(parts) > 1 else Field(key, load_schema()["properties"][parts[0]])
    node: Dict[str, Any] = load_schema()
    i = 0
    while i < len(parts):
        props = node.get("properties")
        if props is not None and parts[i] in props:
            node = _resolve_ref(props[parts[i]])
            i += 1
        elif isinstance(node.get("additionalProperties"), dict) and parts[i]:
            if not re.fullmatch(node.get("propertyNames", {}).get("pattern", ".*"), parts[i]):
                return None
            node = _resolve_ref(node["additionalProperties"])
            i += 1
        else:
            return None
    return Field(key, node)


def is_leaf(field: Field) -> bool:
    """A key that takes a value: not a section, a per-name table or ``custom`` itself."""
    return field.free or field.spec.get("type") != "object" or bool(field.spec.get("x-leaf"))


def leaves(node: Optional[Dict[str, Any]] = None, prefix: str = "") -> Iterator[Field]:
    """Every fixed leaf key of the schema (not the per-name sections nor ``custom``)."""
    node = load_schema() if node is None else node
    for name, sub in node.get("properties", {}).items():
        key = prefix + name
        if sub.get("type") == "object" and "properties" in sub and not sub.get("x-leaf"):
            yield from leaves(sub, key + ".")
        elif not (sub.get("type") == "object" and ("additionalProperties" in sub
                                                    or name in FREE)):
            yield Field(key, sub)


def defaults() -> Dict[str, Any]:
    """Flat ``{key: default}`` for every fixed leaf with a default."""
    return {f.key: f.default for f in leaves()
            if f.has_default and f.key != "environment" and f.default != {}}


def known_keys() -> List[str]:
    return [f.key for f in leaves()]


def suggest(key: str) -> str:
    """`` (did you mean cache.max_entries?)`` or ``""``."""
    import difflib  # noqa: PLC0415  (only for error messages; keeps agent start-up lean)

    candidates = known_keys()
    parts = key.split(".")
    if len(parts) >= 2 and parts[0] in NAMED:
        pattern = load_schema()["properties"][parts[0]].get("propertyNames", {}).get("pattern")
        if pattern and not re.fullmatch(pattern, parts[1]):  # caches."bad name".ttl
            return " (%r is not a valid name in %s: letters, digits, _ and - only)" % (
                parts[1], parts[0])
    if len(parts) >= 3 and parts[0] in NAMED:  # caches.users.max_entires -> caches.users.max_entries
        base = NAMED[parts[0]]  # compared without "caches.users.", which would match anything
        rest = ".".join(parts[2:])
        close = difflib.get_close_matches(
            rest, [k.split(".", 1)[1] for k in candidates
                   if k.startswith(base + ".") and k.split(".", 1)[1] != rest], n=1, cutoff=0.75)
        return " (did you mean %s.%s.%s?)" % (parts[0], parts[1], close[0]) if close else ""
    # never the key itself: it is unknown for another reason than its spelling
    close = difflib.get_close_matches(key, [c for c in candidates if c != key], n=1, cutoff=0.75)
    return " (did you mean %s?)" % close[0] if close else ""


def unknown_key_message(key: str) -> str:
    return "unknown key %r%s; keys of your own go under custom." % (key, suggest(key))


# -- values --------------------------------------------------------------------------------------
def coerce(field: Field, text: str) -> Any:
    """A typed value from a string (``--set`` and ``MEMTUI__SECTION__KEY``), by the schema's type.
    ValueError says what was expected."""
    spec = field.spec
    if field.free:
        try:
            return tomllib.loads("v = " + text)["v"]
        except tomllib.TOMLDecodeError:
            return text
    types = field.types
    stripped = text.strip()
    if "enum" in spec:
        if stripped not in spec["enum"]:
            raise ValueError("expected one of %s, got %r" % (", ".join(spec["enum"]), text))
        return stripped
    if field.unit == "bytes":
        if re.fullmatch(r"[0-9]+", stripped):
            return int(stripped)
        parse_size(stripped)  # raises ValueError naming the value and the accepted units
        return stripped
    if field.unit == "seconds":
        if re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", stripped):
            number = float(stripped)
            return int(number) if number.is_integer() and "." not in stripped else number
        parse_duration(stripped)
        return stripped
    if "boolean" in types:
        low = stripped.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("expected true or false, got %r" % text)
    if "integer" in types:
        try:
            return int(stripped)
        except ValueError:
            raise ValueError("expected an integer, got %r" % text) from None
    if "number" in types:
        if re.fullmatch(r"-?[0-9]+", stripped):
            return int(stripped)
        try:
            number = float(stripped)
        except ValueError:
            raise ValueError("expected a number, got %r" % text) from None
        if not math.isfinite(number):
            raise ValueError("expected a finite number, got %r" % text)
        return number
    if "array" in types or "object" in types:
        try:
            value = tomllib.loads("v = " + stripped)["v"]
        except tomllib.TOMLDecodeError:
            if "array" in types:  # "700,10,10"
                items = [s.strip() for s in stripped.strip("[]").split(",") if s.strip()]
                item = Field(field.key + "[]", spec.get("items", {}))
                return [coerce(item, s) for s in items] if item.spec else items
            raise ValueError("expected a TOML inline table such as {a = 1}, got %r" % text) from None
        want = list if "array" in types else dict
        if not isinstance(value, want):
            raise ValueError("expected %s, got %r" % ("a list" if want is list else "a table", text))
        return value
    return text  # strings


def magnitude(field: Field, value: Any) -> Any:
    """Sizes as bytes and durations as seconds (numbers pass through); ValueError on a bad unit."""
    if isinstance(value, bool) or value is None:
        return value
    if field.unit == "bytes":
        return parse_size(value)
    if field.unit == "seconds":
        return parse_duration(value)
    return value


def component_value(field: Field, value: Any) -> Any:
    """What a component's configure() gets: 0 for 'no bound' keys becomes None."""
    if field.spec.get("x-zero") == "none" and not isinstance(value, bool):
        try:
            if magnitude(field, value) == 0:
                return None
        except ValueError:
            return value  # the component reports the bad value itself
    return value


def is_secret(key: str) -> bool:
    field = lookup(key)
    if field is not None and field.spec.get("x-secret"):
        return True
    parts = key.split(".")
    if parts[0] in FREE and len(parts) > 1:
        pattern = load_schema()["properties"][parts[0]].get("x-secret-keys")
        return bool(pattern and re.search(pattern, parts[-1]))
    return False


MASK = "********"


# -- cross-field rules ---------------------------------------------------------------------------
def _num(field_key: str, value: Any) -> Optional[float]:
    field = lookup(field_key)
    try:
        number = magnitude(field, value) if field is not None else value
    except (ValueError, TypeError):
        return None  # a bad unit is the schema check's to report
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return None
    return number


def cross_field_problems(values: Dict[str, Any]) -> List[Tuple[Tuple[str, ...], str]]:
    """Rules JSON Schema cannot say, over a nested profile: ``[(path parts, message)]``. Each rule
    looks at the values present, so a file can be checked alone and a resolved profile as a whole."""
    out: List[Tuple[Tuple[str, ...], str]] = []

    def sections(default: str, named: str) -> Iterator[Tuple[Tuple[str, ...], Dict[str, Any]]]:
        base = values.get(default) if isinstance(values.get(default), dict) else {}
        yield (default,), base
        for name, over in (values.get(named) or {}).items() if isinstance(values.get(named),
                                                                          dict) else ():
            if isinstance(over, dict):
                yield (named, name), {**base, **over}

    for path, sec in sections("pool", "pools"):
        lo, mid, hi = (_num("pool." + k, sec.get(k)) for k in ("min_size", "default_size",
                                                               "max_size"))
        if lo is not None and hi is not None and lo > hi:
            out.append((path + ("min_size",), "min_size %g is above max_size %g" % (lo, hi)))
        if mid and hi is not None and mid > hi:
            out.append((path + ("default_size",),
                        "default_size %g is above max_size %g" % (mid, hi)))
        if mid and lo is not None and mid < lo:
            out.append((path + ("default_size",),
                        "default_size %g is below min_size %g (0 means min_size)" % (mid, lo)))
        down, up = (_num("pool." + k, sec.get(k)) for k in ("scale_down_threshold",
                                                            "scale_up_threshold"))
        if down is not None and up is not None and down >= up:
            out.append((path + ("scale_down_threshold",), "scale_down_threshold %g must be "
                        "below scale_up_threshold %g" % (down, up)))
    for path, sec in sections("workers", "worker_pools"):
        lo, hi = (_num("workers." + k, sec.get(k)) for k in ("min_workers", "max_workers"))
        if lo is not None and hi and lo > hi:
            out.append((path + ("min_workers",),
                        "min_workers %g is above max_workers %g" % (lo, hi)))
    for path, sec in sections("cache", "caches"):
        ttl = _num("cache.ttl", sec.get("ttl"))
        if sec.get("policy") == "ttl" and not ttl:
            out.append((path + ("policy",), "policy 'ttl' needs a ttl above 0"))
    alerts = values.get("alerts") if isinstance(values.get("alerts"), dict) else {}
    warn, crit = alerts.get("warning_pct"), alerts.get("critical_pct")
    if (isinstance(warn, (int, float)) and isinstance(crit, (int, float))
            and not isinstance(warn, bool) and not isinstance(crit, bool) and warn >= crit):
        out.append((("alerts", "warning_pct"),
                    "warning_pct %g must be below critical_pct %g" % (warn, crit)))
    return out


def range_text(spec: Mapping[str, Any]) -> str:
    """``0 … 1024``, ``> 0 … 86400``, ``0 … < 1``; empty when the key has no bounds."""
    lo = ("> %s" % spec["exclusiveMinimum"] if "exclusiveMinimum" in spec
          else str(spec.get("minimum", "")))
    hi = ("< %s" % spec["exclusiveMaximum"] if "exclusiveMaximum" in spec
          else str(spec.get("maximum", "")))
    return "%s … %s" % (lo, hi) if lo or hi else ""
