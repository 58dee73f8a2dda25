"""Safe, comment-preserving edits of ``profiles/ENV.toml``: set, unset, reset to defaults, apply.

Each edit locks ``.ENV.toml.lock`` next to the file, reads it, edits it with tomlkit (only the
edited value's bytes change), checks the result as readers will see it (tomllib, check_data,
check_env of the env and of every env that extends it) and only then writes: a ``.bak`` of the
exact previous bytes, a temp file fsynced and renamed over the original. Only problems the edit
brings are refused, so a file can be repaired key by key. Concurrent memtui writers queue on the
lock, each editing what the previous one wrote, so both land; a change by another program between
read and write is refused with WriteError. Dry runs take no lock and write nothing."""
from __future__ import annotations

import errno
import os
import tomllib
from contextlib import nullcontext
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from . import schema
from .diff import MISSING, comparable  # one '(unset)' sentinel for edits and diffs
from .errors import ConfigError, Problem
from .profiles import BOM_MESSAGE, ProfileStore, flatten, parse_assignment, secret_path
from .safe_write import locked, os_reason, read_existing, show_path as _show
from .safe_write import write_atomic, write_error, write_locked
from .toml_edit import delete_key, finish_edit, parse_document, set_key

# write_atomic (export -o) and MISSING (in EditResult.changes) are defined apart, imported from here
__all__ = ["EditResult", "MASKED_SECRET", "MISSING", "apply_file", "reset", "set_values",
           "unset_values", "write_atomic"]


class EditResult(NamedTuple):
    path: str  # the file edited
    before: str  # its text before
    after: str  # its text after (== before when nothing changed)
    changes: List[Tuple[str, Any, Any]]  # (key, old, new): the env's resolved values, or MISSING
    written: bool  # False for dry runs and no-op edits
    # problems the file (or an env extending it) already had and still has: the edit was allowed
    remaining: Sequence[Problem] = ()
    # the .bak written (next to the real file when the profile is a symlink); None when none was
    backup: Optional[str] = None


# -- public edits -------------------------------------------------------------------------------
def set_values(store: ProfileStore, env: str, assignments: Sequence[str],
               dry_run: bool = False) -> EditResult:
    """Set ``KEY=VALUE`` pairs in ENV.toml, each value typed by the schema. Every bad key or value
    is reported at once in one ConfigError; nothing is written unless the result validates."""
    path = store.path(env)
    typed: List[Tuple[str, Any]] = []
    problems: List[Problem] = []
    for text in assignments:
        try:
            key, raw = parse_assignment(text)
        except ValueError as exc:
            problems.append(Problem(path, (), str(exc)))
            continue
        parts = tuple(key.split("."))
        field = schema.lookup(key)
        if field is None:
            problems.append(Problem(path, parts, schema.unknown_key_message(key)))
        elif _is_section(field):
            problems.append(Problem(path, parts, "%s is a section; set one of its keys" % key))
        else:
            try:
                typed.append((key, schema.coerce(field, raw)))
            except ValueError as exc:
                problems.append(Problem(path, parts, str(exc)))

    def compute(text: str) -> str:
        after = text
        for key, value in typed:
            after = set_key(after, path, key, value)
        return finish_edit(text, after)

    if problems:  # report what the good assignments would break too, all at once
        try:
            _edit(store, env, compute, True, ())
        except ConfigError as exc:
            problems += [p for p in exc.problems if p not in problems]
        raise ConfigError("Cannot set %s in %s (%s); nothing was written." % (
            "values" if len(assignments) > 1 else "the value", _show(path),
            _count("problem", problems)), problems)
    return _edit(store, env, compute, dry_run, [k for k, _ in typed])


def unset_values(store: ProfileStore, env: str, keys: Sequence[str],
                 dry_run: bool = False) -> EditResult:
    """Remove keys (or whole tables) from ENV.toml; the value then comes from the file it extends
    or the schema default. A table the removal leaves empty goes too."""
    path = store.path(env)
    keys = [k.strip() for k in keys]

    def compute(text: str) -> str:
        doc = parse_document(text, path)
        missing = [Problem(path, tuple(k.split(".")), "%s is not set in %s" % (k, _show(path)))
                   for k in keys if not delete_key(doc, k.split("."), path)]
        if missing:
            raise ConfigError(missing[0].message + "." if len(missing) == 1 else
                              "%d keys are not set in %s." % (len(missing), _show(path)), missing)
        return finish_edit(text, doc.as_string())

    return _edit(store, env, compute, dry_run, keys)


def reset(store: ProfileStore, env: str, keys: Sequence[str] = (),
          dry_run: bool = False) -> EditResult:
    """Make the env's resolved value of each key (every key its chain sets when *keys* is empty;
    a section name means its keys) the schema default: delete it from ENV.toml when the files it
    extends then give the default, else write the default into ENV.toml. Keys without a default
    (per-name sections, custom.*, tiers) are deleted from ENV.toml; one only a file it extends
    sets is refused, naming that file (there is no default to write). ``environment`` and
    ``extends`` stay."""
    path = store.path(env)
    touched: List[str] = []

    def compute(text: str) -> str:
        own_data = parse_document(text, path).unwrap()
        inherited: Dict[str, Any] = {}
        setter: Dict[str, Tuple[str, str]] = {}  # key -> (name, path) of the nearest file
        for name, fpath, data in reversed(store.with_content(env, own_data).chain(env)[1:]):
            flat = flatten({k: v for k, v in data.items() if k != "extends"})
            inherited.update(flat)
            setter.update((k, (name, fpath)) for k in flat)
        own = flatten({k: v for k, v in own_data.items() if k != "extends"})
        chain_keys = sorted((set(own) | set(inherited)) - set(_KEPT))
        problems: List[Problem] = []
        targets: List[str] = []
        for key in keys or chain_keys:
            below = [k for k in chain_keys if k == key or k.startswith(key + ".")]
            if key in _KEPT:
                problems.append(Problem(path, (key,), "%s is kept by reset; use unset" % key))
            elif not below and schema.lookup(key) is None:
                problems.append(Problem(path, tuple(key.split(".")),
                                        schema.unknown_key_message(key)))
            targets += [k for k in below if k not in targets]
        if problems:
            raise ConfigError(_count("bad key", problems) + "; nothing was written.", problems)
        touched[:] = targets
        removals, writes = [], []
        for key in targets:
            field = schema.lookup(key)
            if field is None or field.free or not field.has_default:
                if key in own:
                    removals.append(key)
                elif key in inherited:  # nothing here to remove, no default to write
                    problems.append(_no_default(path, key, *setter[key]))
            elif key in inherited and comparable(key, inherited[key]) != comparable(
                    key, field.default):
                writes.append((key, field.default))
            elif key in own:
                removals.append(key)
        if problems:
            raise ConfigError("Cannot reset %s (%s without a schema default); nothing was "
                              "written." % (_show(path), _count("key", problems)), problems)
        after = text
        for key, value in writes:  # first, so a table that gets a default is not removed
            after = set_key(after, path, key, value)
        doc = parse_document(after, path)
        for key in removals:
            delete_key(doc, key.split("."), path)
        return finish_edit(text, doc.as_string())

    return _edit(store, env, compute, dry_run, touched)


def _is_section(field: schema.Field) -> bool:
    # schema.is_leaf() says yes for "custom" and "caches" (objects without "properties")
    return not schema.is_leaf(field) or (not field.free and field.spec.get("type") == "object")


def _no_default(path: str, key: str, name: str, where: str) -> Problem:
    top = key.split(".")[0]
    what = ("custom keys have" if top in schema.FREE else "per-name keys have"
            if top in schema.NAMED else "%s has" % key)
    return Problem(path, tuple(key.split(".")), "%s is set in %s; %s no schema default — unset "
                   "it there (--env %s) or set it here" % (key, os.path.basename(where), what,
                                                          name))


def apply_file(store: ProfileStore, env: str, source_path: str,
               dry_run: bool = False) -> EditResult:
    """Replace ENV.toml with *source_path*'s exact bytes once that file validates as the env's
    content (TOML, check_data, check_env). ENV.toml need not exist yet."""
    try:
        with open(source_path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError("Cannot read %s: %s." % (source_path, reason),
                          [Problem(source_path, (), reason)]) from None
    text = _decode(raw, source_path)
    return _edit(store, env, lambda _before: text, dry_run, (), create=True, source=source_path)


# -- the edit cycle -----------------------------------------------------------------------------
_KEPT = ("environment", "extends")


def _edit(store: ProfileStore, env: str, compute: Callable[[str], str], dry_run: bool,
          keys: Sequence[str], create: bool = False, source: Optional[str] = None) -> EditResult:
    path = store.path(env)
    target = os.path.realpath(path)
    if not create and read_existing(target) is None:  # no lock file beside a missing profile
        raise write_error(target, os_reason(FileNotFoundError(errno.ENOENT, ""), target))
    with nullcontext() if dry_run else locked(target):
        raw = read_existing(target)
        if raw is None and not create:
            raise write_error(target, os_reason(FileNotFoundError(errno.ENOENT, ""), target))
        before = _decode(raw or b"", path)
        old = _resolved(store, env, before if raw is not None else None)
        after = compute(before)
        data, remaining = _validated(store, env, path, before if raw is not None else None,
                                     after, source)
        new = _resolved(store, env, data)
        written, backup = False, None
        if not dry_run and (after != before or raw is None):
            backup = write_locked(target, after, raw)
            written = True
    return EditResult(path, before, after, _changes(old, new, keys), written, remaining, backup)


def _validated(store: ProfileStore, env: str, path: str, before: Optional[str], text: str,
               source: Optional[str] = None) -> Tuple[Dict[str, Any], List[Problem]]:
    """The data *text* gives readers and the problems it keeps from *before* (None: a new file),
    once it brings no problem of its own: to the file alone, to the env, or to an env that
    extends it (compared by source, path and message; a file being replaced by *source* counts
    as *source*). Else ConfigError listing what it brings."""
    where = source or path
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        if text.startswith("\ufeff"):  # tomllib: "Invalid statement (at line 1, column 1)"
            raise ConfigError("%s %s; nothing was written." % (_show(where), BOM_MESSAGE),
                              [Problem(where, (), BOM_MESSAGE)]) from None
        raise ConfigError("%s would not be valid TOML (%s); nothing was written." % (
            _show(where), exc), [Problem(where, (), "not valid TOML: %s" % exc)]) from None
    try:
        old_data: Any = None if before is None else tomllib.loads(before)
    except tomllib.TOMLDecodeError:
        old_data = None  # the disk is checked instead: its TOML error is an old problem
    old_store = store if old_data is None else store.with_content(env, old_data)

    def key(p: Problem) -> Tuple[str, tuple, str]:
        return (path if p.source == where else p.source, tuple(p.path), p.message)

    had = {key(p) for group in _problems(old_store, env, path, old_data, path) for p in group}
    edited = store.with_content(env, data)
    own, *others = _problems(edited, env, path, data, where)
    new = [p for p in own if key(p) not in had]
    harm = ["would not be valid"] if new else []
    broken = []
    for name, group in zip(_dependents(edited, env), others):
        more = [p for p in group if key(p) not in had and p not in new]
        if more:
            broken.append(name)
            new += more
    if broken:
        harm.append("would break " + ", ".join(broken))
    remaining = [p for p in _unique(own + [p for g in others for p in g]) if key(p) in had]
    if new:
        harm = " and ".join(harm)
        raise ConfigError("%s (%s%s); nothing was written." % (
            "%s cannot replace %s: it %s" % (_show(source), _show(path), harm) if source else
            "%s %s" % (_show(path), harm), _count("problem", new),
            ", besides %d it already had" % len(remaining) if remaining else ""), new)
    return data, remaining


def _problems(store: ProfileStore, env: str, path: str, data: Any, where: str
              ) -> List[List[Problem]]:
    """``[the env's problems, then those of each env extending it (_dependents' order)]``: the
    file alone (named *where*), the env it resolves to, a secret left masked."""
    from . import validate  # jsonschema is imported only by commands that check or write

    def env_problems(name: str) -> List[Problem]:
        try:
            found = validate.check_env(store, name, environ={})
        except ConfigError as exc:
            found = exc.problems or [Problem(path, (), str(exc))]
        return [p._replace(source=where) if p.source == path else p for p in found]

    own = validate.check_data(data, where) if isinstance(data, dict) else []
    own += [Problem(where, tuple(k.split(".")), MASKED_SECRET) for k, v in
            (flatten(data).items() if isinstance(data, dict) else ())
            if v == schema.MASK and secret_path(k)]
    return [_unique(own + env_problems(env))] + [env_problems(n) for n in _dependents(store, env)]


MASKED_SECRET = ("%s is the mask placeholder from a masked export, not the secret; export with "
                 "--show-secrets" % schema.MASK)


def _dependents(store: ProfileStore, env: str) -> List[str]:
    """Every other profile whose extends chain reaches *env*."""
    out = []
    for name in store.names():
        seen = [name]
        while name != env:
            try:
                parent = store.read(seen[-1]).get("extends")
            except (ConfigError, AttributeError):
                break
            if parent == env:
                out.append(name)
            if not isinstance(parent, str) or parent == env or parent in seen:
                break
            seen.append(parent)
    return out


def _unique(problems: List[Problem]) -> List[Problem]:
    return list(dict.fromkeys(problems))


def _resolved(store: ProfileStore, env: str, content: Any) -> Any:
    """The env resolved from files and defaults only (no MEMTUI__ variables), or None."""
    try:
        data = tomllib.loads(content) if isinstance(content, str) else content
        return None if data is None else store.with_content(env, data).resolve(env, environ={})
    except (ConfigError, tomllib.TOMLDecodeError):
        return None


def _changes(old: Any, new: Any, keys: Sequence[str]) -> List[Tuple[str, Any, Any]]:
    def value(resolved: Any, key: str) -> Any:
        chain = resolved.chain(key) if resolved is not None else []
        return chain[0].value if chain else MISSING

    every = {k for r in (old, new) if r is not None for k in r.chains}
    pairs = [(k, value(old, k), value(new, k)) for k in dict.fromkeys([*keys, *sorted(every)])]
    return [(k, a, b) for k, a, b in pairs if not (type(a) is type(b) and a == b)]


# -- messages -----------------------------------------------------------------------------------
def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("%s is not UTF-8 text (byte %d)." % (_show(path), exc.start),
                          [Problem(path, (), "not UTF-8 text")]) from None


def _count(what: str, items: Sequence[Any]) -> str:
    return "%d %s%s" % (len(items), what, "s"[:len(items) != 1])
