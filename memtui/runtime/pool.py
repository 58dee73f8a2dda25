"""ResourcePool: a bounded, self-reporting pool of reusable resources (connections, clients, buffers).

Borrowed resources are validated, idle ones are closed after ``idle_timeout``, and the pool grows
toward ``max_size`` under load and shrinks back toward ``default_size`` when load stays low.
Housekeeping is lazy (on acquire/release) or explicit (``maintain()``): no background thread.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional

from ._settings import Tunable, check_duration, check_fraction, check_int, check_keys
from ._stats import Clock, LatencyWindow, register_component

__all__ = ["ResourcePool", "PoolTimeout", "PoolClosed"]


class PoolTimeout(TimeoutError):
    """No resource became free within the acquire timeout."""


class PoolClosed(RuntimeError):
    """The pool was closed; it lends nothing more."""


class _Lease:
    """What ``acquire()`` returns: a context manager handing out the resource once."""

    __slots__ = ("_pool", "resource", "_done")

    def __init__(self, pool: "ResourcePool", resource: Any) -> None:
        self._pool = pool
        self.resource = resource
        self._done = False

    def __enter__(self) -> Any:
        return self.resource

    def __exit__(self, *exc: Any) -> None:
        if not self._done:
            self._done = True
            self._pool._release(self.resource, False)

    def release(self, discard: bool = False) -> None:
        """Give the resource back (``discard=True``: it is broken; close it instead)."""
        if not self._done:
            self._done = True
            self._pool._release(self.resource, discard)


class ResourcePool(Tunable):
    """A thread-safe pool: ``with pool.acquire(timeout=2) as conn: ...``.

    ``factory()`` makes a resource, ``close(res)`` disposes of one, ``validate(res) -> bool`` is
    asked on every borrow (False or an exception: the resource is closed and replaced),
    ``weigher(res) -> bytes`` lets ``shrink()`` report what it freed. Sizes: ``min_size`` is a hard
    floor, ``default_size`` is created eagerly and is the floor for load-based shrinking,
    ``max_size`` is the cap. Utilization is ``in_use / size``.
    """

    kind = "pool"

    def __init__(self, factory: Callable[[], Any], close: Optional[Callable[[Any], Any]] = None,
                 validate: Optional[Callable[[Any], Any]] = None, min_size: int = 0,
                 default_size: Optional[int] = None, max_size: int = 10,
                 idle_timeout: Any = None, scale_up_threshold: float = 0.8,
                 scale_down_threshold: float = 0.3, scale_down_after: Any = 30.0,
                 maintain_interval: Any = 1.0, weigher: Optional[Callable[[Any], int]] = None,
                 name: Optional[str] = None, register: bool = True,
                 clock: Clock = time.monotonic) -> None:
        self.name = name or "pool"
        self._factory = factory
        self._close = close
        self._validate = validate
        self._weigher = weigher
        self._clock = clock
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._idle: Deque[list] = deque()  # [resource, released_at]; right end = most recent
        self._in_use = 0
        self._creating = 0
        self._waiters = 0
        self._closed = False
        self._waits = LatencyWindow()
        self.created = self.destroyed = self.timeouts = self.validation_failures = 0
        self.close_errors = self.fill_errors = 0
        self._low_since: Optional[float] = None
        self.min_size = 0
        self.default_size = 0
        self.max_size = 1
        self.idle_timeout: Optional[float] = None
        self.scale_up_threshold = 0.8
        self.scale_down_threshold = 0.3
        self.scale_down_after = 30.0
        self.maintain_interval = 1.0
        self._set(dict(min_size=min_size, default_size=default_size, max_size=max_size,
                       idle_timeout=idle_timeout, scale_up_threshold=scale_up_threshold,
                       scale_down_threshold=scale_down_threshold,
                       scale_down_after=scale_down_after, maintain_interval=maintain_interval))
        self._next_maintain = clock() + self.maintain_interval
        register_component(self, register)
        try:
            self._fill(self.default_size)
        except BaseException:
            self.close()
            raise

    # -- settings -----------------------------------------------------------------------------
    def _current_settings(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in _SETTINGS}

    def _checked(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """The whole new set, every value checked strictly (ValueError naming the key; unknown
        keys too); changes nothing."""
        owner = "pool %r" % self.name
        check_keys(owner, values, _SETTINGS)
        new = self._current_settings()
        for key, value in values.items():
            if key in ("idle_timeout", "scale_down_after", "maintain_interval"):
                value = check_duration(owner, key, value, none_ok=key == "idle_timeout")
            elif key == "default_size":
                value = None if value is None else check_int(owner, key, value, 0)
            elif key in ("min_size", "max_size"):
                value = check_int(owner, key, value, 0 if key == "min_size" else 1)
            else:
                value = check_fraction(owner, key, value)
            new[key] = value
        if values.get("default_size", 0) is None:
            new["default_size"] = new["min_size"]
        new["default_size"] = max(new["default_size"], new["min_size"])
        if not new["min_size"] <= new["default_size"] <= new["max_size"]:
            raise ValueError("%s: need min_size <= default_size <= max_size, got %d/%d/%d"
                             % (owner, new["min_size"], new["default_size"], new["max_size"]))
        if not new["scale_down_threshold"] < new["scale_up_threshold"]:
            raise ValueError("%s: need scale_down_threshold < scale_up_threshold" % owner)
        return new

    def configure(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """Retune live (sizes, thresholds, ``idle_timeout`` with units); returns what changed.
        A bad value or an unknown key raises ValueError and changes nothing. Shrinking
        ``max_size`` closes the surplus idle resources now (in-use ones as they come back);
        raising ``min_size``/``default_size`` creates the missing resources now (if the factory
        fails, ``maintain()`` tops up to ``min_size`` later)."""
        with self._lock:
            changed = self._set(values)
        self.maintain(grow=False)
        if "min_size" in changed or "default_size" in changed:
            try:
                self._fill(self.default_size)
            except Exception:
                self.fill_errors += 1
        return changed

    # -- borrowing ----------------------------------------------------------------------------
    def acquire(self, timeout: Optional[float] = None) -> _Lease:
        """Borrow a resource; use as ``with pool.acquire(timeout=...) as res``. Raises
        ``PoolTimeout`` after *timeout* seconds (None: wait forever) and ``PoolClosed``."""
        waited = 0.0
        while True:
            doomed = None
            with self._lock:
                if self._closed:
                    raise PoolClosed("pool %r is closed" % self.name)
                idle = self._idle
                if idle and self.idle_timeout is not None and \
                        self._clock() - idle[0][1] > self.idle_timeout:
                    doomed = self._expire(self._clock())
                if idle:
                    resource = idle.pop()[0]
                    self._in_use += 1
                    self._waits.add(waited)
                elif self._in_use + self._creating < self.max_size:
                    self._creating += 1
                    resource = _NEW
                elif doomed:
                    resource = _RETRY  # close the stale ones first, then wait
                else:
                    remaining = None if timeout is None else timeout - waited
                    if remaining is not None and remaining <= 0:
                        self._timed_out(timeout)
                    t0 = time.monotonic()
                    self._waiters += 1
                    try:
                        self._cond.wait(remaining)
                    finally:
                        self._waiters -= 1
                    waited += time.monotonic() - t0
                    continue
            if doomed:
                self._dispose(doomed)
            if resource is _RETRY:
                continue
            if resource is _NEW:
                resource = self._create()
                with self._lock:
                    self._creating -= 1  # the slot passes to in_use in one step
                    self.created += 1
                    self._in_use += 1
                    self._waits.add(waited)
                return _Lease(self, resource)
            if self._validate is not None and not self._check(resource):
                continue
            return _Lease(self, resource)

    def _timed_out(self, timeout: Optional[float]) -> None:
        self.timeouts += 1
        raise PoolTimeout("pool %r: no resource free after %.3gs (size %d of max %d, %d in use, "
                          "%d waiting); raise max_size or release resources sooner"
                          % (self.name, timeout or 0.0, self._in_use + len(self._idle)
                             + self._creating, self.max_size, self._in_use, self._waiters))

    def _create(self) -> Any:
        """Run the factory for a slot already reserved in ``_creating``; free it on error. On
        success the caller moves the slot on (to in_use or idle) under the lock, so the size
        never reads one short meanwhile (letting another thread create past max_size)."""
        try:
            return self._factory()
        except BaseException:
            with self._lock:
                self._creating -= 1
                self._cond.notify()
            raise

    def _check(self, resource: Any) -> bool:
        try:
            ok = bool(self._validate(resource))  # type: ignore[misc]
        except Exception:
            ok = False
        if not ok:
            with self._lock:
                self._in_use -= 1
                self.validation_failures += 1
                self.destroyed += 1
                self._cond.notify()
            self._dispose([resource])
        return ok

    def _release(self, resource: Any, discard: bool) -> None:
        now = self._clock()
        with self._lock:
            self._in_use -= 1
            if discard or self._closed or \
                    self._in_use + len(self._idle) + self._creating >= self.max_size:
                self.destroyed += 1
                doomed = [resource]
            else:
                self._idle.append([resource, now])
                doomed = None
            if self._waiters:
                self._cond.notify()
            if now >= self._next_maintain:
                self._next_maintain = now + self.maintain_interval
                doomed = (doomed or []) + self._collect(now)
        if doomed:
            self._dispose(doomed)

    def _dispose(self, resources: List[Any]) -> None:
        if self._close is None:
            return
        for res in resources:
            try:
                self._close(res)
            except Exception:
                self.close_errors += 1  # a failing close must not fail the borrower

    # -- housekeeping -------------------------------------------------------------------------
    def _collect(self, now: float) -> List[Any]:
        """Under the lock: take out what idle cleanup and load-based shrinking would close."""
        idle = self._idle
        size = self._in_use + len(idle) + self._creating
        out = self._expire(now)
        expired = len(out)
        size -= expired
        while idle and size > self.max_size:  # max_size was lowered
            out.append(idle.popleft()[0])
            size -= 1
        util = self._in_use / size if size else 0.0
        if util >= self.scale_down_threshold or size <= self.default_size:
            self._low_since = None
        elif self._low_since is None:
            self._low_since = now
        elif now - self._low_since >= self.scale_down_after:
            target = (self.scale_up_threshold + self.scale_down_threshold) / 2.0
            want = max(self.default_size, self.min_size, math.ceil(self._in_use / target))
            while idle and size > want:
                out.append(idle.popleft()[0])
                size -= 1
            self._low_since = now
        self.destroyed += len(out) - expired
        return out

    def _expire(self, now: float) -> List[Any]:
        """Under the lock: take out idle resources older than idle_timeout, keeping min_size."""
        out: List[Any] = []
        if self.idle_timeout is None:
            return out
        idle = self._idle  # oldest at the left
        size = self._in_use + len(idle) + self._creating
        while idle and size > self.min_size and now - idle[0][1] > self.idle_timeout:
            out.append(idle.popleft()[0])
            size -= 1
        self.destroyed += len(out)
        return out

    def maintain(self, grow: bool = True) -> Dict[str, int]:
        """Close stale and surplus idle resources; with *grow*, top up to ``min_size`` and add
        one step ahead of demand when utilization is past ``scale_up_threshold``."""
        now = self._clock()
        with self._lock:
            if self._closed:
                return {"closed": 0, "created": 0}
            self._next_maintain = now + self.maintain_interval
            doomed = self._collect(now)
            size = self._in_use + len(self._idle) + self._creating
            want = self.min_size
            if size and self._in_use / size >= self.scale_up_threshold:
                want = max(want, min(self.max_size, size + max(1, size // 4)))
        self._dispose(doomed)
        made = self._fill(want) if grow else 0
        return {"closed": len(doomed), "created": made}

    def _fill(self, target: int) -> int:
        made = 0
        while True:
            with self._lock:
                if self._closed or self._in_use + len(self._idle) + self._creating >= target:
                    return made
                self._creating += 1
            resource = self._create()
            with self._lock:
                self._creating -= 1
                self.created += 1
                closed = self._closed
                if closed:
                    self.destroyed += 1  # closed while it was being made
                else:
                    self._idle.append([resource, self._clock()])
                    self._cond.notify()
            if closed:
                self._dispose([resource])
                return made
            made += 1

    def shrink(self, fraction: float) -> int:
        """Close about *fraction* of the idle resources (oldest first, never below min_size);
        returns the bytes freed as told by ``weigher`` (0 without one)."""
        with self._lock:
            idle = self._idle
            size = self._in_use + len(idle) + self._creating
            n = min(int(math.ceil(len(idle) * max(0.0, min(1.0, fraction)))),
                    max(0, size - self.min_size))
            doomed = [idle.popleft()[0] for _ in range(n)]
            self.destroyed += n
        freed = 0
        if self._weigher is not None:
            for res in doomed:
                try:
                    freed += int(self._weigher(res))
                except Exception:
                    pass
        self._dispose(doomed)
        return freed

    def close(self) -> None:
        """Close every idle resource now and in-use ones as they come back; wake all waiters."""
        with self._lock:
            self._closed = True
            doomed = [slot[0] for slot in self._idle]
            self._idle.clear()
            self.destroyed += len(doomed)
            self._cond.notify_all()
        self._dispose(doomed)

    def __enter__(self) -> "ResourcePool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reporting ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._in_use + len(self._idle) + self._creating

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            in_use, idle, creating = self._in_use, len(self._idle), self._creating
            p50 = self._waits.percentile_ms(50)
            p95 = self._waits.percentile_ms(95)
            waiters = self._waiters
        size = in_use + idle + creating
        out = {
            "size": size, "in_use": in_use, "idle": idle, "waiters": waiters,
            "min_size": self.min_size, "max_size": self.max_size,
            "wait_p50_ms": p50, "wait_p95_ms": p95, "created": self.created,
            "destroyed": self.destroyed, "timeouts": self.timeouts,
            "validation_failures": self.validation_failures,
            "utilization": (in_use / size) if size else 0.0, "default_size": self.default_size,
            "creating": creating, "acquires": self._waits.count, "closed": self._closed,
            "idle_timeout": self.idle_timeout,
        }
        return out

    def __repr__(self) -> str:
        return "<ResourcePool %r size=%d in_use=%d max=%d>" % (self.name, self.size,
                                                                self._in_use, self.max_size)


_NEW = object()
_RETRY = object()
_SETTINGS = ("min_size", "default_size", "max_size", "idle_timeout", "scale_up_threshold",
             "scale_down_threshold", "scale_down_after", "maintain_interval")

ResourcePool.SETTINGS = _SETTINGS  # the keys configure() takes; the agent passes profiles only these
