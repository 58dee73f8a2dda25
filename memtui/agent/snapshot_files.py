"""Snapshot files: the on-disk format and its I/O (names and ids, the private directory, the atomic
write, load with its shape checks, listing with a metadata cache, pruning); see snapshots.py.

Files are ``<dir>/<id>.json.gz``, 0600, in a 0700 directory of ours. A snapshot is written to
``.<id>.tmp`` in the same directory, fsynced, then hard-linked to its final name (which never
overwrites) and the temporary name removed: the final name never holds a partial file, whatever
happens to the process or the disk, and a failure leaves neither name behind. Never pickle.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import time
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .. import paths, protocol

FORMAT = "memtui-snapshot"
VERSION = 1
SUFFIX = ".json.gz"
MAX_DOCUMENT = 256 * 1024 * 1024  # decompressed bytes load() accepts
_CHUNK = 256 * 1024  # bytes of JSON compressed and written between two progress reports
_ID = r"(\d+)-(?:([0-9a-f]{8})-)?(\d{8}T\d{12}Z)-(\d+)"  # pid, token (absent: older), stamp, n
_NAME = re.compile(r"^%s\.json\.gz$" % _ID)
_TEMP = re.compile(r"^\.%s\.tmp$" % _ID)

Progress = Callable[[str, int, Optional[int]], None]


class SnapshotError(Exception):
    """A snapshot could not be taken or read; the message says why and what to do."""

    code = "snapshot_failed"



_token = [os.urandom(4).hex()]  # this process instance's, in its snapshot ids (see snapshots.py)


def instance() -> str:
    """``PID-TOKEN``: what this process's snapshot ids (and file names) start with."""
    return "%d-%s" % (os.getpid(), _token[0])


def instance_of(snap_id: str) -> Optional[str]:
    """The ``PID-TOKEN`` of a snapshot id or file name; None for other names and for the ids
    earlier memtui wrote (``PID-UTCSTAMP-N``: which process instance is not recorded)."""
    m = _NAME.match(snap_id if snap_id.endswith(SUFFIX) else snap_id + SUFFIX)
    return "%s-%s" % (m.group(1), m.group(2)) if m is not None and m.group(2) else None



def _stamp(t: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + "%06dZ" % int((t % 1) * 1e6)



def prepare_dir(path: str) -> str:
    """Create *path* 0700 (and missing parents) or check it is a private directory of ours."""
    try:
        paths.ensure_private_dir(path)
    except paths.RuntimeDirError:
        problem = paths.private_problem(path, "directory")
        raise SnapshotError("refusing the snapshot directory: %s" % problem) from None
    except OSError as exc:
        raise SnapshotError("cannot create the snapshot directory %s: %s"
                            % (path, exc.strerror or exc)) from exc
    return path



def metadata(doc: Dict[str, Any], path: str, size: int) -> Dict[str, Any]:
    census = doc.get("census") if isinstance(doc.get("census"), dict) else {}
    return {"id": doc.get("id"), "path": path, "bytes": size, "elapsed_s": doc.get("elapsed_s"),
            "complete": census.get("complete"), "objects": census.get("objects"),
            "reason": doc.get("reason"), "pid": doc.get("pid"), "taken_at": doc.get("taken_at"),
            "tracemalloc": doc.get("tracemalloc") is not None}



# -- files ---------------------------------------------------------------------------------------
def write(doc: Dict[str, Any], where: str, progress: Optional[Progress] = None
          ) -> Tuple[str, int]:
    """Write *doc* as ``<where>/<id>.json.gz`` (0600) through a temporary name; return (path,
    bytes). Never overwrites; on any failure neither name is left and SnapshotError is raised."""
    snap_id = str(doc["id"])
    if not re.match(r"^[0-9A-Za-z._-]+$", snap_id) or snap_id.startswith("."):
        raise ValueError("bad snapshot id %r" % snap_id)
    final = os.path.join(where, snap_id + SUFFIX)
    temp = os.path.join(where, "." + snap_id + ".tmp")  # never matches *.json.gz
    data = protocol.dumps(doc)
    total = len(data)
    if progress is not None:
        progress("writing", 0, total)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip member
            view = memoryview(data)
            for start in range(0, total, _CHUNK):
                _write_all(fd, packer.compress(view[start:start + _CHUNK]))
                if progress is not None:
                    progress("writing", min(total, start + _CHUNK), total)
            _write_all(fd, packer.flush())
            os.fsync(fd)
        finally:
            os.close(fd)
        _publish(temp, final)
    except BaseException as exc:
        _unlink_quietly(temp)
        if isinstance(exc, FileExistsError):
            raise SnapshotError("refusing to overwrite %s" % final) from exc
        if isinstance(exc, OSError):
            hint = (" (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
                    else "")
            raise SnapshotError("cannot write the snapshot to %s: %s%s"
                                % (where, exc.strerror or exc, hint)) from exc
        raise
    _unlink_quietly(temp)  # the final name holds the complete file from here on
    fsync_dir(where)
    return final, os.stat(final).st_size


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _publish(temp: str, final: str) -> None:
    """Give the complete temporary file its final name without ever replacing one."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise
    except OSError as exc:
        # a file system without hard links: rename, which would replace, after a check
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK,
                             errno.EXDEV, errno.ENOSYS):
            raise
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "File exists", final) from None
        os.rename(temp, final)


def fsync_dir(where: str) -> None:
    try:
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def load(path: str, max_bytes: int = MAX_DOCUMENT) -> Dict[str, Any]:
    """Read a snapshot document; ValueError with a one-sentence message for anything that is not
    a usable version-1 memtui snapshot: not gzip, not JSON (or nested too deeply to parse),
    another format or version, too large, or a field of the wrong shape (see _check: the fields
    ``memtui snapshot show/diff/suspects`` read). Ids are not parsed: any string is one."""
    try:
        with open(path, "rb") as fh:
            unpacker = zlib.decompressobj(31)
            parts: List[bytes] = []
            size = 0
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                while chunk:
                    out = unpacker.decompress(chunk, max_bytes + 1 - size)
                    parts.append(out)
                    size += len(out)
                    if size > max_bytes:
                        raise ValueError("%s decompresses to more than %d MB; not a memtui "
                                         "snapshot" % (path, max_bytes >> 20))
                    chunk = unpacker.unconsumed_tail
                if unpacker.eof:
                    break
            if not unpacker.eof:
                raise ValueError("%s is truncated: the gzip stream ends early" % path)
    except zlib.error as exc:
        raise ValueError("%s is not a gzip file (%s); memtui snapshots are gzip-compressed JSON"
                         % (path, exc)) from None
    try:
        doc = json.loads(b"".join(parts))
    except RecursionError:
        raise ValueError("%s holds JSON nested too deeply to read; not a memtui snapshot"
                         % path) from None
    except ValueError as exc:  # also bad UTF-8, and integers too long to convert
        raise ValueError("%s does not hold JSON: %s" % (path, exc)) from None
    del parts
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("%s is not a memtui snapshot (no \"format\": %r)" % (path, FORMAT))
    version = doc.get("version")
    if version != VERSION:
        raise ValueError("%s is a memtui snapshot of version %r; this memtui reads version %d"
                         % (path, version, VERSION))
    problem = _check(doc)
    if problem is not None:
        raise ValueError("%s is not a usable memtui snapshot: %s" % (path, problem))
    return doc


# -- the shapes load() checks (what the CLI and heapdiff read); anything else is passed through ---
def _is_int(v: Any) -> bool:
    return type(v) is int  # not bool


def _is_number(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and math.isfinite(v)


def _is_str(v: Any) -> bool:
    return type(v) is str


def _is_list(v: Any) -> bool:
    return type(v) is list


_WANT = {_is_int: "an integer", _is_number: "a number", _is_str: "a string", _is_list: "a list"}
Row = Tuple[Tuple[str, Callable[[Any], bool]], ...]
_TYPE_ROW: Row = (("type", _is_str), ("count", _is_int), ("size", _is_int))
_CONTAINER_ROW: Row = (("type", _is_str), ("len", _is_int), ("size", _is_int))
_VALUE_ROW: Row = (("preview", _is_str), ("count", _is_int), ("size", _is_int),
                   ("wasted", _is_int))
_LINE_ROW: Row = (("file", _is_str), ("line", _is_int), ("size", _is_int), ("count", _is_int))
_TRACEBACK_ROW: Row = (("frames", _is_list), ("size", _is_int), ("count", _is_int))
_FRAME_ROW: Row = (("file", _is_str), ("line", _is_int))


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else (
        "a list" if isinstance(value, list) else "an object")
    return text if len(text) <= 40 else text[:37] + "..."


def _field(node: Dict[str, Any], key: str, where: str, ok: Callable[[Any], bool],
           required: bool = True, null: bool = False) -> Optional[str]:
    if key not in node:
        return "%s is missing" % where if required else None
    value = node[key]
    if (value is None and null) or ok(value):
        return None
    return "%s is %s, not %s" % (where, _short(value), _WANT[ok] if ok in _WANT else "valid")


def _rows(node: Dict[str, Any], key: str, where: str, row: Row, required: bool = False,
          null: bool = True) -> Optional[str]:
    """*node[key]*: a list of objects each with the fields of *row*."""
    problem = _field(node, key, where, _is_list, required, null)
    if problem is not None or node.get(key) is None:
        return problem
    for i, item in enumerate(node[key]):
        here = "%s[%d]" % (where, i)
        if type(item) is not dict:
            return "%s is %s, not an object" % (here, _short(item))
        for name, ok in row:
            problem = _field(item, name, "%s.%s" % (here, name), ok)
            if problem is not None:
                return problem
    return None


def _section(doc: Dict[str, Any], key: str, required: bool
             ) -> Tuple[Optional[str], Dict[str, Any]]:
    if key not in doc or doc[key] is None:
        return ("%s is missing" % key if required else None), {}
    value = doc[key]
    if type(value) is not dict:
        return "%s is %s, not an object" % (key, _short(value)), {}
    return None, value


def _check(doc: Dict[str, Any]) -> Optional[str]:
    """The first field of the wrong shape, as 'census.types[3].count is "12", not an integer',
    or None. Cheap: the lists are short (the census's types are the longest)."""
    return next(filter(None, _problems(doc)), None)


def _problems(doc: Dict[str, Any]) -> Iterator[Optional[str]]:
    """Lazily, each check's problem or None; a section is read only once it has been checked."""
    yield _field(doc, "id", "id", _is_str, required=False)
    yield _field(doc, "pid", "pid", _is_int, required=False, null=True)
    yield _field(doc, "taken_at", "taken_at", _is_number)
    problem, process = _section(doc, "process", True)
    yield problem
    yield _field(process, "rss", "process.rss", _is_number, required=False, null=True)
    problem, census = _section(doc, "census", True)
    yield problem
    for key in ("objects", "bytes"):
        yield _field(census, key, "census." + key, _is_int, required=False, null=True)
    if census.get("complete") not in (True, False, None):
        yield "census.complete is %s, not true or false" % _short(census["complete"])
    yield _rows(census, "types", "census.types", _TYPE_ROW, required=True, null=False)
    yield _rows(doc, "containers", "containers", _CONTAINER_ROW)
    problem, dups = _section(doc, "duplicates", False)
    yield problem
    yield _field(dups, "wasted_bytes", "duplicates.wasted_bytes", _is_int, required=False,
                 null=True)
    yield _rows(dups, "values", "duplicates.values", _VALUE_ROW)
    problem, trace = _section(doc, "tracemalloc", False)
    yield problem
    yield _rows(trace, "by_line", "tracemalloc.by_line", _LINE_ROW)
    yield _rows(trace, "by_traceback", "tracemalloc.by_traceback", _TRACEBACK_ROW)
    for i, row in enumerate(trace.get("by_traceback") or ()):
        yield _rows(row, "frames", "tracemalloc.by_traceback[%d].frames" % i, _FRAME_ROW)


def _sort_key(name: str) -> Tuple[str, int, str, int]:
    m = _NAME.match(name)
    assert m is not None
    return (m.group(3), int(m.group(1)), m.group(2) or "", int(m.group(4)))


def snapshot_names(where: str) -> List[str]:
    """Snapshot file names in *where*, oldest first (by the time in the name)."""
    try:
        names = os.listdir(where)
    except FileNotFoundError:
        return []
    return sorted((n for n in names if _NAME.match(n)), key=_sort_key)


# A published snapshot never changes: its metadata is read once (per path, size, mtime, inode).
_META_CACHE: Dict[Tuple[str, int, int, int], Dict[str, Any]] = {}
_META_CACHE_SIZE = 2000


def list_dir(where: str) -> List[Dict[str, Any]]:
    """Metadata of every snapshot in *where*, oldest first. One that cannot be read is listed
    with its ``error`` instead of being left out."""
    out = []
    for name in snapshot_names(where):
        path = os.path.join(where, name)
        m = _NAME.match(name)
        assert m is not None
        try:
            st = os.stat(path)
            key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
            meta = _META_CACHE.get(key)
            if meta is None:
                doc = load(path)
                meta = metadata(doc, path, st.st_size)
                del doc
                if len(_META_CACHE) >= _META_CACHE_SIZE:
                    _META_CACHE.clear()
                _META_CACHE[key] = meta
        except (OSError, ValueError) as exc:
            out.append({"id": name[:-len(SUFFIX)], "path": path, "pid": int(m.group(1)),
                        "error": str(exc)})
            continue
        out.append(dict(meta))
    return out


def prune(where: str, keep: int, instance: Optional[str] = None) -> List[str]:
    """Delete all but the newest *keep* snapshots in *where* (only those of *instance*, a
    ``PID-TOKEN`` as ``instance()`` gives, when it is given: processes sharing a directory, and
    earlier runs with the same PID, keep each their own), and temporary files left by dead
    processes. Returns the paths removed."""
    if keep < 0:
        raise ValueError("keep must be >= 0")
    names = snapshot_names(where)
    if instance is not None:
        names = [n for n in names if instance_of(n) == instance]
    removed = []
    for name in names[:max(0, len(names) - keep)]:
        path = os.path.join(where, name)
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    try:
        leftovers = [n for n in os.listdir(where) if _TEMP.match(n)]
    except OSError:
        leftovers = []
    me, token = os.getpid(), _token[0]
    for name in leftovers:
        m = _TEMP.match(name)
        if m is None:
            continue
        pid = int(m.group(1))
        # another PID that is gone, or our PID with another token: an earlier process, gone
        dead = (not paths.pid_alive(pid)) if pid != me else (m.group(2) not in (None, token))
        if dead:
            path = os.path.join(where, name)
            _unlink_quietly(path)
            removed.append(path)
    return removed
