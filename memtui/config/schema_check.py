"""Profile data against the JSON Schema (2020-12) and the ``x-unit`` ranges, every error as a
sentence a person reads (sizes and durations in units); jsonschema is imported on first use only."""
from __future__ import annotations

import difflib
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

from . import schema

__all__ = ["human_bytes", "human_seconds", "schema_problems"]

_SIZE_HINT = "try 512MiB, 2GB or a number of bytes"
_DURATION_HINT = "try 250ms, 90s or 5m"
_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string",
               "boolean": "true or false", "array": "a list", "object": "a table",
               "null": "nothing"}
_validator_cache: List[Any] = []  # [the jsonschema validator], built on first use


# -- the validator -------------------------------------------------------------------------------
def _validator() -> Any:
    if _validator_cache:
        return _validator_cache[0]
    from jsonschema import Draft202012Validator, ValidationError, validators

    def additional_properties(validator: Any, ap: Any, instance: Any, node: Dict[str, Any]):
        """One error per unknown key, with the key in the error's path (the stock keyword gives
        one error for all of them, the keys only in its message)."""
        if not isinstance(instance, dict):
            return
        props = node.get("properties", {})
        patterns = node.get("patternProperties", {})
        extras = [k for k in instance
                  if k not in props and not any(re.search(p, k) for p in patterns)]
        if isinstance(ap, dict):
            for extra in extras:
                yield from validator.descend(instance[extra], ap, path=extra)
        elif ap is False:
            for extra in extras:
                yield ValidationError("unknown key %r" % extra, path=[extra])

    def required(validator: Any, names: Any, instance: Any, node: Dict[str, Any]):
        if isinstance(instance, dict):
            for name in names:
                if name not in instance:
                    yield ValidationError("required key missing", path=[name])

    def property_names(validator: Any, names_schema: Any, instance: Any, node: Dict[str, Any]):
        if isinstance(instance, dict):
            for name in instance:
                yield from validator.descend(name, names_schema, path=name)

    def x_unit(validator: Any, unit: Any, instance: Any, node: Dict[str, Any]):
        """Range checks for sizes and durations written as strings (``minimum``/``maximum`` look
        at numbers only). A string that does not parse is the ``pattern`` keyword's to report."""
        if unit not in ("bytes", "seconds") or not isinstance(instance, str):
            return
        try:
            value = _magnitude(unit, instance)
        except ValueError:
            if "pattern" not in node:
                yield ValidationError(_not_a_unit(unit, instance), validator="x-unit")
            return
        low, high = node.get("minimum"), node.get("maximum")
        above, below = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
        if low is not None and value < low:
            yield ValidationError("%s is below the minimum of %s"
                                  % (_describe(instance, unit), _human(low, unit)))
        if above is not None and value <= above:
            yield ValidationError(_not_beyond(instance, unit, "above", above))
        if high is not None and value > high:
            yield ValidationError("%s is above the maximum of %s"
                                  % (_describe(instance, unit), _human(high, unit)))
        if below is not None and value >= below:
            yield ValidationError(_not_beyond(instance, unit, "below", below))

    base = Draft202012Validator
    # TOML keeps 3 and 3.0 apart: an integer key takes ints only (JSON Schema would accept 3.0).
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
    cls = validators.extend(base, {"additionalProperties": additional_properties,
                                   "required": required, "propertyNames": property_names,
                                   "x-unit": x_unit}, type_checker=checker)
    _validator_cache.append(cls(schema.load_schema()))
    return _validator_cache[0]


# -- numbers a person reads ----------------------------------------------------------------------
def _magnitude(unit: str, value: Any) -> Any:
    return schema.magnitude(schema.Field("", {"x-unit": unit}), value)


def _trim(number: float, places: int = 2) -> str:
    text = "%.*f" % (places, number)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def human_bytes(n: float) -> str:
    """``1024TiB``, ``1.5GiB``, ``512 bytes``: in units a profile accepts."""
    for unit, size in (("TiB", 1024 ** 4), ("GiB", 1024 ** 3), ("MiB", 1024 ** 2),
                       ("KiB", 1024)):
        if abs(n) >= size:
            return _trim(n / size) + unit
    return "%s byte%s" % (_num(n), "" if n == 1 else "s")


def human_seconds(s: float) -> str:
    """``720h (30 days)``, ``1.5h``, ``5m``, ``90s``, ``250ms``: in units a profile accepts."""
    a = abs(s)
    if a >= 3600:
        text = _trim(s / 3600) + "h"
        if a >= 2 * 86400 and a % 86400 == 0:
            text += " (%d days)" % (s // 86400)
        return text
    if a >= 60 and a % 60 == 0:
        return "%dm" % (s // 60)
    if a >= 1 or a == 0:
        return _trim(s, 3) + "s"
    return _trim(s * 1000, 3) + "ms"


def _human(value: float, unit: Optional[str]) -> str:
    if unit == "bytes":
        return human_bytes(value)
    if unit == "seconds":
        return human_seconds(value)
    return _num(value)


def _describe(value: Any, unit: Optional[str]) -> str:
    """A value as written, then in plain units when that reads differently: ``3000GB (2.73TiB)``,
    ``0.001s (1ms)``, ``2000000 bytes (1.91MiB)``."""
    if unit not in ("bytes", "seconds") or isinstance(value, bool):
        return _num(value)
    written = value.strip() if isinstance(value, str) else (
        _num(value) + ("s" if unit == "seconds" else " bytes"))
    try:
        human = _human(_magnitude(unit, value), unit)
    except (ValueError, TypeError):
        return written
    same = written.replace(" ", "").lower() == human.split(" (")[0].replace(" ", "").lower()
    return written if same else "%s (%s)" % (written, human)


def _not_beyond(value: Any, unit: Optional[str], side: str, bound: Any) -> str:
    """An exclusive bound: ``0s must be above 0s``, ``100 must be below 100``."""
    return "%s must be %s %s" % (_describe(value, unit), side, _human(bound, unit))


def _not_a_unit(unit: str, value: Any) -> str:
    return ("%r is not a size (%s)" % (value, _SIZE_HINT) if unit == "bytes"
            else "%r is not a duration (%s)" % (value, _DURATION_HINT))


def _show(value: Any) -> str:
    """A TOML value in a message: strings quoted, true/false, tables named as such."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if hasattr(value, "isoformat"):
        return "a date/time (%s)" % value.isoformat()
    text = str(value) if isinstance(value, int) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(node: Dict[str, Any]) -> str:
    unit = node.get("x-unit")
    if unit == "bytes":
        return "a size (%s)" % _SIZE_HINT[4:]
    if unit == "seconds":
        return "a duration (%s)" % _DURATION_HINT[4:]
    if "enum" in node:
        return "one of " + ", ".join(str(v) for v in node["enum"])
    types = node.get("type", ())
    types = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_WORDS.get(t, t) for t in types) or "something else"


# -- jsonschema errors -> problems ----------------------------------------------------------------
def _message(error: Any, path: Tuple[Any, ...]) -> Optional[str]:
    """A readable message for one jsonschema error (None: drop it)."""
    kind, node, value, limit = error.validator, error.schema, error.instance, error.validator_value
    node = node if isinstance(node, dict) else {}
    unit = node.get("x-unit")
    if kind == "additionalProperties":
        return _unknown_key_message(path, node)
    if kind in ("required", "x-unit"):
        return error.message
    if kind == "type":
        return "expected %s, got %s" % (_expected(node), _show(value))
    if kind == "enum":
        return "expected one of %s, got %s" % (", ".join(str(v) for v in limit), _show(value))
    if kind == "const":
        return "expected %s, got %s" % (_show(limit), _show(value))
    if kind == "minimum":
        return "%s is below the minimum of %s" % (_describe(value, unit), _human(limit, unit))
    if kind == "maximum":
        return "%s is above the maximum of %s" % (_describe(value, unit), _human(limit, unit))
    if kind in ("exclusiveMinimum", "exclusiveMaximum"):
        return _not_beyond(value, unit, "above" if kind == "exclusiveMinimum" else "below", limit)
    if kind in ("minItems", "maxItems"):
        count = len(value) if isinstance(value, list) else 0
        if node.get("minItems") == node.get("maxItems"):
            return "expected exactly %d item%s, got %d" % (limit, "s"[:limit != 1], count)
        return "expected at %s %d item%s, got %d" % ("least" if kind == "minItems" else "most",
                                                     limit, "s"[:limit != 1], count)
    if kind == "pattern":
        if "propertyNames" in error.absolute_schema_path:
            return "%r is not a valid name (letters, digits, _ and - only)" % value
        if unit in ("bytes", "seconds"):
            low, above = node.get("minimum"), node.get("exclusiveMinimum")
            if value.strip().startswith("-") and (low is not None or above is not None):
                try:
                    _magnitude(unit, value.strip()[1:])
                    if low is not None:
                        return "%s is below the minimum of %s" % (value.strip(),
                                                                  _human(low, unit))
                    return _not_beyond(value.strip(), unit, "above", above)
                except ValueError:
                    pass
            return _not_a_unit(unit, value)
        if path and path[-1] == "extends":
            return "%r is not a profile name (letters, digits, _ and - only)" % value
        if path and path[-1] == "environment":
            return "%r is not an environment name (letters, digits, _ and - only)" % value
        return "%r does not match %s" % (value, limit)
    if kind in ("minLength", "maxLength"):
        return "%r is too %s (%s %d characters)" % (
            value, "short" if kind == "minLength" else "long",
            "at least" if kind == "minLength" else "at most", limit)
    return error.message


def _unknown_key_message(path: Tuple[Any, ...], node: Dict[str, Any]) -> str:
    key = str(path[-1])
    siblings = list(node.get("properties", {}))
    close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.75)
    if close:
        return "unknown key %r (did you mean %s?)" % (key, close[0])
    dotted = ".".join(str(p) for p in path)
    elsewhere = schema.suggest(dotted)
    if elsewhere:
        return "unknown key %r%s" % (key, elsewhere)
    if len(path) == 1:
        return "unknown key %r; keys of your own go under [custom]" % key
    return "unknown key %r (keys here: %s)" % (key, ", ".join(siblings))


def _flatten(errors: Iterable[Any]) -> Iterable[Any]:
    """anyOf/oneOf: the errors of the branches that had the right type, else the type errors."""
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and error.context:
            typed = [e for e in error.context if e.validator != "type"]
            if typed:
                yield from _flatten(typed)
                continue
        yield error


def schema_problems(data: Any) -> List[Tuple[Tuple[Any, ...], str]]:
    """Every schema problem of *data* as ``[(path parts, message)]``. A value of the wrong kind
    gets that one message (an enum's list of choices, else the type), not also its range."""
    found: Dict[Tuple[Any, ...], List[Tuple[str, str]]] = {}
    for error in _flatten(_validator().iter_errors(data)):
        path = tuple(error.absolute_path)
        message = _message(error, path)
        if message is None:
            continue
        entries = found.setdefault(path, [])
        if all(m != message for _k, m in entries):
            entries.append((error.validator, message))
    out = []
    for path, entries in found.items():
        kinds = {k for k, _m in entries}
        keep = "enum" if "enum" in kinds else "type" if "type" in kinds else None
        out.extend((path, message) for kind, message in entries if keep in (None, kind))
    return out
