"""The in-process agent: the sampling thread, the history ring, live settings and options.
Alerts, health and pressure actions are in ``monitor.py``, automatic snapshots in
``autoprofile.py``; the process-wide entry points (start, install, fork) in ``lifecycle.py``.

Rules it lives by: never raise into the host from a background path, bounded memory, stop at exit,
survive fork, and ``MEMTUI_DISABLE=1`` makes every entry point a no-op.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections import deque
from typing import Any, Deque, Dict, Optional, Tuple

import _tracemalloc

from .. import paths, protocol
from . import gc_tuning
from .autoprofile import AutoProfiler
from .collectors.heap import HeapCollector
from .collectors.process import ProcessCollector, effective_limit
from .events import EventLog
from .monitor import Monitor
from .options import AgentOptions
from .registry import ComponentRegistry

AGENT_VERSION = "0.1.0"

# Columns of one history row; rows are tuples to keep 600 samples well under a megabyte.
HISTORY_FIELDS = (
    "seq", "t", "rss", "vms", "uss", "pss", "swap", "threads", "fds",
    "traced", "traced_peak", "gc_count0", "gc_count1", "gc_count2",
    "collections0", "collections1", "collections2", "collected", "uncollectable",
    "gc_pause_max_ms", "memory_pct", "health",
)


# kind -> (section with defaults, section with per-name overrides), as in the profiles
SECTIONS = {"cache": ("cache", "caches"), "pool": ("pool", "pools"),
            "workers": ("workers", "worker_pools"), "batch": ("execution", None)}


def settings_for(settings: Dict[str, Any], kind: str, name: str) -> Dict[str, Any]:
    """``[cache]`` defaults overlaid with ``[caches.NAME]`` (and likewise for pools, workers)."""
    default_section, named_section = SECTIONS.get(kind, (None, None))
    values: Dict[str, Any] = {}
    if default_section and isinstance(settings.get(default_section), dict):
        values.update(settings[default_section])
    if named_section and isinstance(settings.get(named_section), dict):
        named = settings[named_section].get(name.split("#", 1)[0])
        if isinstance(named, dict):
            values.update(named)
    return values


def disabled(environ: Optional[Dict[str, str]] = None) -> bool:
    value = (os.environ if environ is None else environ).get("MEMTUI_DISABLE", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


class TokenBucket:
    """Rate limit for mutating ops; shared by all connections so reconnecting does not reset it."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = float(max(1, burst))
        self.rate = float(rate)
        self.tokens = self.burst
        self.last = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0.0 when allowed, else the seconds until a token is available."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate if self.rate > 0 else float("inf")


class Agent:
    def __init__(self, options: AgentOptions, registry: Optional[ComponentRegistry] = None,
                 settings: Optional[Dict[str, Any]] = None, profile: Optional[str] = None) -> None:
        self.options = options
        self.settings: Dict[str, Any] = dict(settings or {})
        self.profile = profile  # the environment's profile file the settings came from, if any
        self.registry = registry if registry is not None else ComponentRegistry()
        self.events = EventLog(options.events)
        self.process = ProcessCollector()
        self.heap = HeapCollector()
        self.pid = os.getpid()
        self.started_at = time.time()
        self._mono0 = time.monotonic()
        self.limit = effective_limit(options.memory_limit)
        self.monitor = Monitor(self)  # alerts, health, pressure actions
        self.autoprofile = AutoProfiler(self)
        self.errors: Deque[Tuple[float, str, str]] = deque(maxlen=50)
        self._error_last: Dict[str, float] = {}
        self.bucket = TokenBucket(options.mutations_burst, options.mutations_per_s)
        self._rows: Deque[tuple] = deque(maxlen=options.history)
        self._comp_rows: Deque[Tuple[int, Dict[str, tuple]]] = deque(maxlen=options.component_history)
        self._comp_keys: Dict[str, tuple] = {}  # last key tuple per component, shared by rows
        self._hist_lock = threading.Lock()
        self._seq = 0
        self._stats_cache: Dict[bool, Tuple[float, protocol.RawJSON]] = {}
        self._last_comps: Tuple[Optional[float], Dict[str, Any]] = (None, {})
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and by a new registration
        self._thread: Optional[threading.Thread] = None
        self.server: Any = None
        self.running = False

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> "Agent":
        self.heap.install()
        if self.options.trace and not _tracemalloc.is_tracing():
            _tracemalloc.start(self.options.trace_frames)
        self.running = True
        self.registry.listeners.append(self._on_register)
        if self.settings:
            self.apply_settings()
        self._thread = threading.Thread(target=self._run, name="memtui-sampler", daemon=True)
        self._thread.start()
        if self.options.serve:
            self._start_server()
        self.events.emit("agent", "info", "agent started in PID %d" % self.pid,
                         socket=self.socket_path, env=self.options.env, profile=self.profile)
        return self

    def _start_server(self) -> None:
        from .server import SocketServer  # the socket machinery is only loaded when serving

        directory = self.options.runtime_dir or paths.runtime_dir()
        path = self.options.socket_path or paths.socket_path(self.pid, directory)
        try:
            self.server = SocketServer(self, path)
            self.server.start()
        except Exception as exc:
            self.server = None
            self.record_error("server", exc, always=True)
            # The event is unreadable without a socket; say it once where a person will see it.
            warnings.warn("memtui agent in PID %d is not serving: %s" % (self.pid, exc),
                          RuntimeWarning, stacklevel=2)

    @property
    def socket_path(self) -> Optional[str]:
        return self.server.path if self.server is not None else None

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        self._stop.set()
        self._wake.set()
        self._drop_listener()
        if self.server is not None:
            self.server.stop()
        self.heap.uninstall()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=2.0)
        self.monitor.stop()  # after the sampler: nothing it throttled stays throttled

    def _drop_listener(self) -> None:
        try:
            self.registry.listeners.remove(self._on_register)
        except ValueError:
            pass

    # settings ------------------------------------------------------------------------------
    def _on_register(self, name: str, kind: str, component: Any) -> None:
        if self.settings:
            self.configure_component(name, kind, component)
        self._wake.set()  # a new component shows up in the next sample at once

    def apply_settings(self, settings: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Configure every registered component from *settings* (kept for ones registered later)
        and apply its ``tuner`` section; returns {name: what changed or the error}."""
        if settings is not None:
            self.settings = dict(settings)
        if "tuner" in self.settings:
            self.apply_tuner(self.settings["tuner"])
        return {entry.name: self.configure_component(entry.name, entry.kind, obj)
                for entry, obj in self.registry.live()}

    def apply_tuner(self, section: Any) -> Dict[str, Any]:
        """gc thresholds and a one-time gc.freeze() from a ``tuner`` section (unless ``enabled``
        is false); each change is a "config" event. Returns ``{key: [old, new]}``."""
        try:
            changes, frozen = gc_tuning.apply(gc_tuning.check(section))
        except Exception as exc:  # only reachable by calling apply_settings() with a bad one
            self.events.emit("config", "warning", "tuner settings rejected: %s" % exc)
            return {}
        if "gc_thresholds" in changes:
            old, new = changes["gc_thresholds"]
            self.events.emit("config", "info", "gc thresholds %s -> %s" % (
                tuple(old), tuple(new)), setting="gc_thresholds", old=old, new=new)
        if "gc_freeze" in changes:
            self.events.emit("config", "info", "gc.freeze(): %d objects moved to the permanent "
                             "generation" % frozen, setting="gc_freeze", old=False, new=True,
                             frozen=frozen)
        return changes

    def component_values(self, name: str, kind: str, component: Any,
                         settings: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The values of *settings* (default: the agent's) that *component* takes: its
        section's, restricted to the keys it declares in SETTINGS."""
        values = settings_for(self.settings if settings is None else settings, kind, name)
        accepted = getattr(component, "SETTINGS", None)
        if accepted is not None:
            values = {k: v for k, v in values.items() if k in accepted}
        return values

    def configure_component(self, name: str, kind: str, component: Any) -> Any:
        """Pass a component its section's values (only the keys it declares in SETTINGS)."""
        configure = getattr(component, "configure", None)
        values = self.component_values(name, kind, component)
        if not values or not callable(configure):
            return {}
        try:
            changed = configure(values)
        except Exception as exc:
            self.events.emit("config", "warning", "%s rejected its settings: %s" % (name, exc),
                             component=name, values=values)
            return {"error": "%s: %s" % (type(exc).__name__, exc)}
        if changed:
            self.events.emit("config", "info", "%s configured: %s" % (name, ", ".join(
                "%s=%s" % (k, v) for k, v in sorted(changed.items()))), component=name,
                changed=changed)
        return changed

    def set_options(self, options: AgentOptions) -> None:
        """Swap the options live. The sampler wakes and takes a new interval at once; alert
        thresholds and the memory limit count from the next sample. Ring sizes, tracing and the
        socket stay as they were started."""
        if options.memory_limit != self.options.memory_limit:
            self.limit = effective_limit(options.memory_limit)
        self.options = options
        self._stats_cache.clear()
        self._wake.set()

    def abandon_in_child(self) -> None:
        """After fork, in the child: let go of the parent's listener and threads without touching
        anything the parent still owns (its socket path stays)."""
        self.running = False
        if self.server is not None:
            self.server.abandon()
        self.heap.uninstall()

    # errors --------------------------------------------------------------------------------
    def record_error(self, where: str, exc: BaseException, always: bool = False) -> None:
        """Keep the error and surface it as an event at most once a minute per place."""
        msg = "%s: %s" % (type(exc).__name__, exc)
        now = time.monotonic()
        self.errors.append((time.time(), where, msg))
        if always or now - self._error_last.get(where, -1e9) > 60.0:
            self._error_last[where] = now
            self.events.emit("agent.error", "warning", "memtui %s failed: %s" % (where, msg),
                             where=where)
        if os.environ.get("MEMTUI_DEBUG"):
            sys.stderr.write("memtui: %s failed: %s\n" % (where, msg))

    # sampling ------------------------------------------------------------------------------
    def _run(self) -> None:
        next_t = time.monotonic()
        while self.running:
            try:
                self.sample(record=True)
            except Exception as exc:
                self.record_error("sampler", exc)
            for name, err in self.registry.maintain().items():
                self.record_error("maintain " + name, RuntimeError(err))
            interval = self.options.interval  # read each time: config.apply may change it
            next_t += interval
            now = time.monotonic()
            if next_t < now:  # fell behind (suspended, overloaded): skip, do not burst
                next_t = now + interval
            if self._wake.wait(next_t - now):
                # woken by a registration or new options: sample soon (a burst costs one sample)
                if self._stop.wait(0.05):
                    return
                self._wake.clear()
                next_t = time.monotonic()

    @property
    def level(self) -> str:
        """The memory alert level: "ok", "warning" or "critical"."""
        return self.monitor.level

    def memory_state(self, rss: int) -> Dict[str, Any]:
        limit = self.limit.get("bytes")
        pct = (100.0 * rss / limit) if limit else None
        return {"limit": limit, "limit_source": self.limit.get("source"), "percent": pct,
                "level": self.level, "warning_pct": self.options.warning_pct,
                "critical_pct": self.options.critical_pct}

    def sample(self, record: bool = False, components: bool = True) -> Dict[str, Any]:
        """Process and heap figures now. Components' stats() run only when *record* (on the
        sampler thread): a component that blocks stalls the history, never a client's request.
        Otherwise the latest collected component figures are attached with ``components_t``."""
        proc = self.process.collect()
        heap = self.heap.collect()
        pause = 0.0
        if record:
            comps = self.registry.collect()
            self._last_comps = (time.time(), comps)
            pause = self.heap.take_window_max()
            self.monitor.observe(proc, comps, pause)
        else:
            comps = self._last_comps[1]
        sample: Dict[str, Any] = {
            "t": time.time(),
            "uptime": time.monotonic() - self._mono0,
            "pid": self.pid,
            "process": proc,
            "heap": heap,
            "memory": self.memory_state(proc.get("rss", 0)),
        }
        sample["health"], sample["alerts"] = self.monitor.view()
        if components:
            sample["components"] = comps
            sample["components_t"] = self._last_comps[0]
        if record:
            self._record(sample, comps, pause)
            try:
                self.autoprofile.tick(proc.get("rss"), self.monitor.settings())
            except Exception as exc:
                self.record_error("auto snapshot", exc)
        else:
            sample["seq"] = self._seq
        return sample

    def stats_json(self, components: bool = True, fresh: bool = False) -> protocol.RawJSON:
        """The `stats` result, encoded once and shared by every request within
        ``stats_max_age``: 20 pollers cost one /proc read and one encoding, not 20. Each /proc
        read releases the GIL, which in a busy host costs up to a switch interval to regain."""
        now = time.monotonic()
        cached = self._stats_cache.get(components)
        if not fresh and cached is not None and now - cached[0] < self.options.stats_max_age:
            return cached[1]
        sample = self.sample(record=False, components=components)
        sample["events_seq"] = self.events.last_seq
        if self.server is not None:
            sample["agent"] = {"clients": self.server.clients, "accepted": self.server.accepted,
                               "refused": self.server.refused, "dropped": self.server.dropped,
                               "errors": len(self.errors)}
        raw = protocol.RawJSON(protocol.dumps(sample))
        self._stats_cache[components] = (now, raw)
        return raw

    def _record(self, sample: Dict[str, Any], comps: Dict[str, Any], pause: float) -> None:
        p, gc_ = sample["process"], sample["heap"]["gc"]
        tm = sample["heap"]["tracemalloc"]
        with self._hist_lock:
            self._seq += 1
            seq = self._seq
            sample["seq"] = seq
            self._rows.append((
                seq, sample["t"], p.get("rss"), p.get("vms"), p.get("uss"), p.get("pss"),
                p.get("swap"), p.get("threads"), p.get("fds"),
                tm.get("current"), tm.get("peak"),
                gc_["counts"][0], gc_["counts"][1], gc_["counts"][2],
                gc_["collections"][0], gc_["collections"][1], gc_["collections"][2],
                sum(gc_["collected"]), sum(gc_["uncollectable"]),
                round(pause * 1000.0, 3), sample["memory"]["percent"], sample["health"]["score"],
            ))
            if self.options.component_history:
                self._comp_rows.append((seq, self._compact(comps)))

    def _compact(self, comps: Dict[str, Any]) -> Dict[str, tuple]:
        """Store each component's stats as (kind, keys, values, error) with the keys tuple shared
        across samples: about 2.5x smaller than keeping the dicts (measured: benchmarks/memory)."""
        out: Dict[str, tuple] = {}
        for name, item in comps.items():
            stats = item.get("stats") or {}
            keys = tuple(stats)
            shared = self._comp_keys.get(name)
            if shared != keys:
                self._comp_keys[name] = shared = keys
            out[name] = (item.get("kind"), shared, tuple(stats.values()), item.get("error"))
        return out

    @staticmethod
    def _expand(row: Dict[str, tuple]) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for name, (kind, keys, values, err) in row.items():
            item: Dict[str, Any] = {"kind": kind, "stats": dict(zip(keys, values))}
            if err:
                item["error"] = err
            out[name] = item
        return out

    def history(self, since: int = 0, limit: Optional[int] = None,
                components: bool = False) -> Dict[str, Any]:
        with self._hist_lock:
            rows = [r for r in self._rows if r[0] > since]
            comp = [c for c in self._comp_rows if c[0] > since] if components else []
            last = self._seq
        if limit is not None:
            rows = rows[-limit:]
            comp = comp[-limit:]
        out: Dict[str, Any] = {"fields": list(HISTORY_FIELDS), "rows": [list(r) for r in rows],
                               "last_seq": last, "interval": self.options.interval,
                               "capacity": self.options.history}
        if components:
            out["components"] = [{"seq": s, "components": self._expand(c)} for s, c in comp]
        return out

    @property
    def seq(self) -> int:
        return self._seq

    def _check_memory(self, rss: int) -> None:
        self.monitor.check_memory(rss)

    def hello(self) -> Dict[str, Any]:
        return {
            "agent_version": AGENT_VERSION,
            "protocol": 1,
            "pid": self.pid,
            "ppid": os.getppid(),
            "python": {
                "version": "%d.%d.%d" % sys.version_info[:3],
                "implementation": sys.implementation.name,
                "executable": sys.executable,
            },
            "argv": list(sys.argv),
            "env": self.options.env,
            "profile": self.profile,
            "started_at": self.started_at,
            "uptime": time.monotonic() - self._mono0,
            "interval": self.options.interval,
            "socket": self.socket_path,
            "tracing": _tracemalloc.is_tracing(),
            "memory_limit": self.limit,
        }

