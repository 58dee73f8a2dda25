"""Python heap figures: gc generations, collections and pause times, and tracemalloc totals.

Uses the C module ``_tracemalloc`` for the counters: importing ``tracemalloc`` pulls in pickle,
linecache and fnmatch (~17 ms), which only ``heap.top`` needs.
"""
from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import _tracemalloc


class HeapCollector:
    """Owns a ``gc.callbacks`` hook that times every collection.

    The hook runs inside the collector, on the host's own threads, hundreds of times a second in
    an allocation-heavy app: it only appends (generation, seconds) to a bounded deque. Totals,
    maxima and percentiles are folded in later, on the sampler thread (``fold``). Folding at
    least every ``_PENDING`` collections keeps every pause counted; beyond that, the oldest
    unfolded ones are dropped from the pause figures (gc's own counts stay exact).
    """

    _PENDING = 8192

    def __init__(self, recent: int = 256) -> None:
        self.pauses = [0, 0, 0]  # collections we timed, per generation
        self.pause_total = [0.0, 0.0, 0.0]
        self.pause_max = [0.0, 0.0, 0.0]
        self.pause_last = 0.0
        self.recent: Deque[float] = deque(maxlen=recent)
        self._pending: Deque[Tuple[int, float]] = deque(maxlen=self._PENDING)
        self._hook: Optional[Callable[[str, Dict[str, Any]], None]] = None
        self._window_max = 0.0  # largest pause since the last take_window_max()

    def install(self) -> None:
        if self._hook is not None:
            return
        pending = self._pending
        perf = time.perf_counter
        started = [0.0]

        def on_gc(phase: str, info: Dict[str, Any]) -> None:
            if phase == "start":
                started[0] = perf()
            elif started[0]:
                pending.append((info["generation"], perf() - started[0]))

        self._hook = on_gc
        gc.callbacks.append(on_gc)

    def uninstall(self) -> None:
        if self._hook is not None:
            try:
                gc.callbacks.remove(self._hook)
            except ValueError:
                pass
            self._hook = None

    def fold(self) -> None:
        """Move pauses recorded by the hook into the totals (sampler / request thread only)."""
        pending = self._pending
        while pending:
            try:
                gen, d = pending.popleft()
            except IndexError:
                break
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
        self.fold()
        value, self._window_max = self._window_max, 0.0
        return value

    def pause_p95(self) -> float:
        data: List[float] = sorted(self.recent)
        if not data:
            return 0.0
        return data[min(len(data) - 1, int(len(data) * 0.95))]

    def collect(self) -> Dict[str, Any]:
        self.fold()
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
