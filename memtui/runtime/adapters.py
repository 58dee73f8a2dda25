"""Adapters: ``watch(obj)`` reports caches, executors, queues, event loops and SQLAlchemy pools
the app already has, in the native blocks' stats shapes (``_stats.SHAPES``; None = unknowable).

Stdlib only: third-party objects are recognised by their class's module and attributes, never
imported. Counting that the watched object does not do itself is added without changing behaviour:
- cachetools caches get their ``__class__`` swapped to a generated subclass (one per class) whose
  overrides count hits, misses and evictions by cause and then call the original methods; copies
  and pickles come out as the plain original class; ``unwatch()`` swaps it back.
- executors, queues and SQLAlchemy pools get an instance attribute shadowing ``submit`` /
  ``put``+``get`` / ``connect`` that counts and calls the class's method; ``unwatch()`` deletes it.
Each adapter holds its object weakly and lives exactly as long as the object (a
``weakref.finalize`` on the object owns it), so the registry entry goes when the object does; the
hooks hold it weakly too (a saved ``ex.submit`` does not keep a dropped executor alive).
The stdlib adapters and watch()/unwatch() are here; cachetools and SQLAlchemy in ``_adapters_3p``,
what every adapter shares in ``_adapter_base``.
"""
from __future__ import annotations

import importlib
import sys
import threading
import time
import weakref
from typing import Any, Dict, Optional

from ..agent import lifecycle as _lifecycle
from . import _adapters_3p
from ._adapter_base import _Adapter, _mro_has, _shadow, _shape, _unshadow
from ._adapters_3p import CachetoolsAdapter, SqlAlchemyPoolAdapter
from ._stats import hit_rate

SUPPORTED = ("functools.lru_cache functions, cachetools caches (or @cachetools.cached functions), "
             "concurrent.futures ThreadPoolExecutor/ProcessPoolExecutor, queue.Queue, asyncio "
             "event loops, SQLAlchemy Engine/Pool")
_LIVE: Dict[int, Any] = {}  # id(watched object) -> adapter; entries leave with their object
_LOCK = threading.Lock()
_COUNTS = _adapters_3p._COUNTS  # still importable from here: unwatch()'s tests look for it


# -- functools.lru_cache -----------------------------------------------------------------------
class LruCacheAdapter(_Adapter):
    kind = "cache"

    def read(self, fn: Any) -> Dict[str, Any]:
        hits, misses, maxsize, currsize = fn.cache_info()
        size_ev = max(0, misses - currsize) if maxsize else 0
        return _shape("cache", policy="lru", entries=currsize, max_entries=maxsize, hits=hits,
                      misses=misses, hit_rate=hit_rate(hits, misses), loads=misses,
                      evictions={"size": size_ev},
                      note="evictions estimated as misses - currsize (cache_clear() skews it)")


# -- concurrent.futures -----------------------------------------------------------------------
class ExecutorAdapter(_Adapter):
    kind = "workers"

    def __init__(self, ex: Any, name: str) -> None:
        super().__init__(ex, name)
        self.process = _mro_has(ex, "concurrent", "ProcessPoolExecutor")
        ref, c, submit = weakref.ref(ex), self.counts, type(ex).submit

        def done(fut: Any, t0: float) -> None:
            with c.lock:
                if fut.cancelled():
                    c.cancelled += 1
                elif fut.exception() is not None:
                    c.failed += 1
                else:
                    c.completed += 1
                c.latency.add(time.perf_counter() - t0)
                c.rate.mark()

        def wrapper(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            try:
                fut = submit(ref(), fn, *args, **kwargs)
            except RuntimeError:  # shut down (or broken): the executor refused the task
                with c.lock:
                    c.rejected += 1
                raise
            with c.lock:
                c.submitted += 1
            t0 = time.perf_counter()
            fut.add_done_callback(lambda f: done(f, t0))
            return fut

        _shadow(ex, "submit", wrapper)

    def detach(self, ex: Any) -> None:
        _unshadow(ex, "submit")

    def read(self, ex: Any) -> Dict[str, Any]:
        c = self.counts
        with c.lock:
            in_flight = c.submitted - c.completed - c.failed - c.cancelled
            p50, p95 = c.latency.percentile_ms(50), c.latency.percentile_ms(95)
            throughput = c.rate.per_second()
        if self.process:
            workers = len(getattr(ex, "_processes", None) or ())
            pending = getattr(ex, "_pending_work_items", None)
            in_flight = len(pending) if pending is not None else in_flight
            active = min(in_flight, workers)  # running vs pre-queued cannot be told apart
            queued = in_flight - active
        else:
            workers = len(getattr(ex, "_threads", None) or ())
            q = getattr(ex, "_work_queue", None)
            queued = q.qsize() if q is not None else 0
            active = max(0, min(workers, in_flight - queued))
        return _shape("workers", active=active, idle=max(0, workers - active), queued=queued,
                      max_workers=getattr(ex, "_max_workers", None), completed=c.completed,
                      failed=c.failed, rejected=c.rejected, latency_p50_ms=p50,
                      latency_p95_ms=p95, throughput_per_s=throughput, throttled=False,
                      executor="process" if self.process else "thread", workers=workers,
                      cancelled=c.cancelled, note="latency is submit-to-done; since watch()")


# -- queue.Queue ------------------------------------------------------------------------------
class QueueAdapter(_Adapter):
    kind = "workers"

    def __init__(self, q: Any, name: str) -> None:
        super().__init__(q, name)
        ref, c, cls = weakref.ref(q), self.counts, type(q)
        full = sys.modules["queue"].Full

        def put(item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
            try:
                cls.put(ref(), item, block, timeout)
            except full:
                with c.lock:
                    c.rejected += 1
                raise
            with c.lock:
                c.puts += 1

        def get(block: bool = True, timeout: Optional[float] = None) -> Any:
            item = cls.get(ref(), block, timeout)
            with c.lock:
                c.gets += 1
                c.rate.mark()
            return item

        _shadow(q, "put", put)
        _shadow(q, "get", get)

    def detach(self, q: Any) -> None:
        _unshadow(q, "put", "get")

    def read(self, q: Any) -> Dict[str, Any]:
        c = self.counts
        with c.lock:
            throughput = c.rate.per_second()
        consumers = getattr(getattr(q, "not_empty", None), "_waiters", None)
        producers = getattr(getattr(q, "not_full", None), "_waiters", None)
        return _shape("workers", idle=len(consumers) if consumers is not None else None,
                      queued=q._qsize() if hasattr(q, "_qsize") else q.qsize(),
                      queue_size=q.maxsize or None, completed=c.gets, rejected=c.rejected,
                      throughput_per_s=throughput, throttled=False, puts=c.puts, gets=c.gets,
                      unfinished=getattr(q, "unfinished_tasks", None),
                      blocked_producers=len(producers) if producers is not None else None,
                      note="idle = consumers blocked in get(); completed = items taken")


# -- asyncio ----------------------------------------------------------------------------------
class LoopAdapter(_Adapter):
    """Task count of an event loop, taken on the loop's own thread (``all_tasks`` is not
    thread-safe): each stats() asks the loop for a fresh snapshot and returns the last one."""

    kind = "workers"

    def __init__(self, loop: Any, name: str) -> None:
        super().__init__(loop, name)
        self.tasks: Optional[int] = None
        self.lag_ms: Optional[float] = None
        self._asked: Optional[float] = None

    def _snapshot(self) -> None:
        loop = self._ref()
        asked, self._asked = self._asked, None
        if loop is None:
            return
        if asked is not None:
            self.lag_ms = (time.perf_counter() - asked) * 1000.0
        self.tasks = len(importlib.import_module("asyncio").all_tasks(loop))

    def read(self, loop: Any) -> Dict[str, Any]:
        running = loop.is_running()
        if not loop.is_closed():
            if not running:
                self._snapshot()  # nothing runs it: reading here races no one
            elif self._asked is None:
                self._asked = time.perf_counter()
                try:
                    loop.call_soon_threadsafe(self._snapshot)
                except RuntimeError:  # closed meanwhile
                    self._asked = None
        ready = getattr(loop, "_ready", None)
        return _shape("workers", active=self.tasks, throttled=False, tasks=self.tasks,
                      lag_ms=self.lag_ms, running=running,
                      ready_callbacks=len(ready) if ready is not None else None,
                      note="tasks as of the loop's last snapshot; lag_ms = how long it took")


# -- watch / unwatch --------------------------------------------------------------------------
def _adapter_for(obj: Any) -> Any:
    """(adapter class, object to watch, default name) for *obj*; TypeError if unsupported."""
    tname = type(obj).__name__
    inner = getattr(obj, "cache", None)
    if inner is not None and hasattr(obj, "cache_key") and _mro_has(inner, "cachetools", "Cache"):
        return CachetoolsAdapter, inner, getattr(obj, "__qualname__", tname)
    if callable(getattr(obj, "cache_info", None)) and callable(getattr(obj, "cache_clear", None)) \
            and hasattr(obj, "__wrapped__"):
        return LruCacheAdapter, obj, getattr(obj, "__qualname__", tname)
    if _mro_has(obj, "cachetools", "Cache"):
        return CachetoolsAdapter, obj, tname
    if _mro_has(obj, "concurrent", "ThreadPoolExecutor") or \
            _mro_has(obj, "concurrent", "ProcessPoolExecutor"):
        return ExecutorAdapter, obj, getattr(obj, "_thread_name_prefix", None) or tname
    if _mro_has(obj, "queue", "Queue"):
        return QueueAdapter, obj, tname
    if all(callable(getattr(obj, a, None)) for a in ("call_soon_threadsafe", "is_running",
                                                      "run_until_complete", "is_closed")):
        return LoopAdapter, obj, "asyncio-loop"
    if type(obj).__module__.startswith("sqlalchemy"):
        target = getattr(obj, "sync_engine", obj)  # an AsyncEngine wraps a sync one
        if hasattr(target, "pool") and hasattr(target, "dialect"):
            return SqlAlchemyPoolAdapter, target, "sqlalchemy-%s" % target.dialect.name
        if callable(getattr(target, "connect", None)) and hasattr(target, "_do_get"):
            return SqlAlchemyPoolAdapter, target, type(target).__name__
    raise TypeError("memtui.watch() cannot watch a %s; it supports %s"
                    % (type(obj).__qualname__, SUPPORTED))


def _forget(key: int, adapter: Any) -> None:
    with _LOCK:
        if _LIVE.get(key) is adapter:
            del _LIVE[key]


def watch(obj: Any, name: Optional[str] = None, kind: Optional[str] = None) -> str:
    """Register an adapter reporting *obj* with the agent; returns its registry name.

    Watching the same object again returns the same name. The adapter lives as long as *obj*;
    ``kind`` overrides the kind it is listed under. TypeError for an unsupported object.
    """
    if kind is not None and kind not in ("cache", "pool", "workers", "batch", "custom"):
        raise ValueError("kind must be one of cache, pool, workers, batch, custom; got %r" % kind)
    factory, target, default = _adapter_for(obj)
    with _LOCK:
        adapter = _LIVE.get(id(target))
        if adapter is None or adapter.target() is not target:
            adapter = factory(target, str(name or default))
            _LIVE[id(target)] = adapter
            adapter.finalizer = weakref.finalize(target, _forget, id(target), adapter)
            adapter.finalizer.atexit = False
    return _lifecycle.register(adapter, name=adapter.name, kind=kind or adapter.kind)


def unwatch(obj: Any) -> bool:
    """Stop watching *obj*: remove its adapter and every hook it installed."""
    try:
        target = _adapter_for(obj)[1]
    except TypeError:
        return False
    with _LOCK:
        adapter = _LIVE.pop(id(target), None)
    if adapter is None or adapter.target() is not target:
        return False
    adapter.finalizer.detach()
    adapter.detach(target)
    _lifecycle.unregister(adapter)
    return True

