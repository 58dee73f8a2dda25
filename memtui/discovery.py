"""Finding agents on this machine: live sockets, stale ones left by dead processes, and Python
processes that have no agent. Used by `memtui ps` and, later, the dashboard's process picker."""
from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import re
import signal
import stat
from typing import Any, Dict, List, Optional

from . import paths
from .client import AgentClient, find_socket, process_name
from .protocol import AgentError, NoAgent, NoSuchProcess


def remove_stale_socket(path: str) -> bool:
    """Unlink *path* only if it is still a socket we own (never a file someone planted)."""
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.geteuid():
            os.unlink(path)
            return True
    except OSError:
        pass
    return False


def agent_row(pid: int, path: str) -> Optional[Dict[str, Any]]:
    """What `ps` shows for one agent; None when nothing listens there (a stale socket)."""
    try:
        with AgentClient(pid=pid, path=path, timeout=3.0) as client:
            info, st = client.info, client.stats(components=False)
    except (NoAgent, NoSuchProcess):
        return None
    except AgentError as exc:
        return {"pid": pid, "command": process_name(pid), "socket": path, "error": str(exc)}
    return {"pid": pid, "command": process_name(pid), "socket": path,
            "rss": (st.get("process") or {}).get("rss"), "env": info.get("env"),
            "python": (info.get("python") or {}).get("version"), "uptime": st.get("uptime"),
            "agent_version": info.get("agent_version"), "tracing": info.get("tracing"),
            "memory_percent": (st.get("memory") or {}).get("percent"),
            "level": (st.get("memory") or {}).get("level")}


def python_processes() -> List[Dict[str, Any]]:
    """Our own user's Python processes (those we could attach to), except this one."""
    import psutil  # noqa: PLC0415 - only ps needs it; keeps other commands quick to start

    found = []
    for proc in psutil.process_iter(["pid", "name", "exe", "cmdline", "uids", "memory_info"]):
        info = proc.info
        uids = info.get("uids")
        if info["pid"] == os.getpid() or uids is None or uids.effective != os.geteuid():
            continue
        argv = info.get("cmdline") or []
        names = [info.get("name") or "", os.path.basename(info.get("exe") or ""),
                 os.path.basename(argv[0]) if argv else ""]
        if any(fnmatch.fnmatch(n, "python*") for n in names if n):
            mem = info.get("memory_info")
            found.append({"pid": info["pid"], "command": " ".join(argv)[:120] or names[0],
                          "rss": mem.rss if mem else None})
    return found


def scan() -> Dict[str, List[Dict[str, Any]]]:
    agents: List[Dict[str, Any]] = []
    cleaned: List[Dict[str, Any]] = []
    for pid, path in paths.iter_socket_files(paths.runtime_dir()):
        row = agent_row(pid, path) if paths.pid_alive(pid) else None
        if row is not None:
            agents.append(row)
        elif remove_stale_socket(path):
            reason = "process exited" if not paths.pid_alive(pid) else "nothing listening"
            cleaned.append({"pid": pid, "socket": path, "reason": reason})
    for pid, path in paths.iter_temp_sockets(paths.runtime_dir()):
        if not paths.pid_alive(pid) and remove_stale_socket(path):
            cleaned.append({"pid": pid, "socket": path, "reason": "half-created by a dead agent"})
    for entry in cleaned:
        entry["kind"] = "socket"
    cleaned.extend(remove_leftovers(paths.runtime_dir()))
    known = {a["pid"] for a in agents}
    others = []
    for proc in python_processes():
        if proc["pid"] in known:
            continue
        # An agent whose process set another MEMTUI_RUNTIME_DIR is still an agent.
        try:
            elsewhere = find_socket(proc["pid"])
        except AgentError:  # its runtime directory is not ours to search
            elsewhere = None
        row = agent_row(proc["pid"], elsewhere) if elsewhere else None
        if row is not None:
            agents.append(row)
        else:
            proc["dormant"] = _dormant(proc["pid"])
            others.append(proc)
    return {"agents": agents, "others": others, "cleaned": cleaned}


def _dormant(pid: int) -> Optional[str]:
    """The signal name a dormant agent (memtui.install()) in *pid* waits for, else None. Cheap:
    a small marker file and /proc/PID/status; nothing is sent."""
    from .attach import dormant_signal  # noqa: PLC0415

    try:
        sig = dormant_signal(pid)[0]
    except (OSError, ValueError, AgentError):  # gone meanwhile, or not ours to read
        return None
    return signal.Signals(sig).name if sig is not None else None


# Files other than sockets that memtui leaves in the runtime directory: a dormant agent's marker
# (memtui.install()), and an injection's lock, script and status file.
_LEFTOVER = re.compile(r"^(\d+)\.(dormant|dormant\.\d+\.tmp|inject\.lock|"
                       r"inject-[0-9a-f]+\.(?:json|json\.tmp|py))$")


def remove_leftovers(directory: str) -> List[Dict[str, Any]]:
    """Remove what exited processes and finished injections left behind; return what went.

    A marker goes when its process has exited or its PID now names another process (another
    start time). An injection's files go when the process has exited; a status file also goes
    while it runs once no attacher holds its lock (written after the attacher gave up). Nothing
    is done in a runtime directory that is not private; only regular files of ours are opened
    (never blocking: no FIFO, no symlink), and a file is unlinked only while the path still
    names the file we examined (a lock file only while we hold its lock).
    """
    removed: List[Dict[str, Any]] = []
    if paths.private_problem(directory, "directory"):
        return removed
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return removed
    idle: Dict[int, bool] = {}
    for name in names:
        match = _LEFTOVER.match(name)
        if not match:
            continue
        pid, kind = int(match.group(1)), match.group(2)
        path = os.path.join(directory, name)
        alive = paths.pid_alive(pid)
        if alive and (kind == "inject.lock" or kind.startswith("dormant.") or kind.endswith(".py")):
            continue  # in use, being written, or (3.14) still to be read by a timed-out attach
        fd = _open_own(path)
        if fd is None:
            continue
        try:
            if kind == "dormant":
                stale = not alive or _marker_of_another(fd, pid)
                reason = "dormant marker of an exited process" if not alive else \
                    "dormant marker of an earlier process with this PID"
            elif kind.startswith("dormant."):
                stale, reason = True, "half-written dormant marker of an exited process"
            elif kind == "inject.lock":
                stale, reason = _lock_taken(fd), "injection lock of an exited process"
            else:
                if pid not in idle:
                    idle[pid] = not alive or _lock_free(os.path.join(directory,
                                                                      "%d.inject.lock" % pid))
                stale = idle[pid]
                reason = "injection file of an exited process" if not alive else \
                    "status of an injection its attacher gave up on"
            if stale and _unlink_if_same(path, fd):
                removed.append({"pid": pid, "path": path,
                                "kind": kind.split(".")[0].split("-")[0], "reason": reason})
        finally:
            os.close(fd)
    return removed


def _open_own(path: str) -> Optional[int]:
    """A descriptor on *path* if it is a regular file of ours, else None; never blocks (a FIFO
    planted there is opened non-blocking, then refused) and never follows a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _unlink_if_same(path: str, fd: int) -> bool:
    """Unlink *path* only while it still names the file open on *fd*."""
    try:
        ours, now = os.fstat(fd), os.lstat(path)
        if (ours.st_dev, ours.st_ino) == (now.st_dev, now.st_ino):
            os.unlink(path)
            return True
    except OSError:
        pass
    return False


def _marker_of_another(fd: int, pid: int) -> bool:
    """The marker open on *fd* names another start time than *pid*'s: an earlier process with
    that PID wrote it. A marker that cannot be read is kept (it may be this process's)."""
    try:
        marker = json.loads(os.read(fd, 4096))
    except (OSError, ValueError):
        return False
    ticks = marker.get("start_ticks") if isinstance(marker, dict) else None
    now = paths.start_ticks(pid)
    return ticks is not None and now is not None and ticks != now


def _lock_taken(fd: int) -> bool:
    """Take the lock on *fd* if nobody holds it (kept until *fd* is closed)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _lock_free(path: str) -> bool:
    """No attacher holds the injection lock at *path* (or there is none)."""
    if not os.path.lexists(path):
        return True
    fd = _open_own(path)
    if fd is None:
        return False
    try:
        return _lock_taken(fd)
    finally:
        os.close(fd)
