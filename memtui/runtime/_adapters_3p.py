"""watch() adapters for third-party objects: cachetools caches (a counting subclass swapped in)
and SQLAlchemy engines and pools (event listeners and a shadowed ``connect``).

Neither library is imported here: objects are recognised in ``adapters._adapter_for`` by class
module and attributes, and ``sqlalchemy.event`` is imported only once a pool is being watched.
"""
from __future__ import annotations

import copyreg
import importlib
import time
import weakref
from typing import Any, Callable, Dict

from ._adapter_base import _Adapter, _shadow, _shape, _unshadow
from ._stats import hit_rate

_COUNTS = "_memtui_counts"  # instance-dict key of a watched cachetools cache's counters
_MISS = object()


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
