"""Finding agents on this machine: live sockets, stale ones left by dead processes, and Python
processes that have no agent. Used by `memtui ps` and, later, the dashboard's process picker."""
from __future__ import annotations

import fnmatch
import os
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
