"""The one way a profile file is written: under its lock, only while it holds the bytes read, a
``.bak`` of those, then a temp file fsynced and renamed over it; a failure is one WriteError."""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import time
from contextlib import contextmanager, suppress
from typing import Iterator, Optional, Tuple

from .errors import Problem, WriteError

LOCK_TIMEOUT = 5.0  # seconds to wait for another memtui's write


def write_atomic(path: str, text: str, expected: Optional[bytes]) -> Optional[str]:
    """Write *text* to *path* under its lock, provided the file still holds *expected* (None: it
    must not exist); returns the .bak written, if any. Any failure raises WriteError and leaves
    the file byte-identical."""
    target = os.path.realpath(path)
    with locked(target):
        return write_locked(target, text, expected)


@contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside *path*, waiting up to LOCK_TIMEOUT for another memtui."""
    lock = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise write_error(path, os_reason(exc, path)) from None
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WriteError("Another memtui is writing %s; try again." % show_path(path),
                                     [Problem(path, (), "locked by another memtui")]) from None
                time.sleep(0.01)
            except OSError as exc:
                raise write_error(path, "cannot lock it (%s)" % os_reason(exc, path)) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def read_existing(path: str) -> Optional[bytes]:
    """The file's bytes, or None when it does not exist; WriteError for anything else."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise write_error(path, "it is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise write_error(path, "it is not a regular file")
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise write_error(path, os_reason(exc, path)) from None


def write_locked(path: str, text: str, expected: Optional[bytes]) -> Optional[str]:
    """With the lock held: check the file still holds *expected*, keep a .bak, then swap.
    Returns the .bak's path (None for a new file)."""
    try:
        data = text.encode("utf-8")
        current = read_existing(path)
        if current != expected:
            raise write_error(path, "it was created meanwhile" if expected is None else
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
        raise write_error(path, os_reason(exc, path)) from exc
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
def show_path(path: str) -> str:
    """*path* relative to the working directory when it is below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


def write_error(path: str, reason: str) -> WriteError:
    tail = "the file is unchanged" if os.path.lexists(path) else "nothing was written"
    return WriteError("Cannot write %s: %s; %s." % (show_path(path), reason, tail),
                      [Problem(path, (), reason)])


def os_reason(exc: BaseException, path: str) -> str:
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOENT:
            folder = os.path.dirname(path)
            return ("it does not exist (create it with apply)" if os.path.isdir(folder) else
                    "the directory %s does not exist" % show_path(folder))
        if exc.errno == errno.EISDIR:
            return "it is a directory"
        if exc.errno == errno.ENOTDIR:
            return "a part of its path is not a directory"
        return exc.strerror or str(exc)
    return "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__

