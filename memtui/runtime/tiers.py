"""Lower cache tiers: what the hot tier lets go for size or pressure drops to a warm tier (pickled,
zlib-compressed bytes in memory), then to a cold tier (stdlib sqlite3 under a directory).

Every method here runs under the owning Cache's lock (except ``encode``, which pickles outside
it so a value's ``__reduce__`` may use the cache); the tiers have no lock of their own.
A key lives in exactly one tier at a time: a hit below promotes it (removing it below), a write
to the hot tier discards it below.

pickle is fine HERE: the tiers hold the application's own values, written and read back by the
same process (with ``persist=True``, by later runs of the same app from its own 0600 file).
Nothing stored here ever comes from a socket or from another user.

This module (pickle, zlib) is imported only by a Cache given tiers=; sqlite3 only with a cold
tier. Fork and file locking: see ``_cold_tier.py``. In a forked child the warm tier (plain memory)
keeps its copy; the cold tier starts empty, in a child-private file.
"""
from __future__ import annotations

import os
import pickle
import zlib
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from ..agent.options import parse_size
from ._cold_tier import ColdTier, _TierCounters
from ._missing import MISSING

Note = Tuple[Any, Any, str]
# [blob, weight, written, accessed, key_blob]: weight is the hot-tier weight, kept so promotion
# never has to call the user's weigher under the cache lock; key_blob (the pickled key, made
# outside the lock; None when there is no cold tier or the key does not pickle) is what the cold
# tier stores.
Record = list
_getpid = os.getpid
_WARM_KEYS = {"max_bytes", "compression"}
_COLD_KEYS = {"path", "max_bytes", "compression", "persist"}


def _size(value: Any, default: Optional[int]) -> Optional[int]:
    return default if value is None else parse_size(value)


class WarmTier(_TierCounters):
    """Compressed values in memory, least recently used first."""

    def __init__(self, max_bytes: Optional[int], compression: int) -> None:
        super().__init__(max_bytes)
        self.level = compression
        self.entries: "OrderedDict[Any, Record]" = OrderedDict()

    def put(self, key: Any, rec: Record) -> None:
        self.pop(key)
        self.entries[key] = rec
        self.bytes += len(rec[0])
        self.demotions += 1

    def pop(self, key: Any) -> Optional[Record]:
        rec = self.entries.pop(key, None)
        if rec is not None:
            self.bytes -= len(rec[0])
        return rec

    def oldest(self) -> Tuple[Any, Record]:
        key = next(iter(self.entries))
        return key, self.pop(key)  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.entries)


class Tiers:
    """The warm and cold tiers below one Cache, built from ``{"warm": {...}, "cold": {...}}``."""

    def __init__(self, spec: Dict[str, Any], name: str, timed: bool = False) -> None:
        unknown = set(spec) - {"warm", "cold"}
        if unknown:
            raise ValueError("unknown cache tiers %s (use 'warm' and/or 'cold')" % sorted(unknown))
        self.want_values = False  # set by the Cache when an eviction listener needs the values
        self.pid = _getpid()
        self.warm: Optional[WarmTier] = None
        self.cold: Optional[ColdTier] = None
        warm, cold = spec.get("warm"), spec.get("cold")
        if warm is not None:
            bad = set(warm) - _WARM_KEYS
            if bad:
                raise ValueError("unknown warm tier settings %s" % sorted(bad))
            level = int(warm.get("compression", 6))
            if not 1 <= level <= 9:
                raise ValueError("warm tier compression must be 1-9, got %r" % level)
            self.warm = WarmTier(_size(warm.get("max_bytes"), 16 * 1024 ** 2), level)
        if cold is not None:
            bad = set(cold) - _COLD_KEYS
            if bad or not cold.get("path"):
                raise ValueError("the cold tier needs a 'path' directory; unknown settings %s"
                                 % sorted(bad))
            self._cold_args = (os.fspath(cold["path"]), name,
                               _size(cold.get("max_bytes"), 256 * 1024 ** 2),
                               int(cold.get("compression", 6)))
            self.cold = ColdTier(*self._cold_args, bool(cold.get("persist")), timed)

    def _forked(self) -> None:
        """First use in a forked child: detach from the parent's cold file, open a private one."""
        self.pid = _getpid()
        if self.cold is not None:
            self.cold.detach()
            try:
                self.cold = ColdTier(*self._cold_args, False, False)
            except Exception:
                self.cold = None

    # -- moving entries ---------------------------------------------------------------------------
    def encode(self, key: Any, value: Any) -> Tuple[Optional[bytes], Optional[bytes]]:
        """Outside the cache lock: (compressed pickled value, pickled key for the cold tier);
        (None, None) when the value does not pickle."""
        warm, cold = self.warm, self.cold
        try:
            blob = zlib.compress(pickle.dumps(value, pickle.HIGHEST_PROTOCOL),
                                 warm.level if warm is not None else cold.level)  # type: ignore
        except Exception:
            return None, None
        key_blob = None
        if cold is not None:
            try:
                key_blob = pickle.dumps(key, pickle.HIGHEST_PROTOCOL)
            except Exception:
                pass
        return blob, key_blob

    def demote(self, key: Any, blob: bytes, key_blob: Optional[bytes], weight: int,
               written: Any, accessed: Any) -> Tuple[bool, List[Note]]:
        """Store an entry the hot tier evicted (encoded by ``encode``). False when it cannot be
        kept."""
        if self.pid != _getpid():
            self._forked()
        rec = [blob, weight, written, accessed, key_blob]
        notes: List[Note] = []
        warm = self.warm
        if warm is not None and (warm.max_bytes is None or len(blob) <= warm.max_bytes):
            warm.put(key, rec)
            while warm.max_bytes is not None and warm.bytes > warm.max_bytes:
                old_key, old = warm.oldest()
                warm.count_eviction("size")
                if not self._to_cold(old_key, old):
                    self._note(notes, old_key, old[0], "size")
            self._trim_cold(notes)
            return True, notes
        if not self._to_cold(key, rec):
            return False, notes
        self._trim_cold(notes)
        return True, notes

    def _to_cold(self, key: Any, rec: Record) -> bool:
        cold = self.cold
        if cold is None or (cold.max_bytes is not None and len(rec[0]) > cold.max_bytes):
            return False
        return cold.put(key, rec)

    def _trim_cold(self, notes: List[Note]) -> None:
        cold = self.cold
        if cold is None:
            return
        while cold.index and cold.max_bytes is not None and cold.bytes > cold.max_bytes:
            key, rec = cold.oldest(self.want_values)
            cold.count_eviction("size")
            self._note(notes, key, rec[0], "size")

    def _note(self, notes: List[Note], key: Any, blob: bytes, cause: str) -> None:
        if self.want_values:
            notes.append((key, _decode(blob), cause))

    def take(self, key: Any, now: float, ttl: Optional[float], tti: Optional[float]) -> \
            Tuple[Any, Optional[Record], List[Note]]:
        """Remove *key* from below for promotion: (value, record, notes); value is MISSING when the
        key is absent, expired (never served from below) or unreadable."""
        if self.pid != _getpid():
            self._forked()
        notes: List[Note] = []
        for tier in (self.warm, self.cold):
            if tier is None:
                continue
            rec = tier.pop(key)
            if rec is None:
                continue
            if _expired(rec, now, ttl, tti):
                tier.count_eviction("expired")
                self._note(notes, key, rec[0], "expired")
                return MISSING, None, notes
            value = _decode(rec[0])
            if value is MISSING:
                tier.count_eviction("size")
                return MISSING, None, notes
            tier.hits += 1
            tier.promotions += 1
            return value, rec, notes
        return MISSING, None, notes

    def contains(self, key: Any, now: float, ttl: Optional[float], tti: Optional[float]) -> bool:
        if self.pid != _getpid():
            self._forked()
        if self.warm is not None:
            rec = self.warm.entries.get(key)
            if rec is not None:
                return not _expired(rec, now, ttl, tti)
        if self.cold is not None:
            meta = self.cold.index.get(key)
            if meta is not None:
                return not _expired([None, 0, meta[2], meta[3]], now, ttl, tti)
        return False

    def discard(self, key: Any, cause: Optional[str] = None) -> Tuple[bool, Any]:
        """Drop *key* below; (found, value). The value is decoded only for a listener."""
        if self.pid != _getpid():
            self._forked()
        for tier in (self.warm, self.cold):
            if tier is None:
                continue
            if tier is self.warm:
                rec = tier.pop(key)
            else:
                rec = tier.pop(key, read=self.want_values or cause == "explicit")  # type: ignore
            if rec is not None:
                if cause:
                    tier.count_eviction(cause)
                return True, (_decode(rec[0]) if cause and rec[0] else MISSING)
        return False, MISSING

    def shrink(self, fraction: float) -> List[Note]:
        """Push about *fraction* of the warm tier's bytes down to cold (cause "pressure")."""
        if self.pid != _getpid():
            self._forked()
        notes: List[Note] = []
        warm = self.warm
        if warm is not None and warm.entries:
            target = warm.bytes * (1.0 - fraction)
            while warm.entries and warm.bytes > target:
                key, rec = warm.oldest()
                warm.count_eviction("pressure")
                if not self._to_cold(key, rec):
                    self._note(notes, key, rec[0], "pressure")
            self._trim_cold(notes)
        return notes

    def clear(self) -> List[Note]:
        if self.pid != _getpid():
            self._forked()
        notes: List[Note] = []
        if self.warm is not None:
            for key, rec in list(self.warm.entries.items()):
                self._note(notes, key, rec[0], "explicit")
            self.warm.count_eviction("explicit", len(self.warm))
            self.warm.entries.clear()
            self.warm.bytes = 0
        if self.cold is not None:
            if self.want_values:
                for key in list(self.cold.index):
                    self._note(notes, key, self.cold.pop(key)[0], "explicit")  # type: ignore
            self.cold.count_eviction("explicit", len(self.cold))
            self.cold.clear()
        return notes

    def restamp(self, now: float, written: bool, accessed: bool) -> None:
        """A ttl (*written*) or tti (*accessed*) was just switched on: every entry below counts as
        written / used *now*."""
        if self.pid != _getpid():
            self._forked()
        for col in (2,) * written + (3,) * accessed:
            if self.warm is not None:
                for rec in self.warm.entries.values():
                    rec[col] = now
            if self.cold is not None:
                self.cold.restamp(now, col)

    # -- reporting --------------------------------------------------------------------------------
    def __len__(self) -> int:
        cold = len(self.cold) if self.cold is not None and self.pid == _getpid() else 0
        return (len(self.warm) if self.warm else 0) + cold

    def memory_bytes(self) -> int:
        return self.warm.bytes if self.warm is not None else 0

    def stats(self) -> Dict[str, Any]:
        if self.pid != _getpid():
            self._forked()
        out: Dict[str, Any] = {}
        if self.warm is not None:
            out["warm"] = dict(self.warm.stats(len(self.warm)), compression=self.warm.level)
        if self.cold is not None:
            out["cold"] = dict(self.cold.stats(len(self.cold)), path=self.cold.path)
        return out

    def close(self) -> None:
        if self.cold is not None:
            if self.pid != _getpid():
                self.cold.detach()
            else:
                self.cold.close()


def _expired(rec: Record, now: float, ttl: Optional[float], tti: Optional[float]) -> bool:
    return ((ttl is not None and rec[2] is not None and now - rec[2] >= ttl)
            or (tti is not None and rec[3] is not None and now - rec[3] >= tti))


def _decode(blob: bytes) -> Any:
    try:
        return pickle.loads(zlib.decompress(blob))
    except Exception:
        return MISSING
