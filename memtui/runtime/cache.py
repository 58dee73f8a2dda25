"""A thread-safe, memory-bounded cache (LRU, LFU or TTL, with time-to-idle) that reports itself to
the agent, and the ``@cached`` decorator built on it. Lower tiers live in ``tiers.py``.
"""
from __future__ import annotations

import functools
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ._cache_store import DEMOTE, Note, _HotStore, _Load
from ._missing import MISSING as _MISSING
from ._settings import CACHE_SETTINGS as SETTINGS
from ._settings import Tunable, check_cache_settings
from ._stats import LatencyWindow, hit_rate
_getsizeof = sys.getsizeof
_perf = time.perf_counter


class Cache(_HotStore, Tunable):
    """A bounded cache. ``len()`` and ``in`` cover every tier; ``stats()["entries"]`` the hot one.

    Callbacks (weigher, on_evict, loaders) and the pickling of values on their way to a lower
    tier run outside the lock, so they may use the cache. Unpickling (promotion from below, a
    listener's value from below) runs under it: a value must unpickle without using its cache.
    """

    kind = "cache"
    # The entries and their order are _HotStore's slots (its note says why slots); these the rest.
    __slots__ = ("name", "_lock", "_hits", "_misses", "_loads", "_load_errors", "_listener_errors",
                 "_load_window", "_weigher", "_on_evict", "__weakref__")

    def __init__(self, name: Optional[str] = None, policy: str = "lru", max_entries: Any = None,
                 max_bytes: Any = None, ttl: Any = None, tti: Any = None,
                 weigher: Optional[Callable[[Any, Any], int]] = None,
                 on_evict: Optional[Callable[[Any, Any, str], None]] = None,
                 tiers: Optional[Mapping[str, Any]] = None,
                 clock: Callable[[], float] = time.monotonic, register: bool = True) -> None:
        self.name = str(name or "cache")
        self._lock = threading.Lock()
        super().__init__(clock)
        self._hits = self._misses = self._loads = self._load_errors = self._listener_errors = 0
        self._load_window = LatencyWindow()
        self._weigher = weigher
        self._on_evict = on_evict
        self._apply(self._checked(dict(policy=policy, max_entries=max_entries,
                                        max_bytes=max_bytes, ttl=ttl, tti=tti)), 0.0)
        if register:
            from ..agent.lifecycle import register as register_component
            self.name = register_component(self, name=self.name, kind="cache")
        if tiers:  # after registration: a cold file is named after the unique registered name
            from .tiers import Tiers
            try:
                below = Tiers(dict(tiers), self.name, timed=self._timed)
            except BaseException:
                if register:
                    from ..agent.lifecycle import unregister
                    unregister(self)
                raise
            below.want_values = on_evict is not None
            with self._lock:
                self._tiers = below

    # -- settings ---------------------------------------------------------------------------------
    def _current_settings(self) -> Dict[str, Any]:
        return {"policy": self.policy, "max_entries": self._max_entries,
                "max_bytes": self._max_bytes, "ttl": self._ttl, "tti": self._tti}

    def _checked(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        return check_cache_settings(self._current_settings(), values)

    def configure(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """Live retune (keys from SETTINGS). Shrinks at once when over a new bound; returns
        ``{setting: new value}`` for what changed. Nothing changes when any value is invalid.
        ``settings()`` reads them back, ``preview(values)`` checks without changing."""
        old = self._current_settings()
        new = self._checked(values)
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
        load, owner, recursive = None, False, False
        self._lock.acquire()
        try:
            value = self._data.get(key, _MISSING)
            if value is not _MISSING:
                if self._timed and self._expired(key, now):
                    self._evict(key, "expired", notes)
                    value = _MISSING
                else:
                    self._touch(key, now)
            if value is _MISSING and self._demoting:  # on its way down: back to the hot tier
                value = self._unpend(key, now, notes)
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
                    elif load.owner == threading.get_ident():
                        recursive = True
        finally:
            self._lock.release()
        self._notify(notes)
        if recursive:
            raise RuntimeError("recursive load of key %r in cache %s" % (key, self.name))
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
            rec = self._demoting.get(key)
            if rec is not None:
                return not (self._timed and self._pending_expired(rec, now))
            return self._tiers is not None and self._tiers.contains(key, now, self._ttl, self._tti)

    def __len__(self) -> int:
        tiers = self._tiers
        return len(self._data) + len(self._demoting) + (len(tiers) if tiers is not None else 0)

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
            elif key in self._demoting:
                value = self._demoting.pop(key)[0]
                notes.append((key, value, "explicit"))
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
            self._drop_all(notes)
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
        self._notify(notes)  # the demotions land in the warm tier here
        notes = []
        with self._lock:
            if tiers is not None and fraction > 0 and self._tiers is tiers:
                notes += tiers.shrink(fraction)
            after = self._bytes + (tiers.memory_bytes() if tiers is not None else 0)
        self._notify(notes)
        return max(0, before - after)

    def _notify(self, notes: List[Note]) -> None:
        """Outside the lock: finish demotions, then tell the listener."""
        listener = self._on_evict
        if not notes or (listener is None and not self._demoting):
            return
        for key, value, cause in notes:
            if cause is DEMOTE:
                self._demote(key, value)
            elif listener is not None:
                try:
                    listener(key, value, cause)
                except Exception:  # the eviction happened; a broken listener must not break it
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

Cache.SETTINGS = SETTINGS  # the keys configure() takes; the agent passes profiles only these
