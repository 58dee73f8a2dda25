"""Profile validation: JSON Schema (2020-12) plus unit ranges and the cross-field rules, reporting
every problem at once as ``SOURCE::$.json.path: message``.

``check_data`` checks one profile's content, ``check_file`` one file on disk, ``check_env`` an
environment as a whole (each file of its ``extends`` chain alone, then the resolved profile with
env vars and ``--set`` overrides, every problem attributed to whatever supplied the value; a
problem of a file it extends that the file does not have alone ends in ``(in ENV)``) and ``check_all`` every profile in a
directory. jsonschema is imported on first use only.
"""
from __future__ import annotations

import difflib
import os
import re
import tomllib
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import schema
from .errors import ConfigError, Problem
from .profiles import BOM_MESSAGE, ProfileStore, Resolved, nest

__all__ = ["check_all", "check_data", "check_env", "check_file", "problems_json"]

_ENV_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
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


def _schema_problems(data: Any) -> List[Tuple[Tuple[Any, ...], str]]:
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


def _path_key(path: Sequence[Any]) -> Tuple[Any, ...]:
    return tuple((1, "", p) if isinstance(p, int) else (0, str(p), 0) for p in path)


def _sorted(problems: Iterable[Problem]) -> List[Problem]:
    return sorted(problems, key=lambda p: _path_key(p.path))


def _unique(problems: Iterable[Problem]) -> List[Problem]:
    seen = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


# -- the API -------------------------------------------------------------------------------------
def check_data(data: Dict[str, Any], source: str) -> List[Problem]:
    """Every problem of one profile's content checked alone (schema, unit ranges, cross-field
    rules), sorted by path; *source* is what the messages name (the file's path)."""
    problems = [Problem(source, path, message) for path, message in _schema_problems(data)]
    if isinstance(data, dict):
        problems += [Problem(source, tuple(path), message)
                     for path, message in schema.cross_field_problems(data)]
    return _sorted(_unique(problems))


def _environment_problem(data: Any, path: str,
                         already: Iterable[Problem] = ()) -> List[Problem]:
    env = data.get("environment") if isinstance(data, dict) else None
    name = os.path.basename(path)
    stem = os.path.splitext(name)[0]
    if not isinstance(env, str) or env == stem:
        return []
    if any(p.path == ("environment",) for p in already):
        return []  # not a valid name at all: already said
    return [Problem(path, ("environment",),
                    "environment %r does not match the file name %s" % (env, name))]


def _check_content(data: Dict[str, Any], path: str) -> List[Problem]:
    problems = check_data(data, path)
    return _sorted(problems + _environment_problem(data, path, problems))


def check_file(path: str) -> List[Problem]:
    """One profile file on its own: TOML syntax, schema, units, cross-field rules and the
    ``environment`` name against the file name."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return [Problem(path, (), "no such file")]
    except IsADirectoryError:
        return [Problem(path, (), "is a directory, not a profile file")]
    except tomllib.TOMLDecodeError as exc:
        try:  # tomllib says "Invalid statement (at line 1, column 1)" about a byte-order mark
            with open(path, "rb") as fh:
                bom = fh.read(3) == b"\xef\xbb\xbf"
        except OSError:
            bom = False
        return [Problem(path, (), BOM_MESSAGE if bom else "not valid TOML: %s" % exc)]
    except UnicodeDecodeError as exc:
        return [Problem(path, (), "not valid TOML: not UTF-8 (%s)" % exc.reason)]
    except OSError as exc:
        return [Problem(path, (), exc.strerror or str(exc))]
    return _check_content(data, path)


def _layer_source(resolved: Resolved, path: Sequence[Any]) -> str:
    """Who supplied the value at *path*: a file path, ``env:MEMTUI__X__Y``, ``--set`` or
    ``schema default``."""
    key = ".".join(str(p) for p in path if not isinstance(p, int))
    layer = resolved.source(key) if key else None
    for _ in range(4):  # caches.users.ttl inherits cache.ttl: name where cache.ttl came from
        if layer is None or layer.kind != "inherited":
            break
        layer = resolved.source(layer.source)
    if layer is None and key:  # a section: whoever set something in it
        below = [c[0] for k, c in resolved.chains.items() if k.startswith(key + ".")]
        below.sort(key=lambda lay: lay.kind == "default")
        layer = below[0] if below else None
    if layer is None:
        return resolved.files[0] if resolved.files else "schema default"
    if layer.kind == "env":
        return "env:" + layer.source
    if layer.kind == "set":
        return "--set"
    if layer.kind == "default":
        return "schema default"
    return layer.source


def _without_bad_overrides(bad: Sequence[Problem], overrides: Sequence[str],
                           environ: Mapping[str, str]) -> Tuple[List[str], Dict[str, str]]:
    bad_vars = {p.source[4:] for p in bad if p.source.startswith("env:")}
    bad_keys = {".".join(str(x) for x in p.path) for p in bad if p.source == "--set"}
    good_sets = []
    for text in overrides:
        key, sep, _value = text.partition("=")
        if sep and key.strip() and key.strip() not in bad_keys:
            good_sets.append(text)
    return good_sets, {k: v for k, v in environ.items() if k not in bad_vars}


def check_env(store: ProfileStore, env: str, overrides: Sequence[str] = (),
              environ: Optional[Mapping[str, str]] = None) -> List[Problem]:
    """Every problem of one environment: each file of its extends chain alone, then the resolved
    profile (overrides and env vars included) where it adds something, each problem attributed
    to whatever supplied the value. Never raises ConfigError: its problems are returned."""
    return _check_env(store, env, overrides, environ, {})


def _check_env(store: ProfileStore, env: str, overrides: Sequence[str],
               environ: Optional[Mapping[str, str]],
               checked: Dict[str, List[Problem]]) -> List[Problem]:
    """check_env; *checked* keeps each file's own problems for the next env that extends it."""
    try:
        store.path(env)
    except ConfigError as exc:
        return exc.problems or [Problem(str(env), (), str(exc))]
    problems: List[Problem] = []
    files: List[str] = []
    missing: Optional[str] = None  # a file named by extends that does not exist
    name: Optional[str] = env
    while name is not None and store.path(name) not in files:  # each file alone
        try:
            data = store.read(name)
        except ConfigError as exc:
            if files and name not in store.overlay and not os.path.exists(store.path(name)):
                missing = store.path(name)
                problems.append(Problem(files[-1], ("extends",), "extends %r but %s does not "
                                        "exist (profiles here: %s)" % (
                                            name, os.path.basename(missing),
                                            ", ".join(store.names()) or "none")))
            else:
                problems += exc.problems
            break
        files.append(store.path(name))
        if files[-1] not in checked:
            checked[files[-1]] = _check_content(data, files[-1])
        problems += checked[files[-1]]
        parent = data.get("extends") if isinstance(data, dict) else None
        name = parent if isinstance(parent, str) and _ENV_NAME.match(parent) else None

    def add(new: Iterable[Problem], same_place: bool = False) -> None:
        """Problems not already reported (*same_place*: nothing yet at that source and path)."""
        def seen(p: Problem) -> Any:
            return (p.source, p.path) if same_place else p
        have = {seen(p) for p in problems}
        for p in new:
            if seen(p) not in have:
                have.add(seen(p))
                problems.append(p)

    try:
        store.chain(env)  # missing files, extends loops, a bad extends
    except ConfigError as exc:
        add([p for p in exc.problems if p.source != missing] if exc.problems else
            [Problem(files[0] if files else env, ("extends",), str(exc))], same_place=True)
        return _ordered(problems, files)

    environ = store.environ if environ is None else environ
    try:
        resolved = store.resolve(env, overrides, environ)
    except ConfigError as exc:
        add(exc.problems)
        good_sets, good_environ = _without_bad_overrides(exc.problems, overrides, environ)
        try:  # check the rest as if the bad overrides were not there
            resolved = store.resolve(env, good_sets, good_environ)
        except ConfigError:
            return _ordered(problems, files)

    values = nest(resolved.flat)
    found = [(tuple(path), message) for path, message in _schema_problems(values)]
    found += [(tuple(path), message) for path, message in schema.cross_field_problems(values)]
    said = set(problems)
    for path, message in found:
        problem = Problem(_layer_source(resolved, path), path, message)
        if problem not in said and problem.source in files[1:]:
            # a file this env extends (maybe shared by others) is fine alone but not here
            problem = problem._replace(message="%s (in %s)" % (message, env))
        add([problem])
    layer = resolved.source("environment")
    if (layer is not None and layer.kind == "file" and files and layer.source != files[0]
            and isinstance(layer.value, str) and layer.value != env):
        add([Problem(files[0], ("environment",),
                     "environment %r (from %s) does not match the file name %s; set "
                     "environment = %r here" % (layer.value, os.path.basename(layer.source),
                                                os.path.basename(files[0]), env))])
    return _ordered(problems, files)


def _ordered(problems: Iterable[Problem], files: Sequence[str]) -> List[Problem]:
    """The env's file first, then the files it extends, env vars, ``--set``, defaults; by path."""
    def rank(source: str) -> Tuple[int, int]:
        if source in files:
            return (0, list(files).index(source))
        if source.startswith("env:"):
            return (2, 0)
        if source == "--set":
            return (3, 0)
        if source == "schema default":
            return (4, 0)
        return (1, 0)  # another file: a missing one named by extends
    return sorted(_unique(problems), key=lambda p: (rank(p.source), _path_key(p.path)))


def check_all(store: ProfileStore) -> List[Problem]:
    """check_env for every profile in the store (bases included), each problem once."""
    out: List[Problem] = []
    checked: Dict[str, List[Problem]] = {}
    for name in store.names():
        out.extend(_check_env(store, name, (), None, checked))
    return _unique(out)


def problems_json(problems: Iterable[Problem]) -> List[Dict[str, str]]:
    return [p.to_dict() for p in problems]
