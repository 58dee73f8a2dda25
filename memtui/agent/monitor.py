"""Alerts (memory, cache hit rate, pool saturation, worker backlog, long gc pauses) and the health
score behind them. The sampler calls ``Monitor.observe`` once per sample; readers get an immutable
view (``view()``) built at the end of it.

An alert opens and clears as an "alert" event. Memory moves at once with hysteresis, as before;
the others must hold for a few samples (``SUSTAIN``) so a value sitting on the line cannot flap.
The settings are in ``monitor_settings.py`` and the pressure actions in ``pressure.py``; their
names stay importable from here.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional, Tuple

# re-exported: config_ops, config.profiles and the tests use these names from here
from .monitor_settings import (DEFAULTS, MIN_SNAPSHOT_INTERVAL, OPTION_KEYS,  # noqa: F401
                               SETTING_KEYS, MonitorSettings, changes, flat_values, read)
from .pressure import _RANK, PressureActions, _held, _is_int, fmt_bytes  # noqa: F401

SUSTAIN = 3  # samples a component alert's condition must hold before it opens or clears
GC_CLEAR = 10  # samples without a long pause before the gc alert clears
HIT_WINDOW = 10  # samples over which a cache's hit rate is judged...
MIN_LOOKUPS = 100  # ...once it saw at least this many lookups in them
HIT_MARGIN = 0.05  # a hit-rate alert clears this far above the line
BACKLOG_MARGIN = 0.1  # a backlog alert clears this far below the line

PENALTY = {("memory", "warning"): 25, ("memory", "critical"): 50}  # else 10 per open alert
PENALTY_CAP = {"cache_hit_rate": 20, "pool_saturation": 20, "queue_backlog": 20}


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


class Monitor(PressureActions):
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

