"""The hot tier's store under a Cache: its entries in recency, write and (LFU) frequency order,
their weights and times, and the expiry and eviction that keep them in bounds.

Every ``_HotStore`` method runs under the owning Cache's lock (or in its ``__init__``), except
``_demote``, which takes it.
"""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from ._missing import MISSING as _MISSING
from ._stats import EVICTION_CAUSES

if TYPE_CHECKING:  # tiers.py (pickle, zlib, sqlite3) is imported only by a Cache with tiers=
    from .tiers import Tiers

Note = Tuple[Any, Any, str]
# The cause in a Note whose "value" is a pending demotion [value, weight, written, accessed, cause]:
# the Cache encodes it outside its lock and then stores it below (see Cache._demote).
DEMOTE = "demote"
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

    __slots__ = ("_lock", "value", "error", "stale", "owner")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.owner = threading.get_ident()  # the loading thread: waiting on itself would hang
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


class _HotStore:
    """The entries and the bookkeeping that orders, expires and evicts them; :class:`Cache` adds
    the lock, the lock-free hit path, loads, listeners and stats on top."""

    # Slots keep every attribute load on the hit path a fixed-offset read (measured: with an
    # instance dict this many attributes fall off CPython's fast path, ~15% slower hits).
    __slots__ = ("policy", "_data", "_move", "_hot", "_fast", "_timed", "_weights", "_written",
                 "_accessed", "_lfu", "_loading", "_bytes", "_evictions", "_clock", "_max_entries",
                 "_max_bytes", "_ttl", "_tti", "_tiers", "_demoting")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._data: "OrderedDict[Any, Any]" = OrderedDict()  # recency order, oldest first
        self._move = self._data.move_to_end
        self._weights: Dict[Any, int] = {}
        self._written: "OrderedDict[Any, float]" = OrderedDict()  # ttl only, write order
        self._accessed: Dict[Any, float] = {}  # tti only
        self._lfu: Optional[_FrequencyList] = None
        self._loading: Dict[Any, _Load] = {}
        self._bytes = 0
        self._evictions = dict.fromkeys(EVICTION_CAUSES, 0)
        self._clock = clock
        self.policy = "lru"
        self._max_entries = self._max_bytes = self._ttl = self._tti = None
        self._timed, self._fast = False, _FAST_LRU
        self._tiers: Optional[Tiers] = None
        # Evicted for size or pressure, waiting to be pickled (outside the lock) and stored below:
        # key -> [value, weight, written, accessed, cause]. Still found by lookups meanwhile.
        self._demoting: Dict[Any, list] = {}

    def _apply(self, new: Dict[str, Any], now: float) -> None:
        """Under the lock (or in __init__). Existing entries count as written/used *now* when a
        ttl/tti is first switched on, in every tier."""
        self._hot, self._fast = _NEVER, _SLOW  # lock-free readers stay off while this runs
        ttl_on = new["ttl"] is not None and self._ttl is None
        tti_on = new["tti"] is not None and self._tti is None
        if ttl_on or tti_on:
            for rec in self._demoting.values():
                rec[2] = now if ttl_on else rec[2]
                rec[3] = now if tti_on else rec[3]
            if self._tiers is not None:
                self._tiers.restamp(now, ttl_on, tti_on)
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

    def _store(self, key: Any, value: Any, weight: int, written: float, now: float,
               notes: List[Note]) -> None:
        """Under the lock: insert or replace, then evict down to the bounds."""
        data = self._data
        old = data.get(key, _MISSING)
        if self._demoting:  # a write wins over a copy on its way down
            self._demoting.pop(key, None)
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

    def _pending_expired(self, rec: list, now: float) -> bool:
        return ((self._ttl is not None and now - rec[2] >= self._ttl)
                or (self._tti is not None and now - rec[3] >= self._tti))

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
            rec = [value, weight, written, accessed, cause]
            self._demoting[key] = rec
            notes.append((key, rec, DEMOTE))
            return
        notes.append((key, value, cause))

    def _unpend(self, key: Any, now: float, notes: List[Note]) -> Any:
        """A lookup of *key* while it waits to be demoted: back into the hot tier (the demotion
        is then dropped), or MISSING."""
        rec = self._demoting.pop(key, None)
        if rec is None:
            return _MISSING
        if self._timed and self._pending_expired(rec, now):
            notes.append((key, rec[0], "expired"))
            return _MISSING
        self._store(key, rec[0], rec[1], rec[2], now, notes)
        return rec[0]

    def _drop_all(self, notes: List[Note]) -> None:
        for load in self._loading.values():
            load.stale = True
        for key, value in list(self._data.items()):
            notes.append((key, value, "explicit"))
        for key, rec in self._demoting.items():
            notes.append((key, rec[0], "explicit"))
        self._demoting.clear()
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

    def _demote(self, key: Any, rec: list) -> None:
        """NOT under the lock (the one method here that takes it; the Cache supplies ``_lock`` and
        ``_notify``): pickle an entry the hot tier let go, so its ``__reduce__`` may use this cache,
        then store it below unless it was read back, rewritten or removed meanwhile."""
        tiers = self._tiers
        blob = key_blob = None
        if tiers is not None and self._demoting.get(key) is rec:
            blob, key_blob = tiers.encode(key, rec[0])
        notes: List[Note] = []
        with self._lock:
            if self._demoting.get(key) is not rec:
                return
            del self._demoting[key]
            kept = False
            if blob is not None and self._tiers is not None:
                kept, below = self._tiers.demote(key, blob, key_blob, rec[1], rec[2], rec[3])
                notes += below
            if not kept:
                notes.append((key, rec[0], rec[4]))
        self._notify(notes)
