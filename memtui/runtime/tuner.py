"""The tuner: recommendations, each with its evidence and a bounded suggested value, from a
window of agent history (``Agent.history(components=True)``). Pure and deterministic: no I/O, no clock.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

# Thresholds (the seeds': cache hit-rate warning below 60%; the rest are ours, named here).
LOW_HIT_RATE = 0.60
HIGH_HIT_RATE = 0.95
SHRINK_UTILIZATION = 0.25  # a cache whose peak fill stays under this may shrink
MIN_LOOKUPS = 50  # fewer lookups in the window say nothing about a hit rate
MIN_SAMPLES = 3
POOL_WAITER_SHARE = 0.5  # waiters in more than half the samples ...
POOL_BUSY = 0.90  # ... while in_use is at least 90% of max_size
QUEUE_FULL = 0.80
MIN_BACKLOG = 10  # a growing queue shorter than this is noise
GC_PAUSE_P95_MS = 50.0
GC_GEN2_PER_MIN = 6.0
GC_GEN0_PER_S = 100.0
CACHE_RAM_SHARE = 0.25  # no one cache is advised past a quarter of RAM
LIMITS = {"max_entries": 10_000_000, "pool_max_size": 1024, "queue_size": 1_000_000,
          "gc_threshold0": 100_000, "threads_per_cpu": 4}
SEVERITIES = ("critical", "warning", "info")


class Recommendation(NamedTuple):
    component: str
    kind: str
    setting: str
    current: Any
    suggested: Any
    reason: str
    evidence: Dict[str, Any]
    severity: str = "warning"

    def to_dict(self) -> Dict[str, Any]:
        out = self._asdict()
        out["evidence"] = dict(self.evidence)
        return out


def machine_defaults() -> Dict[str, int]:
    """This machine's CPU count and RAM (the only place the tuner looks outside its arguments)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 0
    return {"cpu_count": os.cpu_count() or 1, "ram_bytes": int(ram)}


def recommend(window: Dict[str, Any], settings: Optional[Dict[str, Any]] = None,
              machine: Optional[Dict[str, Any]] = None) -> List[Recommendation]:
    """Every recommendation the window supports, most severe first.

    *settings* maps a component name (or ``"gc"``) to its current settings; a component's own
    stats (max_entries, max_size, max_workers ...) are used where it is missing. *machine* is
    ``{"cpu_count", "ram_bytes"}``, this machine's by default.
    """
    settings = settings or {}
    machine = dict(machine) if machine else machine_defaults()
    recs: List[Recommendation] = []
    for name, kind, series in _series(window):
        if len(series) < MIN_SAMPLES:
            continue
        given = settings.get(name) or {}
        if kind == "cache":
            recs.extend(_cache(name, series, given, machine))
        elif kind == "pool":
            recs.extend(_pool(name, series, given))
        elif kind == "workers":
            recs.extend(_workers(name, series, given, machine))
    recs.extend(_gc(window, settings.get("gc") or {}))
    recs.sort(key=lambda r: (SEVERITIES.index(r.severity), r.component, r.setting))
    return recs


# -- reading the window -------------------------------------------------------------------------
def _series(window: Dict[str, Any]) -> Iterable[Tuple[str, str, List[Dict[str, Any]]]]:
    """(name, kind, [stats per sample, oldest first]) per component, in name order."""
    by_name: Dict[str, Tuple[str, List[Dict[str, Any]]]] = {}
    for sample in sorted(window.get("components") or [], key=lambda s: s.get("seq", 0)):
        for name, item in (sample.get("components") or {}).items():
            stats = item.get("stats") if isinstance(item, dict) else None
            if not stats or item.get("error"):
                continue
            kind = item.get("kind") or "custom"
            entry = by_name.setdefault(name, (kind, []))
            if entry[0] == kind:
                entry[1].append(stats)
    for name in sorted(by_name):
        yield name, by_name[name][0], by_name[name][1]


def _num(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _col(series: Sequence[Dict[str, Any]], key: str) -> List[Optional[float]]:
    return [_num(s.get(key)) for s in series]


def _delta(series: Sequence[Dict[str, Any]], key: str) -> float:
    """Growth of a counter over the window (0 when unknown or reset)."""
    values = [v for v in _col(series, key) if v is not None]
    return max(0.0, values[-1] - values[0]) if len(values) >= 2 else 0.0


def _size_evictions(stats: Dict[str, Any]) -> Optional[float]:
    ev = stats.get("evictions")
    return _num(ev.get("size")) if isinstance(ev, dict) else _num(ev)


def _growing(values: Sequence[Optional[float]]) -> bool:
    """Rising across the window: the last above the first and no step down in most steps."""
    vals = [v for v in values if v is not None]
    if len(vals) < MIN_SAMPLES or vals[-1] <= vals[0]:
        return False
    ups = sum(1 for a, b in zip(vals, vals[1:]) if b >= a)
    return ups >= 0.7 * (len(vals) - 1)


def _current(given: Dict[str, Any], last: Dict[str, Any], key: str) -> Optional[float]:
    value = _num(given.get(key))
    return value if value is not None else _num(last.get(key))


def _pct(x: float) -> str:
    return "%.0f%%" % (100.0 * x)


# -- caches -------------------------------------------------------------------------------------
def _cache(name: str, series: List[Dict[str, Any]], given: Dict[str, Any],
           machine: Dict[str, Any]) -> List[Recommendation]:
    last = series[-1]
    hits, misses = _delta(series, "hits"), _delta(series, "misses")
    lookups = hits + misses
    if lookups < MIN_LOOKUPS:
        return []
    rate = hits / lookups
    evictions = [_size_evictions(s) for s in series]
    evicted = [v for v in evictions if v is not None]
    size_ev = (evicted[-1] - evicted[0]) if len(evicted) >= 2 else 0.0
    entries, nbytes = _num(last.get("entries")), _num(last.get("bytes"))
    max_entries = _current(given, last, "max_entries")
    max_bytes = _current(given, last, "max_bytes")
    ram_cap = (machine.get("ram_bytes") or 0) * CACHE_RAM_SHARE
    evidence = {"hit_rate": round(rate, 4), "lookups": int(lookups), "size_evictions": int(size_ev),
                "samples": len(series), "entries": entries, "max_entries": max_entries,
                "bytes": nbytes, "max_bytes": max_bytes}
    # which bound binds: the fuller one
    fill_e = entries / max_entries if entries is not None and max_entries else None
    fill_b = nbytes / max_bytes if nbytes is not None and max_bytes else None
    by_bytes = fill_b is not None and (fill_e is None or fill_b >= fill_e)
    setting, current = ("max_bytes", max_bytes) if by_bytes else ("max_entries", max_entries)
    if current is None:
        return []
    if rate < LOW_HIT_RATE and size_ev > 0:
        if by_bytes:
            cap = ram_cap or current * 2
        else:
            per_entry = (nbytes / entries) if nbytes and entries else None
            cap = min(LIMITS["max_entries"], ram_cap / per_entry if per_entry and ram_cap
                      else LIMITS["max_entries"])
        suggested = int(min(current * 2, cap))
        if suggested <= current:
            return []
        evidence.update(threshold=LOW_HIT_RATE, bound=int(cap))
        return [Recommendation(
            name, "cache", setting, int(current), suggested,
            "hit rate %s is below %s while %d entries were evicted for room in the last %d "
            "samples: the working set does not fit; raise %s (bound: %d)"
            % (_pct(rate), _pct(LOW_HIT_RATE), size_ev, len(series), setting, cap),
            evidence, "warning")]
    if rate >= HIGH_HIT_RATE and size_ev == 0:
        used = [v for v in _col(series, "bytes" if by_bytes else "entries") if v is not None]
        peak = max(used) if used else None
        if peak is not None and peak <= SHRINK_UTILIZATION * current:
            suggested = int(max(peak * 2, 16 if not by_bytes else 64 * 1024))
            if suggested < current:
                evidence.update(peak=peak, peak_fill=round(peak / current, 4))
                return [Recommendation(
                    name, "cache", setting, int(current), suggested,
                    "hit rate %s with the cache never more than %s full: %s could shrink to "
                    "twice the peak and give memory back" % (_pct(rate), _pct(peak / current),
                                                           setting), evidence, "info")]
    return []


# -- resource pools -----------------------------------------------------------------------------
def _pool(name: str, series: List[Dict[str, Any]], given: Dict[str, Any]) -> List[Recommendation]:
    last = series[-1]
    current = _current(given, last, "max_size")
    if not current:
        return []
    waiters = _col(series, "waiters")
    in_use = _col(series, "in_use")
    waited = sum(1 for w in waiters if w)
    busy = sum(1 for u in in_use if u is not None and u >= POOL_BUSY * current)
    n = len(series)
    if waited <= POOL_WAITER_SHARE * n or busy <= POOL_WAITER_SHARE * n:
        return []
    peak_waiters = max(w for w in waiters if w is not None)
    timeouts = _delta(series, "timeouts")
    suggested = int(min(LIMITS["pool_max_size"],
                        max(current + peak_waiters, math.ceil(current * 1.5)), current * 4))
    if suggested <= current:
        return []
    evidence = {"samples": n, "samples_with_waiters": waited, "samples_busy": busy,
                "peak_waiters": int(peak_waiters), "max_size": int(current),
                "timeouts": int(timeouts), "wait_p95_ms": _num(last.get("wait_p95_ms")),
                "bound": LIMITS["pool_max_size"]}
    return [Recommendation(
        name, "pool", "max_size", int(current), suggested,
        "callers waited in %d of %d samples with %s or more of %d resources in use%s: raise "
        "max_size" % (waited, n, _pct(POOL_BUSY), current,
                      " and %d acquires timed out" % timeouts if timeouts else ""),
        evidence, "critical" if timeouts else "warning")]


# -- worker pools and queues --------------------------------------------------------------------
def _workers(name: str, series: List[Dict[str, Any]], given: Dict[str, Any],
             machine: Dict[str, Any]) -> List[Recommendation]:
    last = series[-1]
    queued = _col(series, "queued")
    latest = queued[-1]
    if latest is None:
        return []
    queue_size = _current(given, last, "queue_size")
    growing = _growing(queued) and latest >= MIN_BACKLOG
    full = bool(queue_size) and latest >= QUEUE_FULL * queue_size  # type: ignore[operator]
    if not (growing or full):
        return []
    first = next(v for v in queued if v is not None)
    rejected = _delta(series, "rejected")
    evidence = {"samples": len(series), "queued_first": first, "queued_last": latest,
                "queue_size": queue_size, "rejected": int(rejected),
                "active": _num(last.get("active")), "throughput_per_s":
                _num(last.get("throughput_per_s"))}
    why = ("the queue grew from %d to %d over %d samples" % (first, latest, len(series))
           if growing else "the queue is %s full (%d of %d)"
           % (_pct(latest / queue_size), latest, queue_size))  # type: ignore[operator]
    severity = "critical" if rejected else "warning"
    cpus = int(machine.get("cpu_count") or 1)
    max_workers = _current(given, last, "max_workers")
    if max_workers:
        process = last.get("executor") == "process"
        cap = cpus if process else cpus * LIMITS["threads_per_cpu"]
        suggested = int(min(cap, max(max_workers + 1, max_workers * 2)))
        if suggested > max_workers:
            evidence.update(max_workers=int(max_workers), bound=cap, cpu_count=cpus)
            return [Recommendation(
                name, "workers", "max_workers", int(max_workers), suggested,
                "%s: raise max_workers (bounded by %d %s)" % (
                    why, cap, "CPUs" if process else "= %d CPUs x %d threads"
                    % (cpus, LIMITS["threads_per_cpu"])), evidence, severity)]
    if queue_size:
        suggested = int(min(LIMITS["queue_size"], queue_size * 2))
        if suggested > queue_size:
            evidence.update(max_workers=max_workers, bound=LIMITS["queue_size"])
            return [Recommendation(
                name, "workers", "queue_size", int(queue_size), suggested,
                "%s%s: raise queue_size to absorb bursts" % (
                    why, " and max_workers is at its bound" if max_workers else ""),
                evidence, severity)]
    return [Recommendation(name, "workers", "consumers", None, None,
                           "%s and nothing here bounds its consumers: add consumers or make "
                           "producers wait" % why, evidence, severity)]


# -- the garbage collector ----------------------------------------------------------------------
def _gc(window: Dict[str, Any], given: Dict[str, Any]) -> List[Recommendation]:
    fields = window.get("fields") or []
    rows = window.get("rows") or []
    if len(rows) < MIN_SAMPLES:
        return []

    def col(key: str) -> List[Optional[float]]:
        if key not in fields:
            return []
        i = fields.index(key)
        return [_num(r[i]) if i < len(r) else None for r in rows]

    pauses = sorted(p for p in col("gc_pause_max_ms") if p is not None)
    times = [t for t in col("t") if t is not None]
    span = (times[-1] - times[0]) if len(times) >= 2 else 0.0
    gen0 = _delta([{"c": v} for v in col("collections0")], "c")
    gen2 = _delta([{"c": v} for v in col("collections2")], "c")
    recs: List[Recommendation] = []
    p95 = pauses[min(len(pauses) - 1, int(round(0.95 * (len(pauses) - 1))))] if pauses else 0.0
    evidence = {"samples": len(rows), "span_s": round(span, 3), "pause_p95_ms": p95,
                "pause_max_ms": pauses[-1] if pauses else None,
                "gen0_collections": int(gen0), "gen2_collections": int(gen2)}
    frozen = given.get("frozen")
    if p95 > GC_PAUSE_P95_MS and not frozen:
        recs.append(Recommendation(
            "gc", "gc", "gc.freeze", bool(frozen) if frozen is not None else None, True,
            "gc pauses p95 %.0f ms over the window (above %.0f ms): call gc.freeze() once start-up"
            " is done so long-lived objects leave the collected generations"
            % (p95, GC_PAUSE_P95_MS), dict(evidence, threshold_ms=GC_PAUSE_P95_MS),
            "critical" if p95 > 4 * GC_PAUSE_P95_MS else "warning"))
    threshold = given.get("threshold")
    t0 = _num(threshold[0]) if isinstance(threshold, (list, tuple)) and threshold else None
    if span > 0 and t0 and (gen2 * 60.0 / span > GC_GEN2_PER_MIN or gen0 / span > GC_GEN0_PER_S):
        suggested = int(min(LIMITS["gc_threshold0"], max(t0 * 2, 2000)))
        if suggested > t0:
            recs.append(Recommendation(
                "gc", "gc", "gc.threshold0", int(t0), suggested,
                "%.1f gen-2 collections a minute and %.0f gen-0 a second: raise the gen-0 "
                "threshold so collections run less often" % (gen2 * 60.0 / span, gen0 / span),
                dict(evidence, threshold=list(threshold), bound=LIMITS["gc_threshold0"]),
                "info"))
    return recs
