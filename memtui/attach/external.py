"""The external view: what any process's memory looks like from outside, Python or not, without
an agent — psutil's figures (rss, uss, pss, swap, threads, fds, children) and a summary of its
mappings by class (heap, anonymous, stack, files, other).

Everything here is read from /proc through psutil; nothing is sent to the process. A part we may
not read (another user's process, a non-dumpable one) becomes None with a reason in
``unavailable`` instead of an error, so the view still shows what it can. :class:`ExternalClient`
wraps :func:`figures` in AgentClient's shape so the dashboard's feed can poll it like an agent.
Stdlib and psutil only (psutil is imported on first use: it costs start-up time)."""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .. import paths
from ..client import process_name
from ..protocol import NoAgent, NoSuchProcess
from . import procinfo

__all__ = ["CLASSES", "ExternalClient", "HISTORY_FIELDS", "figures", "history_row",
           "how_to_get_agent", "missing_text", "no_agent_sentence", "python_version",
           "stats_reply"]

CLASSES = ("heap", "anon", "stack", "files", "other")
MAP_FIELDS = ("count", "size", "rss", "pss", "swap", "private")
MAX_CHILDREN = 50  # children listed in a figure (all of them are counted)
HISTORY = 600  # rows an ExternalClient keeps, like the agent's default
# Parts of a reading whose cost grows with the process (smaps: ~20 ms per 1000 mappings) or with
# the machine (the process table, for children), and the python detection (it does not change):
# an ExternalClient reads each again only once SLOW_SHARE of the time since its last read would
# cover what it cost, so that polling a huge process every second stays cheap for it and for us.
SLOW_PARTS = ("mappings", "children", "python")
SLOW_SHARE = 0.05
PYTHON_EVERY = 30.0  # seconds between two python detections of the same process
# The agent's history columns (memtui.agent.core.HISTORY_FIELDS, copied so that this module
# does not load the agent): an external row fills the process ones and leaves the rest None.
HISTORY_FIELDS = (
    "seq", "t", "rss", "vms", "uss", "pss", "swap", "threads", "fds",
    "traced", "traced_peak", "gc_count0", "gc_count1", "gc_count2",
    "collections0", "collections1", "collections2", "collected", "uncollectable",
    "gc_pause_max_ms", "memory_pct", "health",
)
_PROCESS_PARTS = {"children": ("children", "children_rss")}  # process figures of a slow part


# python detection ------------------------------------------------------------------------------
def python_version(pid: int) -> Optional[str]:
    """"3.11" when *pid* runs CPython: a libpython3.X or a python3.X directory / extension module
    among its mappings, else an executable named python3.X; None otherwise (or unreadable)."""
    return _python(pid)[0]


def _python(pid: int) -> Tuple[Optional[str], bool]:
    """(python_version, whether /proc refused to tell): procinfo decides, for both views."""
    info = procinfo.python_info(pid)
    if info.implementation == "unknown":
        return None, True
    if info.implementation != "cpython" or info.version is None:
        return None, False
    return "%d.%d" % info.version, False


# the banner ------------------------------------------------------------------------------------
def how_to_get_agent(pid: int, python: Optional[str]) -> str:
    """The clause that says how to get an agent into *pid* (a CPython one: by injection)."""
    if python:
        return "`memtui attach %d --inject` starts one" % pid
    return "for Python, use `memtui run` or memtui.install()"


def missing_text(pid: int, python: Optional[str]) -> str:
    """The banner over an external view: what it lacks, and how to get it (two lines at 80
    columns)."""
    return ("PID %d has no agent, so no heap, GC, tracemalloc, caches, pools, workers or "
            "snapshots here; %s." % (pid, how_to_get_agent(pid, python)))


def no_agent_sentence(pid: int, python: Optional[str]) -> str:
    """The error of an agent operation asked of an external view (one sentence)."""
    return "PID %d has no memtui agent (this is the external view); %s." % (
        pid, how_to_get_agent(pid, python))


# one reading -----------------------------------------------------------------------------------
def _gone(pid: int) -> NoSuchProcess:
    return NoSuchProcess("No process with PID %d." % pid)


def _refused(pid: int) -> str:
    """Why a part of *pid* could not be read (the reason kept in ``unavailable``)."""
    try:
        uid = os.stat("/proc/%d" % pid).st_uid
    except OSError:
        uid = None
    if uid is not None and uid != os.geteuid() and os.geteuid() != 0:
        return "permission denied: PID %d belongs to uid %d; run memtui as that user or as " \
               "root" % (pid, uid)
    return "permission denied (the process is not dumpable, or ptrace access is restricted)"


class _Reader:
    """Reads parts of one process: a refused part becomes None and a reason; a gone process
    raises NoSuchProcess with our sentence."""

    def __init__(self, psutil: Any, pid: int) -> None:
        self.psutil = psutil
        self.pid = pid
        self.unavailable: Dict[str, str] = {}

    def read(self, fields: Tuple[str, ...], what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except self.psutil.NoSuchProcess:  # ZombieProcess included: it has exited
            raise _gone(self.pid) from None
        except (self.psutil.AccessDenied, PermissionError):
            reason = _refused(self.pid)
        except OSError as exc:  # e.g. smaps of a kernel thread
            reason = "could not read %s: %s" % (what, exc.strerror or exc)
        for name in fields:
            self.unavailable[name] = reason
        return None


def _classify(path: str) -> str:
    if path == "[heap]":
        return "heap"
    if not path or path == "[anon]" or path.startswith("[anon:") or path.startswith("[anon_"):
        return "anon"
    if path == "[stack]" or path.startswith("[stack:"):
        return "stack"
    if path.startswith("/"):
        return "files"
    return "other"  # [vdso], [vvar], [vsyscall], [uprobes] ...


def _mappings(proc: Any) -> Dict[str, Dict[str, int]]:
    out = {name: dict.fromkeys(MAP_FIELDS, 0) for name in CLASSES}
    for m in proc.memory_maps(grouped=False):
        entry = out[_classify(m.path)]
        entry["count"] += 1
        entry["size"] += m.size
        entry["rss"] += m.rss
        entry["pss"] += m.pss
        entry["swap"] += m.swap
        entry["private"] += m.private_clean + m.private_dirty
    return out


def _rss_peak(pid: int) -> Optional[int]:
    """VmHWM of /proc/PID/status, in bytes (psutil does not report the peak)."""
    try:
        with open("/proc/%d/status" % pid, "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _children(psutil: Any, proc: Any) -> Tuple[List[Dict[str, Any]], int, int]:
    """(the largest MAX_CHILDREN children, how many there are, their total rss)."""
    listed: List[Dict[str, Any]] = []
    for child in proc.children(recursive=True):
        try:
            rss = child.memory_info().rss
        except psutil.Error:  # gone meanwhile, or refused
            continue
        listed.append({"pid": child.pid, "command": process_name(child.pid), "rss": rss})
    listed.sort(key=lambda c: -c["rss"])
    return listed[:MAX_CHILDREN], len(listed), sum(c["rss"] for c in listed)


def figures(pid: int, skip: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """One reading of *pid* from outside (see the module doc); NoSuchProcess when it is gone.

    *skip* leaves out slow parts (of SLOW_PARTS) that a poller refreshes less often than the
    rest: they come back empty (None) and the poller puts its last ones in. ``read_ms`` says
    what the reading cost, in all and for each slow part read."""
    import psutil  # noqa: PLC0415 - 20-40 ms to import: only when an external view is asked for

    started = time.perf_counter()
    if pid <= 0 or pid >= 2 ** 31 or not paths.pid_alive(pid):
        raise _gone(pid)
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        raise _gone(pid) from None
    r = _Reader(psutil, pid)
    cost: Dict[str, float] = {}

    def timed(part: str, call: Callable[[], Any]) -> Any:
        if part in skip:
            return None
        t = time.perf_counter()
        try:
            return call()
        finally:
            cost[part] = round((time.perf_counter() - t) * 1000.0, 3)

    with proc.oneshot():
        mem = r.read(("rss", "vms"), "/proc/%d/statm" % pid, proc.memory_info)
        full = r.read(("uss", "pss", "swap"), "/proc/%d/smaps_rollup" % pid,
                      proc.memory_full_info)
        threads = r.read(("threads",), "/proc/%d/status" % pid, proc.num_threads)
        fds = r.read(("fds",), "/proc/%d/fd" % pid, proc.num_fds)
        create_time = r.read(("create_time",), "/proc/%d/stat" % pid, proc.create_time)
        username = r.read(("username",), "/proc/%d/status" % pid, proc.username)
        name = r.read(("name",), "/proc/%d/comm" % pid, proc.name)
    kids = timed("children", lambda: r.read(("children",), "/proc/*/stat",
                                            lambda: _children(psutil, proc)))
    maps = timed("mappings", lambda: r.read(("mappings",), "/proc/%d/smaps" % pid,
                                            lambda: _mappings(proc)))
    python = timed("python", lambda: _python(pid))
    if python is not None and python[1]:
        r.unavailable["python"] = _refused(pid)
    listed, count, kids_rss = kids if kids is not None else (None, None, None)
    cost["total"] = round((time.perf_counter() - started) * 1000.0, 3)
    return {
        "pid": pid,
        "command": process_name(pid),
        "name": name,
        "python": python[0] if python is not None else None,
        "time": time.time(),
        "create_time": create_time,
        "username": username,
        "process": {
            "rss": mem.rss if mem else None,
            "rss_peak": _rss_peak(pid),
            "vms": mem.vms if mem else None,
            "uss": full.uss if full else None,
            "pss": full.pss if full else None,
            "swap": full.swap if full else None,
            "threads": threads,
            "fds": fds,
            "children": count,
            "children_rss": kids_rss,
        },
        "children": listed if listed is not None else [],
        "mappings": maps,
        "unavailable": r.unavailable,
        "read_ms": cost,
    }


# the dashboard's client ------------------------------------------------------------------------
def stats_reply(fig: Dict[str, Any], seq: int) -> Dict[str, Any]:
    """A figure in the shape of the agent's ``stats`` reply, where the two overlap."""
    started = fig.get("create_time")
    return {"mode": "external", "pid": fig["pid"], "t": fig["time"], "seq": seq,
            "process": dict(fig["process"]), "external": fig, "components": [], "alerts": [],
            "uptime": fig["time"] - started if started else None}


def history_row(fig: Dict[str, Any], seq: int) -> Tuple[Any, ...]:
    """A figure as a row of the agent's history (HISTORY_FIELDS; no heap figures: None)."""
    p = fig["process"]
    row = dict.fromkeys(HISTORY_FIELDS)
    row.update({k: p.get(k) for k in ("rss", "vms", "uss", "pss", "swap", "threads", "fds")})
    row.update(seq=seq, t=fig["time"])
    return tuple(row[k] for k in HISTORY_FIELDS)


class ExternalClient:
    """AgentClient's shape over :func:`figures`, for a process without an agent: ``stats()``
    takes a reading and records it in its own history, so the dashboard's feed, graphs and
    header work unchanged; every agent operation raises NoAgent with one sentence."""

    def __init__(self, pid: int, timeout: float = 10.0, capacity: int = HISTORY) -> None:
        self.pid = pid
        self.path: Optional[str] = None
        self.server_pid = pid
        self.timeout = timeout
        self.info: Dict[str, Any] = {}
        self.python: Optional[str] = None
        self._connected = False
        self._lock = threading.Lock()
        self._rows: Deque[Tuple[Any, ...]] = deque(maxlen=capacity)
        self._seq = 0
        self._kept: Dict[str, Dict[str, Any]] = {}  # slow part -> what its last read found
        self._due: Dict[str, float] = {}  # slow part -> monotonic time it is read again

    # connection ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> "ExternalClient":
        """Check that the process is there and learn who it is (cheap: no smaps read)."""
        import psutil  # noqa: PLC0415

        if self.pid <= 0 or self.pid >= 2 ** 31 or not paths.pid_alive(self.pid):
            raise _gone(self.pid)
        try:
            started = psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            raise _gone(self.pid) from None
        except psutil.AccessDenied:
            started = None
        self.python = python_version(self.pid)
        self.info = {"mode": "external", "pid": self.pid,
                     "python": {"version": self.python} if self.python else {},
                     "env": None, "started_at": started, "agent_version": None,
                     "argv": [process_name(self.pid)]}
        self._connected = True
        return self

    def close(self) -> None:
        self._connected = False

    def clone(self) -> "ExternalClient":
        return ExternalClient(self.pid, self.timeout)

    def __enter__(self) -> "ExternalClient":
        if not self._connected:
            self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # what the feed asks ----------------------------------------------------------------------
    def stats(self, components: bool = True, fresh: bool = False) -> Dict[str, Any]:
        """One reading, in the agent's stats shape where it overlaps, recorded in the history.
        The slow parts are those of an earlier reading until they are due again (*fresh*: now)."""
        now = time.monotonic()
        skip = tuple(part for part in SLOW_PARTS
                     if not fresh and part in self._kept and now < self._due.get(part, 0.0))
        try:
            fig = figures(self.pid, skip)
        except NoSuchProcess:
            self._connected = False
            raise
        self._keep(fig, skip, now)
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._rows.append(history_row(fig, seq))
        return stats_reply(fig, seq)

    def _keep(self, fig: Dict[str, Any], skip: Tuple[str, ...], now: float) -> None:
        """Remember the slow parts just read (and when they are due), put back those skipped."""
        for part in SLOW_PARTS:
            if part in skip:
                kept = self._kept[part]
                fig.update({k: v for k, v in kept.items() if k not in ("process", "unavailable")})
                fig["process"].update(kept.get("process", {}))
                fig["unavailable"].update(kept.get("unavailable", {}))
                continue
            self._kept[part] = {
                part: fig[part],
                "process": {k: fig["process"][k] for k in _PROCESS_PARTS.get(part, ())},
                "unavailable": {k: v for k, v in fig["unavailable"].items() if k == part}}
            cost = fig["read_ms"].get(part, 0.0) / 1000.0
            self._due[part] = now + (PYTHON_EVERY if part == "python" else cost / SLOW_SHARE)
        if "python" not in skip:
            self.python = fig["python"]

    def history(self, since: int = 0, limit: Optional[int] = None,
                components: bool = False) -> Dict[str, Any]:
        with self._lock:
            rows = [list(r) for r in self._rows if r[0] > since]
            last = self._seq
        if limit is not None:
            rows = rows[-limit:] if limit > 0 else []
        return {"fields": list(HISTORY_FIELDS), "rows": rows, "last_seq": last,
                "capacity": self._rows.maxlen}

    def events(self, since: int = 0, limit: int = 200) -> Dict[str, Any]:
        return {"events": [], "last_seq": 0}

    # what only an agent can do ---------------------------------------------------------------
    def _no_agent(self) -> NoAgent:
        if not self.info:
            self.python = python_version(self.pid)
        return NoAgent(no_agent_sentence(self.pid, self.python))

    def request(self, op: str, timeout: Optional[float] = None, **args: Any) -> Any:
        raise self._no_agent()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise self._no_agent()

    snapshot_take = snapshot_status = snapshot_list = snapshot_diff = snapshot_suspects = _refuse
    gc_collect = trace_start = trace_stop = heap_top = heap_types = heap_referrers = _refuse
    config_get = config_apply = _refuse
