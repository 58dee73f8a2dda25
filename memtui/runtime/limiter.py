"""AsyncLimiter: bounded concurrency for asyncio code, reported in the "workers" shape.

Its own module so that the thread-based blocks never import asyncio (~25 ms) into a host.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional

from ._settings import Tunable, check_int, check_keys
from ._stats import Clock, LatencyWindow, RateMeter, register_component

__all__ = ["AsyncLimiter"]

_now = time.perf_counter


class AsyncLimiter(Tunable):
    """At most ``limit`` coroutines inside at once: ``async with limiter:`` or
    ``await limiter.run(coro_fn, *args)``. Waiters are admitted FIFO. ``throttle()`` admits one at
    a time until lifted. Stats use the "workers" shape (queued = waiters). Not thread-safe except
    ``stats``/``configure``/``throttle``, which may be called from any thread."""

    kind = "workers"

    def __init__(self, limit: int, name: Optional[str] = None, register: bool = True,
                 clock: Clock = time.monotonic) -> None:
        self.name = name or "limiter"
        self.limit = check_int("limiter %r" % self.name, "limit", limit, 1)
        self._active = 0
        self._waiters: Deque[asyncio.Future] = deque()
        self._starts: Dict[Any, List[float]] = {}
        self._throttled = False
        self.completed = self.failed = self.cancelled = 0
        self._latency = LatencyWindow()
        self._rate = RateMeter(clock=clock)
        self._stats_lock = threading.Lock()  # stats() may come from the agent's thread
        register_component(self, register)

    def _room(self) -> bool:
        return self._active < (1 if self._throttled else self.limit)

    async def acquire(self) -> None:
        if not self._waiters and self._room():
            self._active += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # _wake counted us in before resolving
        except BaseException:
            self.cancelled += 1
            if fut.done() and not fut.cancelled():
                self._release()  # admitted and cancelled in the same step: pass it on
            else:
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
            raise

    def _release(self) -> None:
        self._active -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._room():
            fut = self._waiters.popleft()
            if not fut.done():
                self._active += 1
                fut.set_result(None)

    def _finish(self, t0: float, ok: bool) -> None:
        with self._stats_lock:
            self._latency.add(_now() - t0)
            if ok:
                self.completed += 1
            else:
                self.failed += 1
            self._rate.mark()
        self._release()

    async def run(self, coro_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        t0 = _now()
        await self.acquire()
        ok = False
        try:
            result = await coro_fn(*args, **kwargs)
            ok = True
            return result
        finally:
            self._finish(t0, ok)

    async def __aenter__(self) -> "AsyncLimiter":
        t0 = _now()
        await self.acquire()
        self._starts.setdefault(asyncio.current_task(), []).append(t0)
        return self

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        task = asyncio.current_task()
        starts = self._starts.get(task)
        t0 = starts.pop() if starts else _now()
        if not starts:
            self._starts.pop(task, None)
        self._finish(t0, exc_type is None)

    def _wake_threadsafe(self) -> None:
        for fut in list(self._waiters):
            try:
                fut.get_loop().call_soon_threadsafe(self._wake)
                return
            except RuntimeError:  # that loop is closed
                continue

    SETTINGS = ("limit",)

    def _current_settings(self) -> Dict[str, Any]:
        return {"limit": self.limit}

    def _checked(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        owner = "limiter %r" % self.name
        check_keys(owner, values, ("limit", "max_workers"))
        new = self.limit
        for key in ("max_workers", "limit"):  # limit wins when both are given
            if key in values:
                new = check_int(owner, key, values[key], 1)
        return {"limit": new}

    def configure(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """``{"limit": n}`` (``max_workers`` is accepted too); returns what changed. A bad value
        or an unknown key raises ValueError and changes nothing."""
        changed = self._set(values)
        if changed:
            self._wake_threadsafe()
        return changed

    def throttle(self, on: bool = True) -> bool:
        changed = self._throttled != bool(on)
        self._throttled = bool(on)
        if not on:
            self._wake_threadsafe()
        return changed

    def stats(self) -> Dict[str, Any]:
        active = self._active
        with self._stats_lock:
            p50, p95 = self._latency.percentile_ms(50), self._latency.percentile_ms(95)
            rate = self._rate.per_second()
        return {
            "active": active, "idle": max(0, self.limit - active), "queued": len(self._waiters),
            "queue_size": None, "min_workers": 0, "max_workers": self.limit,
            "completed": self.completed, "failed": self.failed, "rejected": 0,
            "latency_p50_ms": p50, "latency_p95_ms": p95,
            "throughput_per_s": rate, "throttled": self._throttled,
            "cancelled": self.cancelled,
        }
