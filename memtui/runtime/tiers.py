"""Lower cache tiers: what the hot tier lets go for size or pressure drops to a warm tier (pickled,
zlib-compressed bytes in memory), then to a cold tier (stdlib sqlite3 under a directory).

Every method here runs under the owning Cache's lock; the tiers have no lock of their own.
A key lives in exactly one tier at a time: a hit below promotes it (removing it below), a write
to the hot tier discards it below.

pickle is fine HERE: the tiers hold the application's own values, written and read back by the
same process (with ``persist=True``, by later runs of the same app from its own 0600 file).
Nothing stored here ever comes from a socket or from another user.
"""
from __future__ import annotations

import itertools
import os
import pickle
import re
import sqlite3
import weakref
import zlib
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from ..agent.options import parse_size

MISSING = object()
Note = Tuple[Any, Any, str]
# [blob, weight, written, accessed]: weight is the hot-tier weight, kept so promotion never has to
# call the user's weigher under the cache lock.
Record = list

_SERIAL = itertools.count(1)
_WARM_KEYS = {"max_bytes", "compression"}
_COLD_KEYS = {"path", "max_bytes", "compression", "persist"}


def _size(value: Any, default: Optional[int]) -> Optional[int]:
    return default if value is None else parse_size(value)


class _TierCounters:
    def __init__(self, max_bytes: Optional[int]) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.promotions = self.demotions = 0
        self.evictions: Dict[str, int] = {}

    def count_eviction(self, cause: str, n: int = 1) -> None:
        self.evictions[cause] = self.evictions.get(cause, 0) + n

    def stats(self, entries: int) -> Dict[str, Any]:
        return {"entries": entries, "bytes": self.bytes, "max_bytes": self.max_bytes,
                "hits": self.hits, "promotions": self.promotions, "demotions": self.demotions,
                "evictions": sum(self.evictions.values()),
                "evictions_by_cause": dict(self.evictions)}


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


def _close_db(conn: sqlite3.Connection, path: str, persist: bool) -> None:
    try:
        conn.close()
    except Exception:
        pass
    if not persist:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(path + suffix)
            except OSError:
                pass


class ColdTier(_TierCounters):
    """Compressed values in one sqlite3 table; the key index (key -> rowid, size, times) stays in
    memory, least recently used first, so a miss never costs a query."""

    def __init__(self, directory: str, name: str, max_bytes: Optional[int], compression: int,
                 persist: bool, timed: bool) -> None:
        super().__init__(max_bytes)
        self.level = compression
        self.persist = persist
        # key -> [rowid, size, written, accessed], least recently used first
        self.index: "OrderedDict[Any, list]" = OrderedDict()
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:64] or "cache"
        if persist:
            self.path = os.path.join(directory, "%s.sqlite3" % safe)
            flags = os.O_RDWR | os.O_CREAT
        else:
            self.path = os.path.join(directory, "%s-%d-%d.sqlite3"
                                     % (safe, os.getpid(), next(_SERIAL)))
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        fd = os.open(self.path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.fchmod(fd, 0o600)  # a persisted file from an older run gets its mode back too
        finally:
            os.close(fd)
        # Autocommit: each statement is its own short transaction; WAL lets them be cheap.
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._finalizer = weakref.finalize(self, _close_db, self.db, self.path, persist)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=%s" % ("NORMAL" if persist else "OFF"))
        self.db.execute("CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY,"
                        " key_hash INTEGER NOT NULL, key_blob BLOB NOT NULL,"
                        " value_blob BLOB NOT NULL, size INTEGER NOT NULL,"
                        " weight INTEGER NOT NULL, written REAL, last_access REAL)")
        self.db.execute("CREATE INDEX IF NOT EXISTS entries_key_hash ON entries (key_hash)")
        if timed:  # times in an old file come from another run's clock: ages cannot be trusted
            self.db.execute("DELETE FROM entries")
        self._reload()

    def _reload(self) -> None:
        rows = self.db.execute("SELECT id, key_blob, size, written, last_access FROM entries"
                               " ORDER BY last_access").fetchall()
        for rowid, key_blob, size, written, accessed in rows:
            try:
                key = pickle.loads(key_blob)
                old = self.index.pop(key, None)
                if old is not None:
                    self._delete(old)
                self.index[key] = [rowid, size, written, accessed]
                self.bytes += size
            except Exception:
                self.db.execute("DELETE FROM entries WHERE id = ?", (rowid,))

    def put(self, key: Any, rec: Record) -> bool:
        try:
            key_blob = pickle.dumps(key, pickle.HIGHEST_PROTOCOL)
        except Exception:
            return False
        blob, weight, written, accessed = rec
        old = self.index.pop(key, None)
        if old is not None:
            self._delete(old)
        cur = self.db.execute("INSERT INTO entries (key_hash, key_blob, value_blob, size, weight,"
                              " written, last_access) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (hash(key), key_blob, blob, len(blob), weight, written, accessed))
        self.index[key] = [cur.lastrowid, len(blob), written, accessed]
        self.bytes += len(blob)
        self.demotions += 1
        return True

    def _delete(self, meta: list) -> None:
        self.db.execute("DELETE FROM entries WHERE id = ?", (meta[0],))
        self.bytes -= meta[1]

    def pop(self, key: Any, read: bool = True) -> Optional[Record]:
        meta = self.index.pop(key, None)
        if meta is None:
            return None
        blob = b""
        if read:
            row = self.db.execute("SELECT value_blob, weight FROM entries WHERE id = ?",
                                  (meta[0],)).fetchone()
            blob, weight = (row[0], row[1]) if row else (b"", 0)
        else:
            weight = 0
        self._delete(meta)
        return [blob, weight, meta[2], meta[3]]

    def oldest(self, read: bool) -> Tuple[Any, Record]:
        key = next(iter(self.index))
        return key, self.pop(key, read)  # type: ignore[return-value]

    def clear(self) -> None:
        self.db.execute("DELETE FROM entries")
        self.index.clear()
        self.bytes = 0

    def close(self) -> None:
        self._finalizer()

    def __len__(self) -> int:
        return len(self.index)


class Tiers:
    """The warm and cold tiers below one Cache, built from ``{"warm": {...}, "cold": {...}}``."""

    def __init__(self, spec: Dict[str, Any], name: str, timed: bool = False) -> None:
        unknown = set(spec) - {"warm", "cold"}
        if unknown:
            raise ValueError("unknown cache tiers %s (use 'warm' and/or 'cold')" % sorted(unknown))
        self.want_values = False  # set by the Cache when an eviction listener needs the values
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
            self.cold = ColdTier(os.fspath(cold["path"]), name,
                                 _size(cold.get("max_bytes"), 256 * 1024 ** 2),
                                 int(cold.get("compression", 6)), bool(cold.get("persist")), timed)

    # -- moving entries ---------------------------------------------------------------------------
    def demote(self, key: Any, value: Any, weight: int, written: float, accessed: float) -> \
            Tuple[bool, List[Note]]:
        """Store an entry the hot tier evicted. False when it cannot be kept (not picklable)."""
        level = self.warm.level if self.warm is not None else self.cold.level  # type: ignore
        try:
            blob = zlib.compress(pickle.dumps(value, pickle.HIGHEST_PROTOCOL), level)
        except Exception:
            return False, []
        rec = [blob, weight, written, accessed]
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

    # -- reporting --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return (len(self.warm) if self.warm else 0) + (len(self.cold) if self.cold else 0)

    def memory_bytes(self) -> int:
        return self.warm.bytes if self.warm is not None else 0

    def stats(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.warm is not None:
            out["warm"] = dict(self.warm.stats(len(self.warm)), compression=self.warm.level)
        if self.cold is not None:
            out["cold"] = dict(self.cold.stats(len(self.cold)), path=self.cold.path)
        return out

    def close(self) -> None:
        if self.cold is not None:
            self.cold.close()


def _expired(rec: Record, now: float, ttl: Optional[float], tti: Optional[float]) -> bool:
    return ((ttl is not None and rec[2] is not None and now - rec[2] >= ttl)
            or (tti is not None and rec[3] is not None and now - rec[3] >= tti))


def _decode(blob: bytes) -> Any:
    try:
        return pickle.loads(zlib.decompress(blob))
    except Exception:
        return MISSING
