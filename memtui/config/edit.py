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
import fcntl
import os
import re
import secrets
import stat
import time
import tomllib
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext, suppress
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import InlineTable

from . import schema
from .diff import MISSING, comparable  # one '(unset)' sentinel for edits and diffs
from .errors import ConfigError, Problem, WriteError
from .profiles import BOM_MESSAGE, ProfileStore, flatten, parse_assignment, secret_path

LOCK_TIMEOUT = 5.0  # seconds to wait for another memtui's write


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
            after = _set_in(after, path, key, value)
        return _finish(text, after)

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
        doc = _parse(text, path)
        missing = [Problem(path, tuple(k.split(".")), "%s is not set in %s" % (k, _show(path)))
                   for k in keys if not _delete(doc, k.split("."), path)]
        if missing:
            raise ConfigError(missing[0].message + "." if len(missing) == 1 else
                              "%d keys are not set in %s." % (len(missing), _show(path)), missing)
        return _finish(text, doc.as_string())

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
        own_data = _parse(text, path).unwrap()
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
            after = _set_in(after, path, key, value)
        doc = _parse(after, path)
        for key in removals:
            _delete(doc, key.split("."), path)
        return _finish(text, doc.as_string())

    return _edit(store, env, compute, dry_run, touched)


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


def write_atomic(path: str, text: str, expected: Optional[bytes]) -> Optional[str]:
    """Write *text* to *path* under its lock, provided the file still holds *expected* (None: it
    must not exist); returns the .bak written, if any. Any failure raises WriteError and leaves
    the file byte-identical."""
    target = os.path.realpath(path)
    with _locked(target):
        return _write_locked(target, text, expected)


# -- the edit cycle -----------------------------------------------------------------------------
_KEPT = ("environment", "extends")


def _edit(store: ProfileStore, env: str, compute: Callable[[str], str], dry_run: bool,
          keys: Sequence[str], create: bool = False, source: Optional[str] = None) -> EditResult:
    path = store.path(env)
    target = os.path.realpath(path)
    if not create and _read(target) is None:  # no lock file beside a profile that is not there
        raise _write_error(target, _reason(FileNotFoundError(errno.ENOENT, ""), target))
    with nullcontext() if dry_run else _locked(target):
        raw = _read(target)
        if raw is None and not create:
            raise _write_error(target, _reason(FileNotFoundError(errno.ENOENT, ""), target))
        before = _decode(raw or b"", path)
        old = _resolved(store, env, before if raw is not None else None)
        after = compute(before)
        data, remaining = _validated(store, env, path, before if raw is not None else None,
                                     after, source)
        new = _resolved(store, env, data)
        written, backup = False, None
        if not dry_run and (after != before or raw is None):
            backup = _write_locked(target, after, raw)
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


# -- tomlkit edits ------------------------------------------------------------------------------
def _parse(text: str, path: str) -> Any:
    if text.startswith("\ufeff"):
        raise ConfigError("%s %s." % (_show(path), BOM_MESSAGE), [Problem(path, (), BOM_MESSAGE)])
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError("%s is not valid TOML (%s); fix it by hand or replace it with apply."
                          % (_show(path), exc), [Problem(path, (), "not valid TOML: %s" % exc)]
                          ) from None


def _set_in(text: str, path: str, key: str, value: Any) -> str:
    """*text* with *key* set: in place where the key exists (a table, a super-table, a dotted key
    or an inline table), added to its table when that exists, else in a new table at the end."""
    doc = _parse(text, path)
    parts = key.split(".")
    node = doc
    try:
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                if isinstance(node, InlineTable):
                    nested: Any = value
                    for p in reversed(parts[i + 1:]):
                        nested = {p: nested}
                    node[part] = _spaced(node, _item(nested))
                    return doc.as_string()
                return _append_table(doc.as_string(), parts[:-1], parts[-1], value)
            if not isinstance(child, Mapping):
                raise _edit_error(path, key, "%s is not a table" % ".".join(parts[:i + 1]))
            node = child
        old = node.get(parts[-1])
        if isinstance(old, Mapping) and not isinstance(old, InlineTable):
            raise _edit_error(path, key, "it is a table; set its keys, or unset it first")
        node[parts[-1]] = _spaced(node, _item(value)) if old is None else _item(value)
    except TOMLKitError as exc:
        raise _edit_error(path, key, str(exc)) from None
    return doc.as_string()


def _append_table(text: str, header: Sequence[str], leaf: str, value: Any) -> str:
    nl = "\r\n" if "\r\n" in text else "\n"
    if text and not text.endswith("\n"):
        text += nl
    if text.strip() and not text.endswith(nl + nl):
        text += nl
    name = ".".join(tomlkit.key(p).as_string() for p in header)
    return "%s[%s]%s%s = %s%s" % (text, name, nl, tomlkit.key(leaf).as_string(),
                                  _item(value).as_string(), nl)


def _delete(doc: Any, parts: Sequence[str], path: str) -> bool:
    """Delete a key, then every table that leaves empty; False when the key is not there."""
    chain = [doc]
    for part in parts[:-1]:
        child = chain[-1].get(part)
        if not isinstance(child, Mapping):
            return False
        chain.append(child)
    if parts[-1] not in chain[-1]:
        return False
    try:
        del chain[-1][parts[-1]]
        for i in range(len(parts) - 1, 0, -1):
            if len(chain[i]):
                break
            del chain[i - 1][parts[i - 1]]
    except TOMLKitError as exc:
        raise _edit_error(path, ".".join(parts), str(exc)) from None
    return True


def _finish(before: str, after: str) -> str:
    """Line ends as the file had them (tomlkit adds lines with \\n), and no blank line left at
    the end by deleting the last table unless the file ended that way."""
    nl = "\n"
    if "\r\n" in before and "\n" not in before.replace("\r\n", ""):
        nl, after = "\r\n", re.sub(r"(?<!\r)\n", "\r\n", after)
    if after.endswith(nl + nl) and not before.endswith(nl + nl):
        after = after.rstrip("\r\n") + nl if after.strip() else ""
    return after


def _item(value: Any) -> Any:
    """A tomlkit item that fits on one line: tables become inline tables."""
    if isinstance(value, dict):
        table = tomlkit.inline_table()
        for k, v in value.items():
            table[k] = _spaced(table, _item(v))
        return table
    if isinstance(value, list):
        array = tomlkit.array()
        for v in value:
            array.append(_item(v))
        return array
    return tomlkit.item(value)


def _spaced(table: Any, item: Any) -> Any:
    if isinstance(table, InlineTable) and len(table):
        item.trivia.indent = " "  # tomlkit would write {a = 1,b = 2}
    return item


def _is_section(field: schema.Field) -> bool:
    # schema.is_leaf() says yes for "custom" and "caches" (objects without "properties")
    return not schema.is_leaf(field) or (not field.free and field.spec.get("type") == "object")


# -- the one writer -----------------------------------------------------------------------------
@contextmanager
def _locked(path: str) -> Iterator[None]:
    lock = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _write_error(path, _reason(exc, path)) from None
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WriteError("Another memtui is writing %s; try again." % _show(path),
                                     [Problem(path, (), "locked by another memtui")]) from None
                time.sleep(0.01)
            except OSError as exc:
                raise _write_error(path, "cannot lock it (%s)" % _reason(exc, path)) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _read(path: str) -> Optional[bytes]:
    """The file's bytes, or None when it does not exist; WriteError for anything else."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise _write_error(path, "it is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise _write_error(path, "it is not a regular file")
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _write_error(path, _reason(exc, path)) from None


def _write_locked(path: str, text: str, expected: Optional[bytes]) -> Optional[str]:
    """With the lock held: check the file still holds *expected*, keep a .bak, then swap.
    Returns the .bak's path (None for a new file)."""
    try:
        data = text.encode("utf-8")
        current = _read(path)
        if current != expected:
            raise _write_error(path, "it was created meanwhile" if expected is None else
                               "it was deleted meanwhile" if current is None else
                               "it changed on disk after it was read (try again)")
        mode = owner = backup = None
        if current is not None:
            st = os.stat(path)
            mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
            backup = path + ".bak"
            _replace(backup, current, mode, owner)
        _replace(path, data, mode, owner)
    except WriteError:
        raise
    except Exception as exc:
        raise _write_error(path, _reason(exc, path)) from exc
    with suppress(OSError):  # the rename is done: a directory that cannot be fsynced is no failure
        dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return backup


def _replace(target: str, data: bytes, mode: Optional[int], owner: Optional[Tuple[int, int]]
             ) -> None:
    """Write *data* to a temp file beside *target*, fsync it, rename it over *target*. The temp
    file is removed on any failure (an exception, even KeyboardInterrupt, then propagates)."""
    folder, base = os.path.split(target)
    tmp = None
    try:
        while tmp is None:
            name = os.path.join(folder, ".%s.%s.tmp" % (base, secrets.token_hex(4)))
            try:  # a new file gets the umask's mode; an existing one keeps its mode
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o666 if mode is None else 0o600)
            except FileExistsError:
                continue
            tmp = name
        try:
            if owner is not None and os.geteuid() == 0:
                with suppress(OSError):  # root keeps the owner; others cannot change it
                    os.fchown(fd, *owner)
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        tmp = None
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)


# -- messages -----------------------------------------------------------------------------------
def _show(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


def _write_error(path: str, reason: str) -> WriteError:
    tail = "the file is unchanged" if os.path.lexists(path) else "nothing was written"
    return WriteError("Cannot write %s: %s; %s." % (_show(path), reason, tail),
                      [Problem(path, (), reason)])


def _edit_error(path: str, key: str, reason: str) -> ConfigError:
    return ConfigError("Cannot set %s in %s: %s." % (key, _show(path), reason),
                       [Problem(path, tuple(key.split(".")), reason)])


def _reason(exc: BaseException, path: str) -> str:
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOENT:
            folder = os.path.dirname(path)
            return ("it does not exist (create it with apply)" if os.path.isdir(folder) else
                    "the directory %s does not exist" % _show(folder))
        if exc.errno == errno.EISDIR:
            return "it is a directory"
        if exc.errno == errno.ENOTDIR:
            return "a part of its path is not a directory"
        return exc.strerror or str(exc)
    return "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("%s is not UTF-8 text (byte %d)." % (_show(path), exc.start),
                          [Problem(path, (), "not UTF-8 text")]) from None


def _count(what: str, items: Sequence[Any]) -> str:
    return "%d %s%s" % (len(items), what, "s"[:len(items) != 1])
