"""Heap snapshots: build the version-1 document (process and gc figures, the census, the largest
containers, duplicate strings, tracemalloc sites when tracing) and take them; the files (write,
load, list, prune) are snapshot_files.py, whose names are re-exported here.

One snapshot at a time per process: a second ``take`` while one runs raises SnapshotBusy.

The document: ``format`` "memtui-snapshot", ``version`` 1, ``id`` (``PID-TOKEN-UTCSTAMP-N``,
the file stem; TOKEN is random per process, so a later process with the same PID, as in a
container restarted with PID 1, never takes an earlier one's snapshots for its own; earlier
memtui wrote ``PID-UTCSTAMP-N``, still read), ``pid``, ``taken_at``, ``python``, ``argv``,
``env``, ``reason``, ``elapsed_s``, ``process`` (the agent's process figures), ``gc`` {counts,
thresholds, collections, frozen}, ``census`` {complete, budget_s, elapsed_s, objects, bytes,
tracked, untracked, types: [{type, count, size}] by size}, ``containers`` (largest 20 by
length), ``duplicates`` {complete, wasted_bytes, values: top 50}, ``tracemalloc`` (None unless
tracing: frames, traced, peak, by_line top 200, by_traceback top 50). See census.py for how
each is counted.
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import _tracemalloc

from .. import paths
from .events import SEVERITIES
from .snapshot_files import (  # noqa: F401 - re-exported: memtui.agent.snapshots is the API
    FORMAT, MAX_DOCUMENT, SUFFIX, VERSION, Progress, SnapshotError, _stamp, _token, instance,
    instance_of, list_dir, load, metadata, prepare_dir, prune, snapshot_names, write)

REASONS = ("manual", "interval", "threshold")
PHASES = ("census", "duplicates", "tracemalloc", "writing")
DEFAULT_BUDGET_S = 1.0
# While tracemalloc traces, every allocation the census makes (an int per id(), a reference
# count) is traced too: the walk runs 5-10x slower, so its default budget is longer.
TRACING_BUDGET_S = 5.0
DEFAULT_RETENTION = 20
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # memtui/
# tracemalloc sites that are never the application's: the agent and what it runs on (its profile
# is parsed by memtui.config), the CLI side, tracemalloc and the import machinery. The building
# blocks (memtui/runtime: a Cache's entries) and the demo service are the application's.
_NOT_APP_DIRS = tuple(os.path.join(_PACKAGE, d) + os.sep for d in ("agent", "cli", "config"))
_NOT_APP = (os.path.join(os.path.dirname(os.__file__), "tracemalloc.py"),
            "<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>", "<unknown>"
            ) + tuple(os.path.join(_PACKAGE, f) for f in ("protocol.py", "client.py", "paths.py"))

ERROR = "error" if "error" in SEVERITIES else "warning"  # the severity of a failed snapshot


class SnapshotBusy(SnapshotError):
    """Another snapshot is being taken in this process."""

    code = "busy"


# -- one snapshot at a time, and what it is doing (read by `snapshot.status`) --------------------
_lock = threading.Lock()
_counter = [0]
_status: Dict[str, Any] = {"running": False, "phase": None, "done": 0, "total": None,
                           "started_at": None, "id": None, "reason": None, "last": None}


def _reset_after_fork() -> None:
    """A child forked while its parent took a snapshot must not inherit a held lock."""
    global _lock
    _lock = threading.Lock()
    _token[0] = os.urandom(4).hex()
    _status.update(running=False, phase=None, done=0, total=None, started_at=None, id=None,
                   reason=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def status() -> Dict[str, Any]:
    """``{"running", "phase", "done", "total", "started_at", "id", "reason", "last"}``; ``last``
    is the metadata of the last snapshot this process finished, or ``{"error": ...}``."""
    snap = dict(_status)
    if snap["started_at"] is not None and snap["running"]:
        snap["elapsed_s"] = round(time.time() - snap["started_at"], 3)
    return snap


# -- where ---------------------------------------------------------------------------------------
def _profiler(agent: Any) -> Dict[str, Any]:
    section = getattr(agent, "settings", None) or {}
    value = section.get("profiler") if isinstance(section, dict) else None
    return value if isinstance(value, dict) else {}


def directory(agent: Any) -> str:
    """The agent's snapshot directory: profile ``profiler.output_dir``, else
    ``<runtime dir>/snapshots``."""
    configured = _profiler(agent).get("output_dir")
    if isinstance(configured, str) and configured.strip():
        return os.path.abspath(os.path.expanduser(configured.strip()))
    options = getattr(agent, "options", None)
    runtime = getattr(options, "runtime_dir", None) or paths.runtime_dir()
    return os.path.join(runtime, "snapshots")


default_dir = directory  # take() has a parameter of that name


def retention(agent: Any) -> int:
    """How many of its own snapshots an agent keeps: profile ``profiler.retention``, else 20."""
    value = _profiler(agent).get("retention", DEFAULT_RETENTION)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return DEFAULT_RETENTION
    return value


# -- take ----------------------------------------------------------------------------------------
def take(agent: Any, reason: str = "manual", trace: Optional[bool] = None,
         budget_s: Optional[float] = None, directory: Optional[str] = None,
         progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Take one snapshot and write it; return its metadata ``{"id", "path", "bytes",
    "elapsed_s", "complete", "objects", "reason", "pid", "taken_at", "tracemalloc"}``.

    Tracemalloc sites are recorded when tracing; *trace* True starts tracing first (and leaves
    it on; sites then cover what was allocated since). *budget_s* bounds the census walk and,
    again, the duplicates pass (default 1 s; 5 s while tracing). *directory*: default
    ``directory(agent)``. *progress(phase, done, total)* is called as it goes (phases: census,
    duplicates, tracemalloc, writing).

    Emits a "snapshot" event (info when written, error when not) and prunes this process's
    snapshots (this instance's: not an earlier process's with the same PID) to
    ``retention(agent)``. Raises SnapshotBusy while another runs, SnapshotError
    (with the OSError as its cause) when it cannot be written: then no file is left behind.
    """
    if reason not in REASONS:
        raise ValueError("reason must be one of %s, got %r" % (", ".join(REASONS), reason))
    if budget_s is not None:
        budget = float(budget_s)
    elif trace or _tracemalloc.is_tracing():
        budget = TRACING_BUDGET_S
    else:
        budget = DEFAULT_BUDGET_S
    if not _lock.acquire(blocking=False):
        raise SnapshotBusy(_busy_message())
    try:
        _counter[0] += 1
        started = time.time()
        snap_id = "%s-%s-%d" % (instance(), _stamp(started), _counter[0])
        _status.update(running=True, phase="starting", done=0, total=None, started_at=started,
                       id=snap_id, reason=reason)

        def report(phase: str, done: int, total: Optional[int]) -> None:
            _status.update(phase=phase, done=done, total=total)
            if progress is not None:
                progress(phase, done, total)

        where = directory or default_dir(agent)
        try:
            prepare_dir(where)
            if trace and not _tracemalloc.is_tracing():
                _start_tracing(agent)
            doc = build(agent, snap_id, started, reason, budget, progress=report)
            path, size = write(doc, where, report)
        except Exception as exc:
            message = str(exc) if isinstance(exc, SnapshotError) else "%s: %s" % (
                type(exc).__name__, exc)
            _status["last"] = {"id": snap_id, "error": message}
            _emit(agent, ERROR, "heap snapshot %s failed: %s" % (snap_id, message),
                  id=snap_id, reason=reason, directory=where, error=message)
            raise
        meta = metadata(doc, path, size)
        _status["last"] = meta
        _emit(agent, "info", "heap snapshot %s: %s objects in %.2f s, %s written to %s%s" % (
            snap_id, "{:,}".format(meta["objects"] or 0), meta["elapsed_s"], _fmt(size), path,
            "" if meta["complete"] else " (census stopped at its %gs budget)" % budget),
            **{k: meta[k] for k in ("id", "path", "bytes", "elapsed_s", "complete", "objects",
                                    "reason")})
        try:
            prune(where, retention(agent), instance=instance())
        except Exception as exc:  # retention is housekeeping: the snapshot itself is fine
            _record(agent, "snapshot retention", exc)
        return meta
    finally:
        _status.update(running=False, phase=None)
        _lock.release()


def _busy_message() -> str:
    s = _status
    started = s.get("started_at")
    since = " for %.1f s" % (time.time() - started) if started else ""
    where = ""
    if s.get("phase") in PHASES:
        where = ", now in its %s phase" % s["phase"]
        if s.get("total"):
            where += " (%d%%)" % (100 * (s.get("done") or 0) // s["total"])
    return ("a heap snapshot (%s) has been running in PID %d%s%s; one runs at a time, try again "
            "when it finishes" % (s.get("reason") or "?", os.getpid(), since, where))


def _start_tracing(agent: Any) -> None:
    options = getattr(agent, "options", None)
    nframes = getattr(options, "trace_frames", 1) or 1
    _tracemalloc.start(nframes)
    events = getattr(agent, "events", None)
    if events is not None:
        events.emit("action", "info", "tracemalloc started with %d frame(s) for a heap snapshot"
                    % nframes, action="trace.start", nframes=nframes)


def _emit(agent: Any, severity: str, message: str, **data: Any) -> None:
    events = getattr(agent, "events", None)
    if events is not None:
        events.emit("snapshot", severity, message, **data)


def _record(agent: Any, where: str, exc: BaseException) -> None:
    record = getattr(agent, "record_error", None)
    if record is not None:
        record(where, exc)


def _fmt(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return ("%d %s" % (value, unit)) if unit == "B" else "%.1f %s" % (value, unit)
        value /= 1024.0
    return "%.1f GiB" % value


# -- the document --------------------------------------------------------------------------------
def build(agent: Any, snap_id: str, taken_at: float, reason: str, budget_s: float,
          progress: Optional[Progress] = None) -> Dict[str, Any]:
    """The version-1 snapshot document (fields: see the module docstring)."""
    from . import census  # noqa: PLC0415 - only snapshots need it

    t0 = time.perf_counter()
    collector = getattr(agent, "process", None)
    if collector is None:
        from .collectors.process import ProcessCollector  # noqa: PLC0415

        collector = ProcessCollector()
    try:
        process = collector.collect()
    except Exception as exc:
        process = {"error": "%s: %s" % (type(exc).__name__, exc)}
    gc_stats = {"counts": list(gc.get_count()), "thresholds": list(gc.get_threshold()),
                "collections": [s.get("collections", 0) for s in gc.get_stats()],
                "frozen": gc.get_freeze_count()}
    c = census.Census(budget_s=budget_s, progress=progress)
    found = c.run()
    dups = c.duplicates()
    del c
    tm = None
    if _tracemalloc.is_tracing():
        if progress is not None:
            progress("tracemalloc", 0, None)
        tm = tracemalloc_sites()
        if progress is not None:
            progress("tracemalloc", 1, 1)
    options = getattr(agent, "options", None)
    return {
        "format": FORMAT, "version": VERSION, "id": snap_id, "pid": os.getpid(),
        "taken_at": taken_at, "python": "%d.%d.%d" % sys.version_info[:3],
        "argv": [str(a) for a in sys.argv], "env": getattr(options, "env", None),
        "reason": reason, "elapsed_s": round(time.perf_counter() - t0, 6),
        "process": process, "gc": gc_stats,
        "census": found["census"], "containers": found["containers"], "duplicates": dups,
        "tracemalloc": tm,
    }


def tracemalloc_sites(lines: int = 200, tracebacks: int = 50) -> Optional[Dict[str, Any]]:
    """Traced memory grouped by the allocating file:line and by whole traceback, from the raw
    traces (``_tracemalloc._get_traces``: no Snapshot/Frame objects per trace). Sites in the
    agent's side of memtui (_NOT_APP_DIRS, _NOT_APP), tracemalloc and the import machinery are
    left out; memtui's building blocks (memtui/runtime: a Cache's entries) are the application's
    and stay. Tracebacks list the most recent frame first. None when not tracing."""
    if not _tracemalloc.is_tracing():
        return None
    frames = _tracemalloc.get_traceback_limit()
    traced, peak = _tracemalloc.get_traced_memory()
    raw = _tracemalloc._get_traces()
    by_tb: Dict[Any, List[int]] = {}
    get = by_tb.get
    for trace in raw:
        tb = trace[2]
        e = get(tb)
        if e is None:
            by_tb[tb] = [trace[1], 1]
        else:
            e[0] += trace[1]
            e[1] += 1
    del raw
    by_line: Dict[Tuple[str, int], List[int]] = {}
    kept: List[Tuple[int, int, Any]] = []
    for tb, (size, count) in by_tb.items():
        if not tb:
            continue
        filename, lineno = tb[0]
        if filename in _NOT_APP or filename.startswith(_NOT_APP_DIRS):
            continue
        e = by_line.get((filename, lineno))
        if e is None:
            by_line[(filename, lineno)] = [size, count]
        else:
            e[0] += size
            e[1] += count
        kept.append((size, count, tb))
    by_tb.clear()
    top_lines = sorted(by_line.items(), key=lambda kv: (-kv[1][0], kv[0]))[:lines]
    kept.sort(key=lambda x: -x[0])
    return {
        "frames": frames, "traced": traced, "peak": peak,
        "by_line": [{"file": f, "line": ln, "size": v[0], "count": v[1]}
                    for (f, ln), v in top_lines],
        "by_traceback": [{"frames": [{"file": f, "line": ln} for f, ln in tb],
                          "size": size, "count": count}
                         for size, count, tb in kept[:tracebacks]],
    }
