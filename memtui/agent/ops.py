"""The agent's operations: argument checking, rate limiting of mutating ops, and dispatch.

Each op declares the arguments it accepts; anything else is a ``bad_args`` error before it runs.
"""
from __future__ import annotations

import gc
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

import _tracemalloc

from .. import protocol

Handler = Callable[[Any, "Args", Dict[str, Any]], Any]
OPS: Dict[str, Tuple[Handler, bool, Tuple[str, ...]]] = {}
SLOW = set()  # ops the server runs on its worker thread so they never stall other clients
_AGENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the memtui package


class BadArgs(Exception):
    pass


class Unavailable(Exception):
    pass


class Busy(Unavailable):
    """The op cannot run now because the same work is already running (answered ``busy``)."""


class RateLimited(Exception):
    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Args:
    def __init__(self, op: str, raw: Dict[str, Any], bucket: Any = None) -> None:
        self.op = op
        self.raw = raw
        self._bucket = bucket

    def gate(self) -> None:
        """Mutating ops call this after their arguments checked out and before acting, so a
        malformed request never spends a rate-limit token."""
        if self._bucket is not None:
            wait = self._bucket.take()
            if wait:
                raise RateLimited(wait)

    def int(self, key: str, default: Optional[int], lo: int, hi: int) -> Optional[int]:
        value = self.raw.get(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadArgs("%s: argument %r must be an integer, got %s"
                          % (self.op, key, _short(value)))
        if not lo <= value <= hi:
            raise BadArgs("%s: argument %r must be between %d and %d, got %d"
                          % (self.op, key, lo, hi, value))
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise BadArgs("%s: argument %r must be true or false, got %s"
                          % (self.op, key, _short(value)))
        return value

    def choice(self, key: str, default: str, choices: Tuple[str, ...]) -> str:
        value = self.raw.get(key, default)
        if value not in choices:
            raise BadArgs("%s: argument %r must be one of %s, got %s"
                          % (self.op, key, ", ".join(choices), _short(value)))
        return value


def op(name: str, args: Tuple[str, ...] = (), mutating: bool = False,
       slow: bool = False) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        OPS[name] = (fn, mutating, args)
        if slow:
            SLOW.add(name)
        return fn
    return deco


def dispatch(agent: Any, msg: Dict[str, Any], ctx: Dict[str, Any]) -> Dict[str, Any]:
    """Turn one decoded request into one response dict; never raises."""
    req_id = msg.get("id")
    if isinstance(req_id, bool) or not isinstance(req_id, (int, str, type(None))):
        return protocol.error(None, protocol.BAD_REQUEST, "request id must be an integer or string")
    version = msg.get("v", protocol.VERSION)
    if version != protocol.VERSION:
        return protocol.error(req_id, protocol.UNSUPPORTED_VERSION,
                              "protocol version %r is not supported; this agent speaks %d"
                              % (version, protocol.VERSION))
    name = msg.get("op")
    if not isinstance(name, str):
        return protocol.error(req_id, protocol.BAD_REQUEST, "request has no 'op' string")
    entry = OPS.get(name)
    if entry is None:
        return protocol.error(req_id, protocol.UNKNOWN_OP, "unknown op %r; this agent knows %s"
                              % (name[:64], ", ".join(sorted(OPS))))
    handler, mutating, allowed = entry
    raw = msg.get("args")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        return protocol.error(req_id, protocol.BAD_ARGS, "%s: 'args' must be an object" % name)
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        return protocol.error(req_id, protocol.BAD_ARGS, "%s: unknown argument %s; accepted: %s"
                              % (name, ", ".join(repr(u[:64]) for u in unknown),
                                 ", ".join(allowed) or "none"))
    args = Args(name, raw, agent.bucket if mutating else None)
    try:
        return protocol.ok(req_id, handler(agent, args, ctx))
    except RateLimited as exc:
        return protocol.error(req_id, protocol.RATE_LIMITED,
                              "%s is rate-limited; retry in %.1fs" % (name, exc.wait),
                              retry_after_s=round(exc.wait, 3))
    except BadArgs as exc:
        return protocol.error(req_id, protocol.BAD_ARGS, str(exc))
    except Busy as exc:
        return protocol.error(req_id, protocol.BUSY, str(exc))
    except Unavailable as exc:
        return protocol.error(req_id, protocol.UNAVAILABLE, str(exc))
    except Exception as exc:
        agent.record_error("op " + name, exc)
        return protocol.error(req_id, protocol.INTERNAL, "%s failed: %s: %s"
                              % (name, type(exc).__name__, exc))


@op("hello")
def _hello(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    info = agent.hello()
    info["ops"] = sorted(OPS)
    info["mutating_ops"] = sorted(k for k, v in OPS.items() if v[1])
    return info


@op("stats", args=("components", "fresh"))
def _stats(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    return agent.stats_json(a.bool("components", True), a.bool("fresh", False))


@op("history", args=("since", "limit", "components"))
def _history(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    since = a.int("since", 0, 0, 2 ** 62)
    limit = a.int("limit", None, 1, agent.options.history)
    return agent.history(since=since or 0, limit=limit, components=a.bool("components", False))


@op("events", args=("since", "limit"))
def _events(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    return agent.events.since(a.int("since", 0, 0, 2 ** 62) or 0, a.int("limit", 200, 1, 1000))


@op("gc.collect", args=("generation",), mutating=True, slow=True)
def _gc_collect(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    gen = a.int("generation", 2, 0, 2)
    a.gate()
    before = agent.process.collect().get("rss", 0)
    t0 = time.perf_counter()
    collected = gc.collect(gen)
    ms = (time.perf_counter() - t0) * 1000.0
    after = agent.process.collect().get("rss", 0)
    agent.events.emit("action", "info",
                      "gc.collect(%d) found %d unreachable objects in %.1f ms" % (gen, collected, ms),
                      action="gc.collect", generation=gen, collected=collected, duration_ms=ms,
                      rss_freed=before - after, peer_pid=ctx.get("peer_pid"))
    return {"generation": gen, "collected": collected, "duration_ms": ms,
            "rss_before": before, "rss_after": after, "rss_freed": before - after}


@op("trace.start", args=("nframes",), mutating=True)
def _trace_start(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    nframes = a.int("nframes", agent.options.trace_frames, 1, 100)
    a.gate()
    if _tracemalloc.is_tracing():
        current = _tracemalloc.get_traceback_limit()
        if current != nframes and "nframes" in a.raw:
            raise BadArgs("trace.start: already tracing with %d frames; stop tracing first to "
                          "change it to %d" % (current, nframes))
        return {"tracing": True, "nframes": current, "already": True}
    import tracemalloc  # noqa: F401,PLC0415 - import now so heap.top's later import is not traced

    _tracemalloc.start(nframes)
    agent.events.emit("action", "info", "tracemalloc started with %d frame(s)" % nframes,
                      action="trace.start", nframes=nframes, peer_pid=ctx.get("peer_pid"))
    return {"tracing": True, "nframes": nframes, "already": False}


@op("trace.stop", mutating=True)
def _trace_stop(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    a.gate()
    was = _tracemalloc.is_tracing()
    if was:
        _tracemalloc.stop()
        agent.events.emit("action", "info", "tracemalloc stopped", action="trace.stop",
                          peer_pid=ctx.get("peer_pid"))
    return {"tracing": False, "was_tracing": was}


@op("heap.top", args=("limit", "group_by", "include_agent"), slow=True)
def _heap_top(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    limit = a.int("limit", 20, 1, 500)
    group_by = a.choice("group_by", "lineno", ("lineno", "filename", "traceback"))
    include_agent = a.bool("include_agent", False)
    if not _tracemalloc.is_tracing():
        raise Unavailable("tracemalloc is not tracing in PID %d; start it with "
                          "`memtui trace %d start`" % (agent.pid, agent.pid))
    import tracemalloc  # noqa: PLC0415 - heavy (pickle, linecache); only this op needs it

    t0 = time.perf_counter()
    snap = tracemalloc.take_snapshot()
    # Group first, then drop our own and import-machinery sites: Snapshot.filter_traces builds
    # an object per trace (6 s for 200k traces here), the grouped list is a few hundred rows.
    excluded = (tracemalloc.__file__, "<frozen importlib._bootstrap>",
                "<frozen importlib._bootstrap_external>", "<unknown>")
    own = _AGENT_DIR + os.sep  # all of memtui: the agent's buffers are not the app's memory
    stats = [st for st in snap.statistics(group_by)
             if st.traceback[0].filename not in excluded
             and (include_agent or not st.traceback[0].filename.startswith(own))]
    entries = []
    for st in stats[:limit]:
        frame = st.traceback[0]
        item: Dict[str, Any] = {
            "file": frame.filename,
            "line": frame.lineno if group_by != "filename" else None,
            "size": st.size,
            "count": st.count,
            "avg": st.size // st.count if st.count else 0,
        }
        if group_by == "traceback":
            item["traceback"] = ["%s:%d" % (f.filename, f.lineno) for f in st.traceback]
        entries.append(item)
    return {
        "group_by": group_by,
        "entries": entries,
        "sites": len(stats),
        "total_size": sum(s.size for s in stats),
        "total_count": sum(s.count for s in stats),
        "nframes": tracemalloc.get_traceback_limit(),
        "elapsed_ms": (time.perf_counter() - t0) * 1000.0,
    }


@op("tuner.recommend", args=("window",))
def _tuner_recommend(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    hi = agent.options.history
    window = a.int("window", min(120, hi), 1, hi)
    from ..runtime import tuner  # noqa: PLC0415 - only this op needs it; keeps start-up lean

    history = agent.history(limit=window, components=True)
    settings = {"gc": {"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count() > 0}}
    return [r.to_dict() for r in tuner.recommend(history, settings=settings)]


from . import config_ops  # noqa: E402,F401 - registers config.get and config.apply
from . import insight_ops  # noqa: E402,F401 - registers snapshot.diff/suspects, heap.referrers
from . import snapshot_ops  # noqa: E402,F401 - registers snapshot.take/status/list and heap.types
