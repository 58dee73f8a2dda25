"""Where agents put their sockets: a private per-user runtime directory and one socket per PID.

Stdlib only; imported by the agent inside the target and by every client.
"""
from __future__ import annotations

import os
import stat
import time
from typing import Iterator, Mapping, Optional, Tuple

SOCKET_SUFFIX = ".sock"
DORMANT_SUFFIX = ".dormant"


class RuntimeDirError(OSError):
    """The runtime directory is missing, unsafe, or cannot be created."""


def runtime_dir(environ: Optional[Mapping[str, str]] = None, uid: Optional[int] = None) -> str:
    """The runtime directory for a user, computed the same way inside and outside the target.

    ``$MEMTUI_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/memtui``, else ``/tmp/memtui-UID``.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("MEMTUI_RUNTIME_DIR")
    if explicit:
        return os.path.abspath(explicit)
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "memtui")
    return "/tmp/memtui-%d" % (os.geteuid() if uid is None else uid)


def socket_path(pid: int, directory: Optional[str] = None) -> str:
    return os.path.join(directory or runtime_dir(), "%d%s" % (pid, SOCKET_SUFFIX))


def dormant_path(pid: int, directory: Optional[str] = None) -> str:
    """Where ``memtui.install()`` says "PID has a dormant agent woken by signal N"."""
    return os.path.join(directory or runtime_dir(), "%d%s" % (pid, DORMANT_SUFFIX))


def start_ticks(pid: int) -> Optional[int]:
    """When *pid* started (field 22 of /proc/PID/stat, clock ticks since boot): with the PID it
    names one process for good, since a reused PID starts at another time."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            return int(fh.read().rpartition(b")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def start_time(pid: int) -> Optional[float]:
    """When *pid* started, in seconds since the epoch: its start ticks are counted on the boot
    clock, so now minus how long ago that was on the same clock (to a clock tick, where
    /proc/stat's btime is rounded to the second)."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    try:
        ago = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError):  # not Linux
        return None
    return time.time() - ago


def private_problem(path: str, kind: str) -> Optional[str]:
    """Why *path* is not a private ``kind`` ("directory" or "socket") of ours, or None if it is.

    The one place for the rule both sides enforce: a real entry (not a symlink) of that kind,
    owned by our euid, with no group/other permission bits.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "%s does not exist" % path
    except OSError as exc:
        return "%s cannot be examined (%s)" % (path, exc.strerror or exc)
    if stat.S_ISLNK(st.st_mode):
        return "%s is a symlink, not a %s" % (path, kind)
    is_kind = stat.S_ISDIR if kind == "directory" else stat.S_ISSOCK
    if not is_kind(st.st_mode):
        return "%s is not a %s" % (path, kind)
    if st.st_uid != os.geteuid():
        return "%s is owned by uid %d, not by uid %d" % (path, st.st_uid, os.geteuid())
    if st.st_mode & 0o077:
        return "%s has mode %o, which lets other users in; it must be %s" % (
            path, stat.S_IMODE(st.st_mode), "0700" if kind == "directory" else "0600")
    return None


def check_private_dir(path: str) -> None:
    """Raise RuntimeDirError unless *path* is a real directory, owned by us, with no group/other bits."""
    problem = private_problem(path, "directory")
    if problem:
        raise RuntimeDirError("refusing the runtime directory: " + problem)


def ensure_private_dir(path: str) -> str:
    """Create *path* as 0700 (whatever the umask) or verify an existing one; return it."""
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; this is not
    check_private_dir(path)
    return path


def pid_alive(pid: int) -> bool:
    """True while *pid* runs; a zombie (exited, not yet reaped) counts as gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            state = fh.read().rpartition(b")")[2].split()[:1]
        return state != [b"Z"]
    except OSError:
        return True  # no /proc (not Linux) or unreadable: kill(0) is all we know


def iter_temp_sockets(directory: Optional[str] = None) -> Iterator[Tuple[int, str]]:
    """Yield (pid, path) for ``PID.tmp`` names an agent binds before renaming into place; one is
    left behind only if that agent died in between."""
    directory, names = _names(directory)
    for name in names:
        stem, dot, ext = name.partition(".")
        if dot and ext == "tmp" and stem.isdigit():
            yield int(stem), os.path.join(directory, name)


def _names(directory: Optional[str]) -> Tuple[str, list]:
    directory = directory or runtime_dir()
    try:
        return directory, sorted(os.listdir(directory))
    except OSError:
        return directory, []


def iter_socket_files(directory: Optional[str] = None) -> Iterator[Tuple[int, str]]:
    """Yield (pid, path) for every ``PID.sock`` entry in the runtime directory."""
    directory, names = _names(directory)
    for name in names:
        if not name.endswith(SOCKET_SUFFIX):
            continue
        stem = name[: -len(SOCKET_SUFFIX)]
        if stem.isdigit():
            yield int(stem), os.path.join(directory, name)


def target_runtime_dir(pid: int) -> Optional[str]:
    """The runtime directory the process *pid* would use, read from its environment.

    Lets a client find an agent whose process set ``MEMTUI_RUNTIME_DIR`` differently from the
    client's own shell. None when the environment cannot be read (another user, not Linux).
    """
    try:
        with open("/proc/%d/environ" % pid, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key in (b"MEMTUI_RUNTIME_DIR", b"XDG_RUNTIME_DIR"):
            env[key.decode()] = value.decode("utf-8", "replace")
    return runtime_dir(env)
