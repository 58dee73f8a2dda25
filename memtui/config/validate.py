"""Profile validation: JSON Schema (2020-12) plus unit ranges and the cross-field rules, reporting
every problem at once as ``SOURCE::$.json.path: message``.

``check_data`` checks one profile's content, ``check_file`` one file on disk, ``check_env`` an
environment as a whole (each file of its ``extends`` chain alone, then the resolved profile with
env vars and ``--set`` overrides, every problem attributed to whatever supplied the value; a
problem of a file it extends that the file does not have alone ends in ``(in ENV)``) and
``check_all`` every profile in a directory. The schema check and its wording are in
``schema_check``, which imports jsonschema on first use only.
"""
from __future__ import annotations

import os
import re
import tomllib
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import schema
from .errors import ConfigError, Problem
from .profiles import BOM_MESSAGE, ProfileStore, Resolved, nest
from .schema_check import human_bytes, human_seconds, schema_problems

__all__ = ["check_all", "check_data", "check_env", "check_file", "human_bytes", "human_seconds",
           "problems_json"]

_ENV_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


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
    problems = [Problem(source, path, message) for path, message in schema_problems(data)]
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
    found = [(tuple(path), message) for path, message in schema_problems(values)]
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
