"""Shared measuring pieces for the building blocks: a bounded latency window and counters.

Cheap enough to sit on every hit/acquire/task: recording is one deque append under the caller's
own lock; percentiles are computed only when ``stats()`` asks.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Tuple

Clock = Callable[[], float]

# The keys every block of a kind reports (extra keys are welcome). The tuner and the dashboard
# read these names; adapters report the same shape with None where a figure is unknowable.
SHAPES: Dict[str, Tuple[str, ...]] = {
    "cache": ("policy", "entries", "bytes", "max_entries", "max_bytes", "hits", "misses",
              "hit_rate", "loads", "load_time_ms", "evictions", "tiers"),
    "pool": ("size", "in_use", "idle", "waiters", "min_size", "max_size", "wait_p50_ms",
             "wait_p95_ms", "created", "destroyed", "timeouts", "validation_failures"),
    "workers": ("active", "idle", "queued", "queue_size", "min_workers", "max_workers",
                "completed", "failed", "rejected", "latency_p50_ms", "latency_p95_ms",
                "throughput_per_s", "throttled"),
    "batch": ("batches", "items", "errors", "pending", "latency_p50_ms", "latency_p95_ms"),
}
EVICTION_CAUSES = ("size", "expired", "explicit", "replaced", "pressure")


class LatencyWindow:
    """The last *size* durations (seconds) and a running count; percentiles in milliseconds."""

    __slots__ = ("_d", "count", "total")

    def __init__(self, size: int = 1024) -> None:
        self._d: Deque[float] = deque(maxlen=size)
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self._d.append(seconds)
        self.count += 1
        self.total += seconds

    def percentile_ms(self, pct: float) -> float:
        data = sorted(self._d)
        if not data:
            return 0.0
        k = min(len(data) - 1, max(0, int(round(pct / 100.0 * (len(data) - 1)))))
        return data[k] * 1000.0

    def mean_ms(self) -> float:
        return (self.total / self.count * 1000.0) if self.count else 0.0


class RateMeter:
    """Events per second over the last *window* seconds, counted in one-second buckets (memory is
    bounded by the window, not by the event rate)."""

    __slots__ = ("_b", "_first", "window", "clock")

    def __init__(self, window: int = 10, clock: Clock = time.monotonic) -> None:
        self._b: Deque[list] = deque(maxlen=window + 1)  # [second, count]
        self._first: Optional[float] = None  # when the first event was marked
        self.window = window
        self.clock = clock

    def mark(self, n: int = 1) -> None:
        t = self.clock()
        sec = int(t)
        b = self._b
        if b and b[-1][0] == sec:
            b[-1][1] += n
        else:
            b.append([sec, n])
            if self._first is None:
                self._first = t

    def per_second(self) -> float:
        """The mean over the complete seconds of the window (the current one is still filling
        up); until the meter has watched a whole window, over the time from its first event to
        the end of the last complete second (at least one), so a young meter does not
        under-report."""
        first = self._first
        if first is None:
            return 0.0
        now = int(self.clock())
        total = sum(c for s, c in self._b if now - self.window <= s < now)
        return total / float(max(1, min(self.window, now - first)))


# -- threads holding their block weakly (workers, batch flusher) ----------------------------------
_CHECK = 1.0  # such a thread, idle, looks at least this often whether its block still exists
# Blocks with work for a thread that holds them only weakly and was just woken or started: kept
# alive until that thread holds them itself, so dropping the last outside reference meanwhile
# cannot lose the work.
_KEEP: set = set()


def _wake_all(lock: Any, cond: Any) -> None:
    """A block was collected: wake its idle threads so they see it and exit. Never blocks (the
    last reference may be dropped by a thread holding *lock*; that thread notifies itself, and
    the others look again within _CHECK seconds)."""
    if lock.acquire(False):
        try:
            cond.notify_all()
        finally:
            lock.release()


def register_component(obj: Any, register: bool = True) -> None:
    """Register a building block with the agent's registry (weakly) and adopt the unique name
    it is listed under (``name#2`` when taken)."""
    if register:
        from ..agent import register as agent_register  # noqa: PLC0415 - no cycle at import

        obj.name = agent_register(obj, name=obj.name, kind=obj.kind)


def hit_rate(hits: int, misses: int) -> Any:
    total = hits + misses
    return (hits / total) if total else None
