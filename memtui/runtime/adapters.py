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
"""
from __future__ import annotations

import copyreg
import importlib
import sys
import threading
import time
import weakref
from typing import Any, Callable, Dict, Optional

from ..agent import core as _core
from ._stats import SHAPES, LatencyWindow, RateMeter, hit_rate

SUPPORTED = ("functools.lru_cache functions, cachetools caches (or @cachetools.cached functions), "
             "concurrent.futures ThreadPoolExecutor/ProcessPoolExecutor, queue.Queue, asyncio "
             "event loops, SQLAlchemy Engine/Pool")
_LIVE: Dict[int, Any] = {}  # id(watched object) -> adapter; entries leave with their object
_LOCK = threading.Lock()
_COUNTS = "_memtui_counts"  # instance-dict key of a watched cachetools cache's counters
_MISS = object()


class _Counts:
    """Counters shared by an adapter and the hooks it installed; updated under ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits = self.misses = self.size = self.expired = self.explicit = self.replaced = 0
        self.setting = self.popping = 0
        self.submitted = self.completed = self.failed = self.cancelled = self.rejected = 0
        self.puts = self.gets = self.waiting = 0
        self.created = self.destroyed = self.invalidated = self.checkouts = self.timeouts = 0
        self.latency = LatencyWindow(512)
        self.rate = RateMeter()


class _Adapter:
    kind = "custom"

    def __init__(self, obj: Any, name: str) -> None:
        self.name = name
        self._ref = weakref.ref(obj)
        self.counts = _Counts()

    def target(self) -> Any:
        return self._ref()

    def stats(self) -> Dict[str, Any]:
        obj = self._ref()
        return self.read(obj) if obj is not None else {}

    def read(self, obj: Any) -> Dict[str, Any]:
        raise NotImplementedError

    def detach(self, obj: Any) -> None:
        """Undo what attach did (default: nothing was attached)."""


def _shape(kind: str, **values: Any) -> Dict[str, Any]:
    """Every key of the kind's shape (None unless given) plus the extras given."""
    out: Dict[str, Any] = dict.fromkeys(SHAPES[kind])
    out.update(values)
    return out


def _mro_has(obj: Any, module: str, name: str) -> bool:
    return any(c.__module__.split(".")[0] == module and c.__name__ == name
               for c in type(obj).__mro__)


def _shadow(obj: Any, attr: str, wrapper: Callable[..., Any]) -> None:
    wrapper.__name__ = attr
    wrapper.__wrapped__ = getattr(type(obj), attr)  # type: ignore[attr-defined]
    obj.__dict__[attr] = wrapper


def _unshadow(obj: Any, *attrs: str) -> None:
    for attr in attrs:
        obj.__dict__.pop(attr, None)


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


# -- cachetools -------------------------------------------------------------------------------
_CLASSES: Dict[type, type] = {}


def _counting_class(base: type) -> type:
    """A subclass of *base* whose overrides count, then defer to *base*'s own methods."""
    cls = _CLASSES.get(base)
    if cls is not None:
        return cls

    def __getitem__(self: Any, key: Any) -> Any:
        c = self.__dict__[_COUNTS]
        before = c.misses
        value = base.__getitem__(self, key)  # a miss goes through __missing__ below
        if c.misses == before:
            c.hits += 1
        return value

    def __missing__(self: Any, key: Any) -> Any:
        self.__dict__[_COUNTS].misses += 1
        return base.__missing__(self, key)

    def get(self: Any, key: Any, default: Any = None) -> Any:
        value = base.get(self, key, _MISS)
        if value is _MISS:
            self.__dict__[_COUNTS].misses += 1
            return default
        return value

    def __setitem__(self: Any, key: Any, value: Any) -> None:
        c = self.__dict__[_COUNTS]
        if key in self.__dict__.get("_Cache__data", ()):
            c.replaced += 1
        c.setting += 1
        try:
            base.__setitem__(self, key, value)
        finally:
            c.setting -= 1

    def __delitem__(self: Any, key: Any) -> None:
        c = self.__dict__[_COUNTS]
        if not c.popping:
            c.explicit += 1
        base.__delitem__(self, key)

    def popitem(self: Any) -> Any:
        c = self.__dict__[_COUNTS]
        c.popping += 1
        try:
            item = base.popitem(self)
        finally:
            c.popping -= 1
        if c.setting:
            c.size += 1
        else:
            c.explicit += 1
        return item

    def expire(self: Any, *args: Any, **kwargs: Any) -> Any:
        expired = base.expire(self, *args, **kwargs)
        self.__dict__[_COUNTS].expired += len(expired)
        return expired

    def __copy__(self: Any) -> Any:
        new = base.__copy__(self)
        new.__class__ = base
        new.__dict__.pop(_COUNTS, None)
        return new

    def __reduce_ex__(self: Any, protocol: Any) -> Any:
        # pickle as the plain class, without our counters (pickle refuses __newobj__ with a
        # class other than the object's own, hence the older reconstructor)
        rv = base.__reduce_ex__(self, protocol)
        if not isinstance(rv, tuple) or len(rv) < 3 or rv[1] != (cls,):
            return rv
        state = rv[2]
        if isinstance(state, dict):
            state = {k: v for k, v in state.items() if k != _COUNTS}
        return (copyreg._reconstructor, (base, object, None), state) + tuple(rv[3:])

    ns: Dict[str, Any] = {"__slots__": (), "__module__": base.__module__,
                          "__qualname__": base.__qualname__, "_memtui_base": base}
    for fn in (__getitem__, __missing__, get, __setitem__, __delitem__, popitem, __reduce_ex__):
        ns[fn.__name__] = fn
    if hasattr(base, "expire"):
        ns["expire"] = expire
    if hasattr(base, "__copy__"):
        ns["__copy__"] = __copy__
    cls = type(base.__name__, (base,), ns)
    _CLASSES[base] = cls
    return cls


class CachetoolsAdapter(_Adapter):
    kind = "cache"
    POLICIES = {"LRUCache": "lru", "LFUCache": "lfu", "TTLCache": "ttl", "TLRUCache": "tlru",
                "FIFOCache": "fifo", "RRCache": "random", "Cache": "none"}

    def __init__(self, cache: Any, name: str) -> None:
        super().__init__(cache, name)
        base = type(cache)
        cache.__dict__[_COUNTS] = self.counts
        cache.__class__ = _counting_class(base)
        self.policy = next((self.POLICIES[c.__name__] for c in base.__mro__
                            if c.__module__.startswith("cachetools")
                            and c.__name__ in self.POLICIES), "custom")

    def detach(self, cache: Any) -> None:
        base = type(cache).__dict__.get("_memtui_base")
        if base is not None:
            cache.__class__ = base
        cache.__dict__.pop(_COUNTS, None)

    def read(self, cache: Any) -> Dict[str, Any]:
        # Private fields read directly: len()/currsize on a TTL cache expire items, a mutation
        # we must not make from the sampler thread on a structure that is not thread-safe.
        d, c = cache.__dict__, self.counts
        entries = len(d["_Cache__data"]) if "_Cache__data" in d else None
        current, maximum = d.get("_Cache__currsize"), d.get("_Cache__maxsize")
        weighed = d.get("_Cache__size") is not None  # a getsizeof makes maxsize a weight budget
        return _shape("cache", policy=self.policy, entries=entries,
                      bytes=current if weighed else None, max_bytes=maximum if weighed else None,
                      max_entries=None if weighed else maximum, hits=c.hits, misses=c.misses,
                      hit_rate=hit_rate(c.hits, c.misses), ttl_s=d.get("_TTLCache__ttl"),
                      evictions={"size": c.size, "expired": c.expired, "explicit": c.explicit,
                                 "replaced": c.replaced},
                      note="counted since watch(); a TTL cache's entries may include expired ones")


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


# -- SQLAlchemy -------------------------------------------------------------------------------
class SqlAlchemyPoolAdapter(_Adapter):
    kind = "pool"
    EVENTS = ("connect", "close", "close_detached", "invalidate", "checkout")

    def __init__(self, obj: Any, name: str) -> None:
        super().__init__(obj, name)
        self.engine = hasattr(obj, "pool") and hasattr(obj, "dialect")
        c = self.counts

        def bump(field: str) -> Callable[..., None]:
            def listener(*args: Any) -> None:
                with c.lock:
                    setattr(c, field, getattr(c, field) + 1)
            return listener

        self.listeners = dict(zip(self.EVENTS, map(bump, ("created", "destroyed", "destroyed",
                                                          "invalidated", "checkouts"))))
        self._pool_ref: Any = None
        self._attach(self._pool(obj))

    def _pool(self, obj: Any) -> Any:
        return obj.pool if self.engine else obj

    def _attach(self, pool: Any) -> None:
        event = importlib.import_module("sqlalchemy.event")
        for name, fn in self.listeners.items():
            if not event.contains(pool, name, fn):  # a recreated pool inherits its listeners
                event.listen(pool, name, fn)
        ref, c, connect = weakref.ref(pool), self.counts, type(pool).connect

        def wrapper() -> Any:
            with c.lock:
                c.waiting += 1
            t0 = time.perf_counter()
            try:
                return connect(ref())
            except Exception as exc:
                if type(exc).__name__ == "TimeoutError" and \
                        type(exc).__module__.startswith("sqlalchemy"):
                    with c.lock:
                        c.timeouts += 1
                raise
            finally:
                with c.lock:
                    c.waiting -= 1
                    c.latency.add(time.perf_counter() - t0)

        _shadow(pool, "connect", wrapper)
        self._pool_ref = ref

    def detach(self, obj: Any) -> None:
        pool = self._pool_ref() if self._pool_ref else None
        if pool is not None:
            event = importlib.import_module("sqlalchemy.event")
            for name, fn in self.listeners.items():
                if event.contains(pool, name, fn):
                    event.remove(pool, name, fn)
            _unshadow(pool, "connect")

    def read(self, obj: Any) -> Dict[str, Any]:
        pool = self._pool(obj)
        if self._pool_ref is None or self._pool_ref() is not pool:
            self._attach(pool)  # engine.dispose() made a new pool
        c = self.counts

        def call(method: str) -> Any:
            fn = getattr(pool, method, None)
            try:
                return fn() if callable(fn) else None
            except Exception:
                return None

        idle, in_use, base = call("checkedin"), call("checkedout"), call("size")
        overflow = getattr(pool, "_max_overflow", None)
        cond = getattr(getattr(pool, "_pool", None), "not_empty", None)
        waiting = getattr(cond, "_waiters", None)  # threads blocked on an exhausted QueuePool
        timeout = call("timeout")
        with c.lock:
            waiters = len(waiting) if waiting is not None else c.waiting
            p50, p95 = c.latency.percentile_ms(50), c.latency.percentile_ms(95)
            counted = dict(created=c.created, destroyed=c.destroyed, timeouts=c.timeouts,
                           validation_failures=c.invalidated, checkouts=c.checkouts)
        bounded = base is not None and overflow is not None and overflow >= 0
        return _shape("pool", size=(idle + in_use) if None not in (idle, in_use) else None,
                      in_use=in_use, idle=idle, waiters=waiters,
                      max_size=base + overflow if bounded else None, wait_p50_ms=p50,
                      wait_p95_ms=p95, pool_class=type(pool).__name__, pool_size=base,
                      max_overflow=overflow, overflow=call("overflow"), timeout_s=timeout,
                      note="wait = time in pool.connect(), connection creation included",
                      **counted)


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
    return _core.register(adapter, name=adapter.name, kind=kind or adapter.kind)


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
    _core.unregister(adapter)
    return True

