"""Python heap figures: gc generations, collections and pause times, and tracemalloc totals.

Uses the C module ``_tracemalloc`` for the counters: importing ``tracemalloc`` pulls in pickle,
linecache and fnmatch (~17 ms), which only ``heap.top`` needs.
"""
from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any, Deque, Dict, List

import _tracemalloc


class HeapCollector:
    """Owns a ``gc.callbacks`` hook that times every collection.

    The hook runs inside the collector on whatever thread triggered it, so it only does
    arithmetic and never takes a lock (a GC can fire while this thread holds one).
    """

    def __init__(self, recent: int = 256) -> None:
        self._t0 = 0.0
        self.pauses = [0, 0, 0]  # collections we timed, per generation
        self.pause_total = [0.0, 0.0, 0.0]
        self.pause_max = [0.0, 0.0, 0.0]
        self.pause_last = 0.0
        self.recent: Deque[float] = deque(maxlen=recent)
        self._installed = False
        self._window_max = 0.0  # largest pause since the last sample

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._on_gc)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            try:
                gc.callbacks.remove(self._on_gc)
            except ValueError:
                pass
            self._installed = False

    def _on_gc(self, phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        if not self._t0:
            return
        d = time.perf_counter() - self._t0
        self._t0 = 0.0
        gen = info.get("generation", 0)
        if 0 <= gen < 3:
            self.pauses[gen] += 1
            self.pause_total[gen] += d
            if d > self.pause_max[gen]:
                self.pause_max[gen] = d
        self.pause_last = d
        if d > self._window_max:
            self._window_max = d
        self.recent.append(d)

    def take_window_max(self) -> float:
        """Largest pause since the previous call, in seconds (for the history ring)."""
        value, self._window_max = self._window_max, 0.0
        return value

    def pause_p95(self) -> float:
        data: List[float] = sorted(self.recent)
        if not data:
            return 0.0
        return data[min(len(data) - 1, int(len(data) * 0.95))]

    def collect(self) -> Dict[str, Any]:
        stats = gc.get_stats()
        tracing = _tracemalloc.is_tracing()
        out: Dict[str, Any] = {
            "gc": {
                "enabled": gc.isenabled(),
                "counts": list(gc.get_count()),
                "thresholds": list(gc.get_threshold()),
                "collections": [s.get("collections", 0) for s in stats],
                "collected": [s.get("collected", 0) for s in stats],
                "uncollectable": [s.get("uncollectable", 0) for s in stats],
                "frozen": gc.get_freeze_count() if hasattr(gc, "get_freeze_count") else 0,
                "garbage": len(gc.garbage),
                "pause_ms": {
                    "last": self.pause_last * 1000.0,
                    "p95": self.pause_p95() * 1000.0,
                    "max": [m * 1000.0 for m in self.pause_max],
                    "total": [t * 1000.0 for t in self.pause_total],
                    "timed": list(self.pauses),
                },
            },
            "tracemalloc": {"tracing": tracing},
        }
        if tracing:
            current, peak = _tracemalloc.get_traced_memory()
            out["tracemalloc"].update(
                current=current,
                peak=peak,
                frames=_tracemalloc.get_traceback_limit(),
                overhead=_tracemalloc.get_tracemalloc_memory(),
            )
        return out
