"""Alerts (memory, cache hit rate, pool saturation, worker backlog, long gc pauses), the health
score behind them, and the agent's pressure actions. The sampler calls ``Monitor.observe`` once per
sample; readers get an immutable view (``view()``) built at the end of it.

An alert opens and clears as an "alert" event. Memory moves at once with hysteresis, as before;
the others must hold for a few samples (``SUSTAIN``) so a value sitting on the line cannot flap.
"""
from __future__ import annotations

import gc
import time
import weakref
from collections import deque
from typing import Any, Deque, Dict, List, Mapping, NamedTuple, Optional, Tuple

from .options import parse_duration, parse_size

# The profile keys the agent acts on, with their defaults: equal to memtui/config/schema.json's
# (tests/agent/test_monitor.py reads the schema to keep them in sync). profiles.component_settings
# hands the agent these keys when a profile sets them.
DEFAULTS: Dict[str, Any] = {
    "profiler.output_dir": "",
    "profiler.memory_threshold": 0,
    "profiler.gc_threshold": "100ms",
    "profiler.auto_snapshot": False,
    "profiler.snapshot_interval": "10m",
    "profiler.snapshot_cooldown": "5m",
    "profiler.retention": 20,
    "alerts.cache_hit_rate_warning": 0.6,
    "alerts.pool_saturation": 0.9,
    "alerts.queue_backlog": 0.8,
    "alerts.pressure_actions.enabled": True,
    "alerts.pressure_actions.shrink_fraction": 0.25,
    "alerts.pressure_actions.gc_at_critical": True,
    "alerts.pressure_actions.throttle_at_critical": True,
}
SETTING_KEYS = tuple(DEFAULTS)
# Keys of those sections that are agent options (config.apply takes them under "options").
OPTION_KEYS = ("profiler.enabled", "profiler.interval", "profiler.history", "profiler.trace",
               "profiler.tracemalloc_frames", "alerts.memory_limit", "alerts.warning_pct",
               "alerts.critical_pct", "alerts.hysteresis_pct")

SUSTAIN = 3  # samples a component alert's condition must hold before it opens or clears
GC_CLEAR = 10  # samples without a long pause before the gc alert clears
HIT_WINDOW = 10  # samples over which a cache's hit rate is judged...
MIN_LOOKUPS = 100  # ...once it saw at least this many lookups in them
HIT_MARGIN = 0.05  # a hit-rate alert clears this far above the line
BACKLOG_MARGIN = 0.1  # a backlog alert clears this far below the line
MIN_SNAPSHOT_INTERVAL = 0.1  # seconds; below this periodic snapshots would never stop

PENALTY = {("memory", "warning"): 25, ("memory", "critical"): 50}  # else 10 per open alert
PENALTY_CAP = {"cache_hit_rate": 20, "pool_saturation": 20, "queue_backlog": 20}
_RANK = {"ok": 0, "warning": 1, "critical": 2}


class MonitorSettings(NamedTuple):
    """The profiler and alerts keys, parsed: sizes in bytes, durations in seconds."""
    output_dir: Optional[str]  # None: the snapshots module's default directory
    memory_threshold: int  # 0: off
    gc_threshold: float  # 0: off
    auto_snapshot: bool
    snapshot_interval: float
    snapshot_cooldown: float
    retention: int
    cache_hit_rate_warning: float
    pool_saturation: float
    queue_backlog: float
    pressure_enabled: bool
    shrink_fraction: float
    gc_at_critical: bool
    throttle_at_critical: bool


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError("must be a fraction between 0 and 1")
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be an integer >= 1")
    return value


def _directory(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        raise ValueError("must be a directory path (empty: the default)")
    return value or None


def _interval(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds < MIN_SNAPSHOT_INTERVAL:
        raise ValueError("must be at least %gs" % MIN_SNAPSHOT_INTERVAL)
    return seconds


_PARSE = {
    "profiler.output_dir": _directory, "profiler.memory_threshold": parse_size,
    "profiler.gc_threshold": parse_duration, "profiler.auto_snapshot": _flag,
    "profiler.snapshot_interval": _interval, "profiler.snapshot_cooldown": parse_duration,
    "profiler.retention": _count, "alerts.cache_hit_rate_warning": _fraction,
    "alerts.pool_saturation": _fraction, "alerts.queue_backlog": _fraction,
    "alerts.pressure_actions.enabled": _flag, "alerts.pressure_actions.shrink_fraction": _fraction,
    "alerts.pressure_actions.gc_at_critical": _flag,
    "alerts.pressure_actions.throttle_at_critical": _flag,
}


def flat_values(settings: Mapping[str, Any]) -> Dict[str, Any]:
    """The dotted profiler/alerts keys present in the settings sections (as given)."""
    out: Dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, "%s.%s" % (prefix, key))
        else:
            out[prefix] = node

    for section in ("profiler", "alerts"):
        if section in settings:
            walk(settings[section], section)
    return out


def read(settings: Mapping[str, Any]) -> Tuple[MonitorSettings, Dict[str, Any], List[str]]:
    """(parsed settings, {dotted key: effective value as given}, problems). A bad or unknown key
    is a problem and leaves its default in place: the agent runs on, config.apply refuses."""
    effective = dict(DEFAULTS)
    problems: List[str] = []
    for key, value in flat_values(settings).items():
        if key in _PARSE:
            try:
                _PARSE[key](value)
            except (TypeError, ValueError) as exc:
                problems.append("%s: %s, got %r" % (key, str(exc).rstrip("."), value))
                continue
            effective[key] = value
        elif key == "alerts.pressure_actions":
            problems.append("%s: must be a table of %s, got %r" % (key, ", ".join(
                k.rsplit(".", 1)[1] for k in SETTING_KEYS if k.startswith(key + ".")), value))
        elif key in OPTION_KEYS:
            problems.append("%s is an agent option: pass it under 'options' (%s)"
                            % (key, key.split(".", 1)[1]))
        else:
            problems.append("%s: unknown key; the agent takes %s" % (key, ", ".join(SETTING_KEYS)))
    v = {k: _PARSE[k](effective[k]) for k in SETTING_KEYS}
    parsed = MonitorSettings(
        v["profiler.output_dir"], v["profiler.memory_threshold"], v["profiler.gc_threshold"],
        v["profiler.auto_snapshot"], v["profiler.snapshot_interval"],
        v["profiler.snapshot_cooldown"], v["profiler.retention"],
        v["alerts.cache_hit_rate_warning"], v["alerts.pool_saturation"], v["alerts.queue_backlog"],
        v["alerts.pressure_actions.enabled"], v["alerts.pressure_actions.shrink_fraction"],
        v["alerts.pressure_actions.gc_at_critical"],
        v["alerts.pressure_actions.throttle_at_critical"])
    return parsed, effective, problems


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Dict[str, List[Any]]:
    """``{dotted key: [old, new]}`` of the effective profiler/alerts values two settings give."""
    a, b = read(old)[1], read(new)[1]
    return {k: [a[k], b[k]] for k in SETTING_KEYS if a[k] != b[k]}


def _copy(node: Any) -> Any:
    return {k: _copy(v) for k, v in node.items()} if isinstance(node, Mapping) else node


class _Track:
    """One alert's state: opens or moves only after the same verdict held *need* samples."""
    __slots__ = ("state", "pending", "count", "alert")

    def __init__(self) -> None:
        self.state = "ok"
        self.pending: Optional[str] = None
        self.count = 0
        self.alert: Optional[Dict[str, Any]] = None  # the open alert, as readers see it

    def verdict(self, verdict: Optional[str], fire: int, clear: int) -> Optional[str]:
        """Feed one sample's verdict ("ok", "warning", "critical"; None: cannot judge, "hold":
        inside the hysteresis band). Returns the previous state when the state changed."""
        if verdict is None:
            return None
        if verdict == "hold" or verdict == self.state:
            self.pending, self.count = None, 0
            return None
        if verdict == self.pending:
            self.count += 1
        else:
            self.pending, self.count = verdict, 1
        if self.count < (clear if verdict == "ok" else fire):
            return None
        previous, self.state = self.state, verdict
        self.pending, self.count = None, 0
        return previous


class Monitor:
    """Owned by the Agent; everything but ``view()`` runs on the sampler thread."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.level = "ok"  # memory
        self._tracks: Dict[str, _Track] = {}
        self._lookups: Dict[str, Deque[Tuple[int, int]]] = {}
        self._throttled: List[Tuple[str, Any]] = []  # (name, weakref) we throttled
        self._src: Any = None
        self._settings = read({})[0]
        self._view: Tuple[Dict[str, Any], List[Dict[str, Any]]] = ({"score": 100,
                                                                     "reasons": []}, [])

    # settings ----------------------------------------------------------------------------------
    def settings(self) -> MonitorSettings:
        """The parsed profiler/alerts settings, re-read when the agent's settings change."""
        settings = self.agent.settings
        src = (_copy(settings.get("profiler")), _copy(settings.get("alerts")))
        if src != self._src:
            self._src = src
            self._settings, _, problems = read(settings)
            if problems:
                self.agent.events.emit("config", "warning", "profiler/alerts settings: %s; "
                                       "their defaults apply" % "; ".join(problems),
                                       problems=problems)
        return self._settings

    # the sampler's entry point -------------------------------------------------------------------
    def observe(self, proc: Dict[str, Any], comps: Dict[str, Any], pause_s: float) -> None:
        """Judge one recorded sample and act on it; never raises."""
        cfg = self.settings()
        for where, step in (("memory alert", lambda: self.check_memory(proc.get("rss") or 0,
                                                                        cfg)),
                            ("alerts", lambda: self._check_components(comps, cfg)),
                            ("gc alert", lambda: self._check_gc(pause_s, cfg))):
            try:
                step()
            except Exception as exc:
                self.agent.record_error(where, exc)
        if self._throttled and not (cfg.pressure_enabled and cfg.throttle_at_critical):
            self._release("throttling at critical was turned off")
        self._publish()

    def view(self) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
        """(health, open alerts) as of the last sample; never mutated afterwards."""
        return self._view

    @property
    def score(self) -> int:
        return self._view[0]["score"]

    def stop(self) -> None:
        """The agent stops: nothing stays throttled behind it."""
        if self._throttled:
            self._release("the agent stopped")

    # memory ------------------------------------------------------------------------------------
    def check_memory(self, rss: int, cfg: Optional[MonitorSettings] = None) -> None:
        """Memory against the limit, at once, with hysteresis; pressure actions on a change."""
        agent = self.agent
        limit = agent.limit.get("bytes")
        if not limit:
            return
        pct = 100.0 * rss / limit
        o = agent.options
        level = self.level
        if pct >= o.critical_pct:
            new = "critical"
        elif pct >= o.warning_pct:
            # stay critical until clearly below the critical line
            new = "critical" if level == "critical" and pct >= o.critical_pct - o.hysteresis_pct \
                else "warning"
        elif level != "ok" and pct >= o.warning_pct - o.hysteresis_pct:
            new = "warning"
        else:
            new = "ok"
        if new == level:
            return
        self.level = new
        source = agent.limit.get("source")
        data = {"alert": "memory", "key": "memory", "state": new, "previous": level, "rss": rss,
                "limit": limit, "limit_source": source, "percent": round(pct, 2),
                "value": round(pct, 2),
                "threshold": o.critical_pct if new == "critical" else o.warning_pct}
        text = "RSS %s is %.1f%% of the %s limit (%s)" % (fmt_bytes(rss), pct, fmt_bytes(limit),
                                                           source)
        track = self._tracks.setdefault("memory", _Track())
        track.state = new
        if new == "ok":
            self._emit(track, "info", "memory back to normal: " + text, data)
        else:
            self._emit(track, new, "memory %s: %s" % (new, text), data)
        self._pressure(new, level, rss, cfg or self.settings())

    # components and gc -------------------------------------------------------------------------
    def _check_components(self, comps: Dict[str, Any], cfg: MonitorSettings) -> None:
        seen = set()
        for name, item in comps.items():
            stats = item.get("stats") or {}
            kind = item.get("kind")
            if kind == "cache":
                judged = self._cache(name, stats, cfg)
            elif kind == "pool":
                judged = self._pool(name, stats, cfg)
            elif kind == "workers":
                judged = self._backlog(name, stats, cfg)
            else:
                continue
            alert, verdict, message, data = judged
            key = "%s:%s" % (alert, name)
            seen.add(key)
            data.update(alert=alert, key=key, component=name)
            self._judge(key, verdict, SUSTAIN, SUSTAIN, message, data)
        for key in [k for k in self._tracks if ":" in k and k not in seen]:
            track = self._tracks.pop(key)  # the component is gone
            if track.state != "ok":
                alert, _, name = key.partition(":")
                previous, track.state = track.state, "ok"
                self._emit(track, "info", "%s: %s is gone" % (alert.replace("_", " "), name),
                           {"alert": alert, "key": key, "component": name, "state": "ok",
                            "previous": previous})
        for name in [n for n in self._lookups if n not in comps]:
            del self._lookups[name]

    def _cache(self, name: str, stats: Dict[str, Any], cfg: MonitorSettings) -> tuple:
        hits, misses = stats.get("hits"), stats.get("misses")
        line = cfg.cache_hit_rate_warning
        data: Dict[str, Any] = {"threshold": line}
        if not (_is_int(hits) and _is_int(misses)):
            return "cache_hit_rate", None, "", data
        window = self._lookups.get(name)
        if window is None:
            window = self._lookups[name] = deque(maxlen=HIT_WINDOW + 1)
        if window and (hits < window[-1][0] or misses < window[-1][1]):
            window.clear()  # counters went back (a new object under the same name)
        window.append((hits, misses))
        got, missed = hits - window[0][0], misses - window[0][1]
        lookups = got + missed
        if lookups < MIN_LOOKUPS:
            return "cache_hit_rate", None, "", data
        rate = got / lookups
        data.update(value=round(rate, 4), lookups=lookups)
        track = self._tracks.get("cache_hit_rate:" + name)
        if rate < line:
            verdict = "warning"
        elif track is not None and track.state != "ok" and rate < min(1.0, line + HIT_MARGIN):
            verdict = "hold"
        else:
            verdict = "ok"
        if verdict == "ok":
            message = "cache %s hit rate back to %.0f%% (warning line %.0f%%)" % (
                name, rate * 100, line * 100)
        else:
            message = "cache %s hit rate %.0f%% over the last %d lookups, under the %.0f%% " \
                      "warning line" % (name, rate * 100, lookups, line * 100)
        return "cache_hit_rate", verdict, message, data

    def _pool(self, name: str, stats: Dict[str, Any], cfg: MonitorSettings) -> tuple:
        in_use, top, waiters = stats.get("in_use"), stats.get("max_size"), stats.get("waiters")
        line = cfg.pool_saturation
        data: Dict[str, Any] = {"threshold": line}
        if not (_is_int(in_use) and _is_int(top) and top > 0):
            return "pool_saturation", None, "", data
        waiters = waiters if _is_int(waiters) else 0
        used = in_use / top
        data.update(value=round(used, 4), in_use=in_use, max_size=top, waiters=waiters)
        if used >= line and waiters > 0:
            return "pool_saturation", "warning", "pool %s saturated: %d of %d in use (%.0f%%) " \
                "with %d waiting (warning at %.0f%%)" % (name, in_use, top, used * 100, waiters,
                                                         line * 100), data
        return "pool_saturation", "ok", "pool %s no longer saturated: %d of %d in use, %d " \
            "waiting" % (name, in_use, top, waiters), data

    def _backlog(self, name: str, stats: Dict[str, Any], cfg: MonitorSettings) -> tuple:
        queued, size = stats.get("queued"), stats.get("queue_size")
        line = cfg.queue_backlog
        data: Dict[str, Any] = {"threshold": line}
        if not (_is_int(queued) and _is_int(size) and size > 0):
            return "queue_backlog", None, "", data
        used = queued / size
        data.update(value=round(used, 4), queued=queued, queue_size=size)
        track = self._tracks.get("queue_backlog:" + name)
        if queued > 0 and used >= line:
            verdict = "critical" if queued >= size else "warning"
        elif track is not None and track.state != "ok" and queued > 0 \
                and used >= line - BACKLOG_MARGIN:
            verdict = "hold"
        else:
            verdict = "ok"
        if verdict == "ok":
            message = "worker pool %s backlog cleared: %d of %d queue slots used" % (
                name, queued, size)
        else:
            message = "worker pool %s %s: %d of %d queue slots used (%.0f%%, warning at " \
                      "%.0f%%)" % (name, "queue full" if queued >= size else "backlog", queued,
                                   size, used * 100, line * 100)
        return "queue_backlog", verdict, message, data

    def _check_gc(self, pause_s: float, cfg: MonitorSettings) -> None:
        line = cfg.gc_threshold
        track = self._tracks.get("gc_pause")
        if line <= 0:  # off: an open alert clears
            verdict = "ok" if track is not None and track.state != "ok" else None
            clear = 1
        else:
            verdict = "warning" if pause_s > line else "ok"
            clear = GC_CLEAR
        data = {"alert": "gc_pause", "key": "gc_pause", "component": None,
                "value": round(pause_s * 1000.0, 3), "threshold": line * 1000.0}
        if verdict == "warning":
            message = "gc paused the process for %.1f ms, over the %.0f ms threshold" % (
                pause_s * 1000.0, line * 1000.0)
        else:
            message = "no gc pause over %.0f ms in the last %d samples" % (line * 1000.0, clear)
        self._judge("gc_pause", verdict, 1, clear, message, data)

    def _judge(self, key: str, verdict: Optional[str], fire: int, clear: int, message: str,
               data: Dict[str, Any]) -> None:
        track = self._tracks.get(key)
        if track is None:
            if verdict in (None, "ok", "hold"):
                return  # nothing to remember about a healthy one
            track = self._tracks[key] = _Track()
        previous = track.verdict(verdict, fire, clear)
        if previous is not None:
            data.update(state=track.state, previous=previous)
            self._emit(track, "info" if track.state == "ok" else track.state, message, data)
        elif track.alert is not None and verdict == track.state:
            # still open: readers see the latest figures without a new event
            track.alert = dict(track.alert, message=message, value=data.get("value"))

    def _emit(self, track: _Track, severity: str, message: str, data: Dict[str, Any]) -> None:
        event = self.agent.events.emit("alert", severity, message, **data)
        if track.state == "ok":
            track.alert = None
            return
        since = track.alert["since"] if track.alert is not None else event["t"]
        track.alert = {"key": data["key"], "alert": data["alert"],
                       "component": data.get("component"), "severity": track.state,
                       "since": since, "seq": event["seq"], "message": message,
                       "value": data.get("value"), "threshold": data.get("threshold")}

    def _publish(self) -> None:
        alerts = [t.alert for t in self._tracks.values() if t.alert is not None]
        alerts.sort(key=lambda a: (-_RANK[a["severity"]], a["since"]))
        self._view = (health(alerts), alerts)

    # pressure actions --------------------------------------------------------------------------
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


def health(alerts: List[Dict[str, Any]]) -> Dict[str, Any]:
    """100 minus a penalty per open alert (memory warning 25, critical 50, any other 10; cache,
    pool and backlog alerts count 20 at most per kind), never below 0; with the reasons."""
    spent: Dict[str, int] = {}
    reasons = []
    for a in alerts:
        kind = a["alert"]
        penalty = PENALTY.get((kind, a["severity"]), 10)
        cap = PENALTY_CAP.get(kind)
        if cap is not None:
            penalty = max(0, min(penalty, cap - spent.get(kind, 0)))
        spent[kind] = spent.get(kind, 0) + penalty
        reasons.append({"alert": kind, "severity": a["severity"], "penalty": penalty,
                        "message": a["message"], "component": a.get("component")})
    reasons.sort(key=lambda r: -r["penalty"])
    return {"score": max(0, 100 - sum(spent.values())), "reasons": reasons}


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
