"""The agent's pressure actions on a memory alert: shrink components, ``gc.collect()``, throttle
intake at critical and release it again (a mixin of ``monitor.Monitor``)."""
from __future__ import annotations

import gc
import time
import weakref
from typing import Any, Dict, List, Optional, Tuple

from .monitor_settings import MonitorSettings

_RANK = {"ok": 0, "warning": 1, "critical": 2}


class PressureActions:
    """The pressure-action half of ``Monitor``: needs ``self.agent`` and ``self._throttled``."""
    agent: Any
    _throttled: List[Tuple[str, Any]]

    def _pressure(self, new: str, previous: str, rss: int, cfg: MonitorSettings) -> None:
        # intake is throttled at critical only: below it (warning included) it resumes, or a
        # worker pool stays shut while the memory sits between the warning and critical lines
        if _RANK[new] < _RANK["critical"] and self._throttled:
            self._release("memory back to normal" if new == "ok" else "memory no longer critical")
        if new == "ok":
            return
        if not cfg.pressure_enabled or _RANK[new] <= _RANK[previous]:
            return
        if cfg.shrink_fraction > 0:
            self._shrink(new, cfg.shrink_fraction, rss)
        if new == "critical":
            if cfg.gc_at_critical:
                self._collect()
            if cfg.throttle_at_critical:
                self._throttle()

    def _shrink(self, level: str, fraction: float, rss: int) -> None:
        done: Dict[str, Any] = {}
        errors: Dict[str, str] = {}
        total = 0
        for entry, obj in self.agent.registry.live():
            shrink = getattr(obj, "shrink", None)
            if not callable(shrink):
                continue
            before = _held(obj)
            try:
                freed = shrink(fraction)
            except Exception as exc:
                errors[entry.name] = "%s: %s" % (type(exc).__name__, exc)
                continue
            freed = freed if _is_int(freed) else None
            total += freed or 0
            done[entry.name] = {"kind": entry.kind, "freed": freed, "before": before,
                                "after": _held(obj)}
        if not done and not errors:
            return
        after = self.agent.process.collect().get("rss")
        parts = ["%s %s" % (n, fmt_bytes(d["freed"]) if d["freed"] is not None else "?")
                 for n, d in sorted(done.items())]
        text = "memory %s: shrank %d component%s by %.0f%%, freed %s (%s); RSS %s -> %s" % (
            level, len(done), "s"[:len(done) != 1], fraction * 100, fmt_bytes(total),
            ", ".join(parts) or "none", fmt_bytes(rss), fmt_bytes(after))
        if errors:
            text += "; %d failed: %s" % (len(errors), ", ".join(sorted(errors)))
        self.agent.events.emit("action", "warning" if errors else "info", text, action="shrink",
                               level=level, fraction=fraction, bytes_freed=total,
                               components=done, errors=errors, rss_before=rss, rss_after=after)

    def _collect(self) -> None:
        agent = self.agent
        before = agent.process.collect().get("rss")
        t0 = time.perf_counter()
        collected = gc.collect()
        ms = (time.perf_counter() - t0) * 1000.0
        agent.heap.take_window_max()  # our own collection is not the host's long pause
        after = agent.process.collect().get("rss")
        freed = (before - after) if _is_int(before) and _is_int(after) else None
        agent.events.emit("action", "info", "memory critical: gc.collect() found %d unreachable "
                          "objects in %.1f ms; RSS %s -> %s" % (collected, ms, fmt_bytes(before),
                                                               fmt_bytes(after)),
                          action="gc.collect", level="critical", generation=2,
                          collected=collected, duration_ms=ms, rss_before=before,
                          rss_after=after, rss_freed=freed)

    def _throttle(self) -> None:
        names: List[str] = []
        errors: Dict[str, str] = {}
        for entry, obj in self.agent.registry.live():
            throttle = getattr(obj, "throttle", None)
            if not callable(throttle):
                continue
            try:
                changed = throttle(True)
            except Exception as exc:
                errors[entry.name] = "%s: %s" % (type(exc).__name__, exc)
                continue
            if changed is not False:  # already throttled by someone else: theirs to lift
                try:
                    ref: Any = weakref.ref(obj)
                except TypeError:
                    ref = lambda obj=obj: obj  # noqa: E731
                self._throttled.append((entry.name, ref))
                names.append(entry.name)
        if names or errors:
            text = "memory critical: throttled intake of %s" % (", ".join(names) or "nothing")
            if errors:
                text += "; %d failed: %s" % (len(errors), ", ".join(sorted(errors)))
            self.agent.events.emit("action", "warning" if errors else "info", text,
                                   action="throttle", on=True, level="critical",
                                   components=names, errors=errors)

    def _release(self, why: str) -> None:
        names: List[str] = []
        errors: Dict[str, str] = {}
        held, self._throttled = self._throttled, []
        for name, ref in held:
            obj = ref()
            if obj is None:
                continue
            try:
                obj.throttle(False)
                names.append(name)
            except Exception as exc:
                errors[name] = "%s: %s" % (type(exc).__name__, exc)
        if names or errors:
            text = "%s: resumed intake of %s" % (why, ", ".join(names) or "nothing")
            if errors:
                text += "; %d failed: %s" % (len(errors), ", ".join(sorted(errors)))
            self.agent.events.emit("action", "warning" if errors else "info", text,
                                   action="throttle", on=False, reason=why, components=names,
                                   errors=errors)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _held(obj: Any) -> Any:
    """What a shrinkable component holds (entries of a cache, resources of a pool), or None."""
    try:
        stats = obj.stats()
        for key in ("entries", "size"):
            if _is_int(stats.get(key)):
                return stats[key]
    except Exception:
        pass
    return None


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0
    return "%.1f TiB" % value  # pragma: no cover
