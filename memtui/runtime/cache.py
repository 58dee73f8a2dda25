"""A thread-safe, memory-bounded cache (LRU, LFU or TTL, with time-to-idle) that reports itself to
the agent, and the ``@cached`` decorator built on it. Lower tiers live in ``tiers.py``.
"""
from __future__ import annotations

import functools
import sys
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..agent.options import parse_duration, parse_size
from ._stats import EVICTION_CAUSES, LatencyWindow, hit_rate
from .tiers import MISSING as _MISSING
from .tiers import Tiers

POLICIES = ("lru", "lfu", "ttl")
SETTINGS = ("policy", "max_entries", "max_bytes", "ttl", "tti")
Note = Tuple[Any, Any, str]
_getsizeof = sys.getsizeof
_perf = time.perf_counter
# How the hit path may go: plain recency order, recency order + ttl only, or the general path.
_FAST_LRU, _FAST_TTL, _SLOW = 1, 2, 0
# Lock-free hits rely on the GIL; a free-threaded interpreter takes the locked path for them too.
_LOCK_FREE_HITS = bool(getattr(sys, "_is_gil_enabled", lambda: True)())
# Never written: the "hot" mapping when hits must take the lock. Subscripts, not .get(): a hit
# is then ~25% cheaper (measured), which is the case a cache exists for; a miss pays a KeyError.
_NEVER: "OrderedDict[Any, Any]" = OrderedDict()


class _FreshView:
    """The ttl-mode mapping for lock-free hits: the hot entries minus those whose ttl has run out
    (KeyError, so the general path evicts them)."""

    __slots__ = ("_data", "_written", "_clock", "_ttl", "move_to_end")

    def __init__(self, data: "OrderedDict[Any, Any]", written: Dict[Any, float],
                 clock: Callable[[], float], ttl: float) -> None:
        self._data, self._written, self._clock, self._ttl = data, written, clock, ttl
        self.move_to_end = data.move_to_end

    def __getitem__(self, key: Any) -> Any:
        value = self._data[key]
        if self._clock() - self._written[key] >= self._ttl:
            raise KeyError(key)
        return value


class _FrequencyList:
    """LFU order in O(1): a bucket of keys per use count, buckets linked in count order (0 is the
    sentinel, so ``nxt[0]`` is the lowest count). Within a bucket the least recently promoted key
    comes first, so frequency ties go to recency."""

    __slots__ = ("buckets", "nxt", "prv", "freq")

    def __init__(self, keys: Any = ()) -> None:
        self.buckets: Dict[int, "OrderedDict[Any, None]"] = {}
        self.nxt, self.prv = {0: 0}, {0: 0}
        self.freq: Dict[Any, int] = {}
        for key in keys:
            self.add(key)

    def _link_after(self, f: int, new: int) -> None:
        n = self.nxt[f]
        self.nxt[f], self.prv[new], self.nxt[new], self.prv[n] = new, f, n, new
        self.buckets[new] = OrderedDict()

    def _drop_if_empty(self, f: int) -> None:
        if not self.buckets[f]:
            del self.buckets[f]
            p, n = self.prv.pop(f), self.nxt.pop(f)
            self.nxt[p], self.prv[n] = n, p

    def add(self, key: Any) -> None:
        if 1 not in self.buckets:
            self._link_after(0, 1)
        self.buckets[1][key] = None
        self.freq[key] = 1

    def touch(self, key: Any) -> None:
        f = self.freq[key]
        if f + 1 not in self.buckets:
            self._link_after(f, f + 1)
        del self.buckets[f][key]
        self.buckets[f + 1][key] = None
        self.freq[key] = f + 1
        self._drop_if_empty(f)

    def remove(self, key: Any) -> None:
        f = self.freq.pop(key)
        del self.buckets[f][key]
        self._drop_if_empty(f)

    def victim(self, exclude: Any) -> Any:
        f = self.nxt[0]
        while f:
            for key in self.buckets[f]:
                if exclude is _MISSING or not (key is exclude or key == exclude):
                    return key
            f = self.nxt[f]
        return _MISSING


class _Load:
    """One in-flight load that concurrent misses on the same key wait for."""

    __slots__ = ("_lock", "value", "error", "stale")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self.stale = False  # the key was written or deleted meanwhile: the newer state wins

    def finish(self, value: Any, error: Optional[BaseException]) -> None:
        self.value, self.error = value, error
        self._lock.release()

    def result(self) -> Any:
        with self._lock:
            pass
        if self.error is not None:
            raise self.error
        return self.value


class Cache:
    """A bounded cache. ``len()`` and ``in`` cover every tier; ``stats()["entries"]`` the hot one.

    Callbacks (weigher, on_evict, loaders) run outside the lock except the weigher on
    ``configure``-free paths, which runs before it is taken; none of them may call back into a
    cache whose lock their caller holds (tier pickling runs under the lock).
    """

    kind = "cache"
    # Slots keep every attribute load on the hit path a fixed-offset read (measured: with an
    # instance dict this many attributes fall off CPython's fast path, ~15% slower hits).
    __slots__ = ("name", "policy", "_lock", "_data", "_move", "_hot", "_fast", "_timed", "_weights",
                 "_written", "_accessed", "_lfu", "_loading", "_bytes", "_hits", "_misses",
                 "_loads", "_load_errors", "_listener_errors", "_evictions", "_load_window",
                 "_weigher", "_on_evict", "_clock", "_max_entries", "_max_bytes", "_ttl", "_tti",
                 "_tiers", "__weakref__")

    def __init__(self, name: Optional[str] = None, policy: str = "lru", max_entries: Any = None,
                 max_bytes: Any = None, ttl: Any = None, tti: Any = None,
                 weigher: Optional[Callable[[Any, Any], int]] = None,
                 on_evict: Optional[Callable[[Any, Any, str], None]] = None,
                 tiers: Optional[Mapping[str, Any]] = None,
                 clock: Callable[[], float] = time.monotonic, register: bool = True) -> None:
        self.name = str(name or "cache")
        self._lock = threading.Lock()
        self._data: "OrderedDict[Any, Any]" = OrderedDict()  # recency order, oldest first
        self._move = self._data.move_to_end
        self._weights: Dict[Any, int] = {}
        self._written: "OrderedDict[Any, float]" = OrderedDict()  # ttl only, write order
        self._accessed: Dict[Any, float] = {}  # tti only
        self._lfu: Optional[_FrequencyList] = None
        self._loading: Dict[Any, _Load] = {}
        self._bytes = 0
        self._hits = self._misses = self._loads = self._load_errors = self._listener_errors = 0
        self._evictions = dict.fromkeys(EVICTION_CAUSES, 0)
        self._load_window = LatencyWindow()
        self._weigher = weigher
        self._on_evict = on_evict
        self._clock = clock
        self.policy = "lru"
        self._max_entries = self._max_bytes = self._ttl = self._tti = None
        self._timed, self._fast = False, _FAST_LRU
        self._apply(self._validate(dict(policy=policy, max_entries=max_entries,
                                        max_bytes=max_bytes, ttl=ttl, tti=tti)), 0.0)
        self._tiers: Optional[Tiers] = None
        if tiers:
            self._tiers = Tiers(dict(tiers), self.name, timed=self._timed)
            self._tiers.want_values = on_evict is not None
        if register:
            from ..agent.core import register as register_component
            self.name = register_component(self, name=self.name, kind="cache")

    # -- settings ---------------------------------------------------------------------------------
    def _settings(self) -> Dict[str, Any]:
        return {"policy": self.policy, "max_entries": self._max_entries,
                "max_bytes": self._max_bytes, "ttl": self._ttl, "tti": self._tti}

    def _validate(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        unknown = set(values) - set(SETTINGS)
        if unknown:
            raise ValueError("unknown cache settings %s (live settings: %s)"
                             % (sorted(unknown), ", ".join(SETTINGS)))
        new = self._settings()
        for key, value in values.items():
            if value is None or key == "policy":
                new[key] = value
            elif key == "max_entries":
                if isinstance(value, bool) or int(value) != value or value < 0:
                    raise ValueError("max_entries must be an integer >= 0, got %r" % (value,))
                new[key] = int(value)
            elif key == "max_bytes":
                new[key] = parse_size(value)
            else:
                new[key] = parse_duration(value)
                if new[key] <= 0:
                    raise ValueError("%s must be > 0, got %r" % (key, value))
        if new["policy"] not in POLICIES:
            raise ValueError("policy must be one of %s, got %r"
                             % (", ".join(POLICIES), new["policy"]))
        if new["policy"] == "ttl" and new["ttl"] is None:
            raise ValueError("policy 'ttl' needs a ttl (e.g. ttl='5m')")
        return new

    def _apply(self, new: Dict[str, Any], now: float) -> None:
        """Under the lock (or in __init__). Existing entries count as written/used *now* when a
        ttl/tti is first switched on."""
        self._hot, self._fast = _NEVER, _SLOW  # lock-free readers stay off while this runs
        if new["policy"] == "lfu" and self._lfu is None:
            self._lfu = _FrequencyList(list(self._data))
        elif new["policy"] != "lfu":
            self._lfu = None
        if new["ttl"] is None:
            self._written.clear()
        elif self._ttl is None:
            self._written = OrderedDict.fromkeys(list(self._data), now)
        if new["tti"] is None:
            self._accessed.clear()
        elif self._tti is None:
            self._accessed = dict.fromkeys(list(self._data), now)
        self.policy = new["policy"]
        self._max_entries, self._max_bytes = new["max_entries"], new["max_bytes"]
        self._ttl, self._tti = new["ttl"], new["tti"]
        self._timed = self._ttl is not None or self._tti is not None
        recency = self._lfu is None
        self._fast = (_FAST_LRU if recency and not self._timed else
                      _FAST_TTL if recency and self._tti is None else _SLOW)
        self._hot = (_NEVER if not _LOCK_FREE_HITS or self._fast == _SLOW else self._data
                     if self._fast == _FAST_LRU else
                     _FreshView(self._data, self._written, self._clock, self._ttl))

    def configure(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """Live retune (keys from SETTINGS). Shrinks at once when over a new bound; returns
        ``{setting: new value}`` for what changed. Nothing changes when any value is invalid."""
        old = self._settings()
        new = self._validate(values)
        now = self._clock()
        with self._lock:
            self._apply(new, now)
            notes: List[Note] = []
            self._evict_over(notes, _MISSING, now)
        self._notify(notes)
        return {k: new[k] for k in SETTINGS if new[k] != old[k]}

    # -- reading ----------------------------------------------------------------------------------
    def get(self, key: Any, default: Any = None) -> Any:
        # The hit path takes no lock: under the GIL each single dict/OrderedDict call is atomic,
        # every structural change happens under the lock, and a hit only reads, reorders and
        # counts. A key removed or expired meanwhile (KeyError) sends it down the locked general
        # path. ``_hot`` is an always-empty mapping when hits need that path anyway (LFU,
        # time-to-idle, a free-threaded interpreter), a view hiding expired entries with a ttl, else
        # the OrderedDict itself: no mode test on the way (measured: a test costs ~10%).
        try:
            value = self._hot[key]
            self._hot.move_to_end(key)
        except KeyError:
            if self._tiers is None and self._fast and key not in self._data:
                self._misses += 1
                return default
            value = self._find(key, False)[0]
            return default if value is _MISSING else value
        self._hits += 1
        return value

    def _find(self, key: Any, join: bool) -> Tuple[Any, Optional[_Load], bool]:
        """The general lookup: expiry, LFU counts, promotion from below. On a miss with *join*,
        registers or joins the key's load: (value, load, this caller loads)."""
        now = self._clock() if self._timed else 0.0
        notes: List[Note] = []
        load, owner = None, False
        self._lock.acquire()
        try:
            value = self._data.get(key, _MISSING)
            if value is not _MISSING:
                if self._timed and self._expired(key, now):
                    self._evict(key, "expired", notes)
                    value = _MISSING
                else:
                    self._touch(key, now)
            if value is _MISSING and self._tiers is not None:
                value, rec, below = self._tiers.take(key, now, self._ttl, self._tti)
                notes += below
                if value is not _MISSING:
                    self._store(key, value, rec[1], rec[2], now, notes)  # type: ignore[index]
            if value is not _MISSING:
                self._hits += 1
            else:
                self._misses += 1
                if join:
                    load = self._loading.get(key)
                    if load is None:
                        load = self._loading[key] = _Load()
                        owner = True
        finally:
            self._lock.release()
        self._notify(notes)
        return value, load, owner

    def get_or_load(self, key: Any, loader: Callable[[Any], Any]) -> Any:
        """The cached value, or ``loader(key)``'s. Concurrent misses on one key call the loader
        once; the others wait for it and get its value or its exception. Nothing is cached on
        an error."""
        return self._get_or_call(key, loader, (key,), None)

    def _get_or_call(self, key: Any, fn: Callable[..., Any], args: tuple,
                     kwargs: Optional[dict]) -> Any:
        try:  # the lock-free hit path of get()
            value = self._hot[key]
            self._hot.move_to_end(key)
            self._hits += 1
            return value
        except KeyError:
            pass
        value, load, owner = self._find(key, True)
        if load is None:
            return value
        if not owner:
            return load.result()
        t0 = _perf()
        try:
            value = fn(*args, **kwargs) if kwargs else fn(*args)
            weight = self._weigh(key, value)
        except BaseException as exc:
            with self._lock:
                self._loads += 1
                self._load_errors += 1
                self._load_window.add(_perf() - t0)
                if self._loading.get(key) is load:
                    del self._loading[key]
            load.finish(None, exc)
            raise
        elapsed = _perf() - t0
        now = self._clock() if self._timed else 0.0
        notes: List[Note] = []
        with self._lock:
            self._loads += 1
            self._load_window.add(elapsed)
            if self._loading.get(key) is load:
                del self._loading[key]
            if not load.stale:
                self._store(key, value, weight, now, now, notes)
        load.finish(value, None)
        self._notify(notes)
        return value

    def __contains__(self, key: Any) -> bool:
        """Whether *key* is cached (in any tier) and unexpired; no stats, no reordering."""
        now = self._clock() if self._timed else 0.0
        with self._lock:
            if key in self._data:
                return not (self._timed and self._expired(key, now))
            return self._tiers is not None and self._tiers.contains(key, now, self._ttl, self._tti)

    def __len__(self) -> int:
        return len(self._data) + (len(self._tiers) if self._tiers is not None else 0)

    # -- writing ----------------------------------------------------------------------------------
    def _weigh(self, key: Any, value: Any) -> int:
        if self._weigher is None:
            return _getsizeof(key) + _getsizeof(value)
        weight = self._weigher(key, value)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ValueError("weigher must return an int >= 0, got %r" % (weight,))
        return weight

    def set(self, key: Any, value: Any) -> None:
        weight = (_getsizeof(key) + _getsizeof(value) if self._weigher is None
                  else self._weigh(key, value))
        now = self._clock() if self._timed else 0.0
        notes: List[Note] = []
        self._lock.acquire()
        try:
            self._store(key, value, weight, now, now, notes)
        finally:
            self._lock.release()
        if notes:
            self._notify(notes)

    put = set

    def _store(self, key: Any, value: Any, weight: int, written: float, now: float,
               notes: List[Note]) -> None:
        """Under the lock: insert or replace, then evict down to the bounds."""
        data = self._data
        old = data.get(key, _MISSING)
        if self._loading:
            load = self._loading.get(key)
            if load is not None:
                load.stale = True
        mb = self._max_bytes
        if (mb is not None and weight > mb) or self._max_entries == 0:
            if old is not _MISSING:
                self._remove(key)
                self._count(key, old, "replaced", notes)
            elif self._tiers is not None:
                self._tiers.discard(key)
            self._count(key, value, "size", notes)
            return
        if old is _MISSING:
            if self._tiers is not None:
                self._tiers.discard(key)
            if self._lfu is not None:
                self._lfu.add(key)
        else:
            self._bytes -= self._weights[key]
            if old is not value:
                self._count(key, old, "replaced", notes)
            if self._lfu is not None:
                self._lfu.touch(key)
            self._move(key)
        data[key] = value
        self._weights[key] = weight
        self._bytes += weight
        if self._ttl is not None:
            self._written[key] = written
            self._written.move_to_end(key)
        if self._tti is not None:
            self._accessed[key] = now
        if (mb is not None and self._bytes > mb) or (self._max_entries is not None
                                                     and len(data) > self._max_entries):
            self._evict_over(notes, key, now)

    def _count(self, key: Any, value: Any, cause: str, notes: List[Note]) -> None:
        self._evictions[cause] += 1
        notes.append((key, value, cause))

    def _touch(self, key: Any, now: float) -> None:
        self._move(key)
        if self._tti is not None:
            self._accessed[key] = now
        if self._lfu is not None:
            self._lfu.touch(key)

    def _expired(self, key: Any, now: float) -> bool:
        return ((self._ttl is not None and now - self._written[key] >= self._ttl)
                or (self._tti is not None and now - self._accessed[key] >= self._tti))

    def _remove(self, key: Any) -> Tuple[Any, int, float, float]:
        value = self._data.pop(key)
        weight = self._weights.pop(key)
        self._bytes -= weight
        written = self._written.pop(key, 0.0) if self._ttl is not None else 0.0
        accessed = self._accessed.pop(key, 0.0) if self._tti is not None else 0.0
        if self._lfu is not None:
            self._lfu.remove(key)
        return value, weight, written, accessed

    def _evict(self, key: Any, cause: str, notes: List[Note]) -> None:
        value, weight, written, accessed = self._remove(key)
        self._evictions[cause] += 1
        if self._tiers is not None and cause in ("size", "pressure"):
            kept, below = self._tiers.demote(key, value, weight, written, accessed)
            notes += below
            if kept:
                return
        notes.append((key, value, cause))

    def _victim(self, exclude: Any) -> Any:
        return self._lfu.victim(exclude) if self._lfu is not None else self._oldest(exclude)

    def _oldest(self, exclude: Any = _MISSING) -> Any:
        """The least recently used key (other than *exclude*)."""
        while True:
            try:
                for key in self._data:
                    if exclude is _MISSING or not (key is exclude or key == exclude):
                        return key
                return _MISSING
            except RuntimeError:  # a lock-free hit reordered it under the iterator: look again
                continue

    def _purge_expired(self, now: float, notes: List[Note], limit: int = -1) -> None:
        """Evict expired entries from the heads of the write and recency orders."""
        if self._ttl is not None:
            written, ttl = self._written, self._ttl
            while written and limit != 0:
                key = next(iter(written))
                if now - written[key] < ttl:
                    break
                self._evict(key, "expired", notes)
                limit -= 1
        if self._tti is not None:
            accessed, tti = self._accessed, self._tti
            while self._data and limit != 0:
                key = self._oldest()
                if now - accessed[key] < tti:
                    break
                self._evict(key, "expired", notes)
                limit -= 1

    def _evict_over(self, notes: List[Note], exclude: Any, now: float) -> None:
        if self._timed:
            self._purge_expired(now, notes)
        me, mb = self._max_entries, self._max_bytes
        while (me is not None and len(self._data) > me) or (mb is not None and self._bytes > mb):
            victim = self._victim(exclude)
            if victim is _MISSING:
                break
            self._evict(victim, "size", notes)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove *key* from every tier (cause "explicit") and return its value."""
        now = self._clock() if self._timed else 0.0
        notes: List[Note] = []
        with self._lock:
            if self._loading and key in self._loading:
                self._loading[key].stale = True
            value = _MISSING
            if key in self._data:
                if self._timed and self._expired(key, now):
                    self._evict(key, "expired", notes)
                else:
                    value = self._remove(key)[0]
                    self._count(key, value, "explicit", notes)
            elif self._tiers is not None:
                if self._tiers.contains(key, now, self._ttl, self._tti):
                    value = self._tiers.discard(key, "explicit")[1]
                    notes.append((key, value, "explicit"))
                else:  # drops an expired one below, if any
                    notes += self._tiers.take(key, now, self._ttl, self._tti)[2]
        self._notify(notes)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return value

    def delete(self, key: Any) -> bool:
        """Remove *key* (cause "explicit"); whether it was there."""
        return self.pop(key, _MISSING_DELETE) is not _MISSING_DELETE

    def clear(self) -> None:
        """Remove everything from every tier (cause "explicit")."""
        notes: List[Note] = []
        with self._lock:
            for load in self._loading.values():
                load.stale = True
            for key, value in list(self._data.items()):
                notes.append((key, value, "explicit"))
            self._evictions["explicit"] += len(self._data)
            self._data.clear()
            self._weights.clear()
            self._written.clear()
            self._accessed.clear()
            self._bytes = 0
            if self._lfu is not None:
                self._lfu = _FrequencyList()
            if self._tiers is not None:
                notes += self._tiers.clear()
        self._notify(notes)

    def expire(self) -> int:
        """Evict every expired entry now (they are otherwise dropped as they are met); how many."""
        notes: List[Note] = []
        now = self._clock()
        with self._lock:
            before = self._evictions["expired"]
            if self._timed:
                self._purge_expired(now, notes)
            n = self._evictions["expired"] - before
        self._notify(notes)
        return n

    def shrink(self, fraction: float) -> int:
        """Memory pressure: evict about *fraction* of the hot tier's bytes (cause "pressure", to
        the warm tier when there is one) and push that fraction of warm down to cold. Returns the
        in-memory bytes freed."""
        fraction = min(1.0, max(0.0, float(fraction)))
        notes: List[Note] = []
        with self._lock:
            tiers = self._tiers
            before = self._bytes + (tiers.memory_bytes() if tiers is not None else 0)
            target = self._bytes * (1.0 - fraction)
            while self._data and fraction > 0 and self._bytes > target:
                victim = self._victim(_MISSING)
                if victim is _MISSING:
                    break
                self._evict(victim, "pressure", notes)
            if tiers is not None and fraction > 0:
                notes += tiers.shrink(fraction)
            after = self._bytes + (tiers.memory_bytes() if tiers is not None else 0)
        self._notify(notes)
        return max(0, before - after)

    def _notify(self, notes: List[Note]) -> None:
        listener = self._on_evict
        if listener is None or not notes:
            return
        for key, value, cause in notes:
            try:
                listener(key, value, cause)
            except Exception:  # the eviction happened; a broken listener must not break the app
                self._listener_errors += 1

    # -- reporting and lifecycle ------------------------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        """The SHAPES["cache"] figures. ``evictions`` counts what left the hot tier, by cause
        (entries demoted to a lower tier included); ``tiers`` has each lower tier's own."""
        notes: List[Note] = []
        if self._timed:  # a bounded sweep, so an idle cache's expired bytes still go away
            now = self._clock()
            with self._lock:
                self._purge_expired(now, notes, limit=64)
            self._notify(notes)
        with self._lock:
            hits, misses, window = self._hits, self._misses, self._load_window
            out = {"policy": self.policy, "entries": len(self._data), "bytes": self._bytes,
                   "max_entries": self._max_entries, "max_bytes": self._max_bytes,
                   "ttl_s": self._ttl, "tti_s": self._tti, "hits": hits, "misses": misses,
                   "loads": self._loads, "load_errors": self._load_errors,
                   "loading": len(self._loading), "load_time_ms": window.mean_ms(),
                   "load_p95_ms": window.percentile_ms(95), "evictions": dict(self._evictions),
                   "listener_errors": self._listener_errors,
                   "tiers": self._tiers.stats() if self._tiers is not None else None}
        out["hit_rate"] = hit_rate(hits, misses)
        return out

    def close(self) -> None:
        """Close the lower tiers (the cold file is removed unless persist=True); the hot tier
        keeps working without them."""
        with self._lock:
            tiers, self._tiers = self._tiers, None
        if tiers is not None:
            tiers.close()

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<Cache %r %s entries=%d bytes=%d>" % (self.name, self.policy, len(self._data),
                                                      self._bytes)


_MISSING_DELETE = object()
_KWARGS = object()  # separates positional from keyword arguments in a memo key
_FAST_KEY_TYPES = {int, str}


def cached(name: Any = None, **cache_kwargs: Any) -> Any:
    """Memoize a function in a :class:`Cache` keyed by its (hashable) arguments. Concurrent
    identical calls compute once. ``@cached``, ``@cached("name", max_bytes="64MiB")``; the
    wrapper has ``.cache`` and ``cache_clear()``."""
    if callable(name):
        return cached()(name)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        cache = Cache(name=name or getattr(fn, "__qualname__", None), **cache_kwargs)
        get_or_call = cache._get_or_call

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if kwargs:
                key: Any = args + (_KWARGS,) + tuple(kwargs.items())
            elif len(args) == 1 and type(args[0]) in _FAST_KEY_TYPES:
                key = args[0]
            else:
                key = args
            return get_or_call(key, fn, args, kwargs)

        functools.update_wrapper(wrapper, fn)
        wrapper.cache = cache  # type: ignore[attr-defined]
        wrapper.cache_clear = cache.clear  # type: ignore[attr-defined]
        return wrapper

    return decorate
