"""Automatic heap snapshots: every ``profiler.snapshot_interval`` when ``profiler.auto_snapshot``
is on, and when RSS crosses ``profiler.memory_threshold`` (at most once per
``profiler.snapshot_cooldown``), kept to ``profiler.retention`` files.

The sampler only decides (``tick``); each snapshot runs on its own daemon thread, one at a time,
so a census of a large heap never stalls the history. ``snapshots.take`` logs each one, written or
failed, as a "snapshot" event with its reason, and applies the retention.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Optional

REASONS = ("interval", "threshold")


class AutoProfiler:
    def __init__(self, agent: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.agent = agent
        self.clock = clock
        self.taken = 0
        self.failed = 0
        self.last: Optional[Dict[str, Any]] = None  # metadata of the last automatic snapshot
        self.last_error: Optional[str] = None
        self._thread: Optional[threading.Thread] = None
        self._next: Optional[float] = None  # when the next periodic snapshot is due
        self._every: Optional[float] = None  # the interval _next was planned with
        self._last_periodic: Optional[float] = None
        self._armed = True  # RSS went (or started) below the threshold since the last one
        self._last_threshold: Optional[float] = None

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def tick(self, rss: Optional[int], cfg: Any) -> Optional[str]:
        """Called by the sampler after each sample: start a snapshot when one is due. Returns
        its reason, or None."""
        now = self.clock()
        due = []
        if cfg.auto_snapshot:
            if self._next is None or self._every != cfg.snapshot_interval:
                base = self._last_periodic if self._last_periodic is not None else now
                self._next, self._every = base + cfg.snapshot_interval, cfg.snapshot_interval
            if now >= self._next:
                due.append("interval")
        else:
            self._next = self._every = None
        line = cfg.memory_threshold
        if line > 0 and rss:
            if rss < line:
                self._armed = True
            elif self._armed and (self._last_threshold is None
                                  or now - self._last_threshold >= cfg.snapshot_cooldown):
                due.insert(0, "threshold")
        else:
            self._armed = True
        if not due or self.running:
            return None  # a snapshot still running: what is due waits for the next sample
        reason = due[0]
        if "threshold" in due:
            self._armed, self._last_threshold = False, now
        if cfg.auto_snapshot:
            # any snapshot restarts the periodic clock: two in a row would say the same
            self._last_periodic, self._next = now, now + cfg.snapshot_interval
        self.start(reason)
        return reason

    def start(self, reason: str) -> None:
        t = threading.Thread(target=self._take, args=(reason,), daemon=True,
                             name="memtui-autosnapshot")
        self._thread = t
        t.start()

    def status(self) -> Dict[str, Any]:
        return {"running": self.running, "taken": self.taken, "failed": self.failed,
                "last": self.last, "last_error": self.last_error,
                "next_in": (max(0.0, self._next - self.clock()) if self._next is not None
                            else None)}

    def _take(self, reason: str) -> None:
        """On the snapshot thread. ``snapshots.take`` writes to ``profiler.output_dir`` (else
        its default), keeps ``profiler.retention`` of this process's files and logs the
        "snapshot" event, with the reason, whether it worked or not."""
        agent = self.agent
        try:
            from . import snapshots  # noqa: PLC0415 - only when a snapshot is due
        except Exception as exc:
            agent.record_error("auto snapshot", exc)
            return
        try:
            meta = snapshots.take(agent, reason=reason)
        except Exception as exc:
            if type(exc).__name__ == "SnapshotBusy":
                if reason == "threshold":  # someone else's snapshot is running: try again
                    self._armed, self._last_threshold = True, None
                return
            self.failed += 1
            self.last_error = "%s: %s" % (type(exc).__name__, exc)
            if not isinstance(exc, (OSError, getattr(snapshots, "SnapshotError", OSError))):
                agent.record_error("auto snapshot", exc)  # not a failure take() reported
            return
        self.taken += 1
        self.last = meta
