"""The cold cache tier: compressed values in one stdlib sqlite3 file under a directory, the key
index in memory. Runs under the owning Cache's lock, like the rest of ``tiers.py``.

Fork: the files belong to the process that opened them. A forked child never closes, unlinks or
writes them (the finalizer is a no-op in another pid; ``detach`` drops them unclosed); ``Tiers``
gives the child a private file of its own on first use.

A persisted file is locked (flock on "<file>.lock"): a second opener, in this process or another,
gets a ValueError instead of sharing it.
"""
from __future__ import annotations

import itertools
import os
import pickle
import re
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

_getpid = os.getpid
_SERIAL = itertools.count(1)
# A forked child's inherited connections to its parent's cold files: kept, never closed.
_INHERITED: List[Any] = []
Record = list


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


def _lock_file(path: str, db_path: str) -> Optional[int]:
    """An exclusive flock on *path* (a sidecar of *db_path*), or ValueError when it is held."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): persisted files are not guarded
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ValueError("cold tier file %s is in use by another cache" % db_path) from None
    return fd


def _unlock_file(fd: Optional[int]) -> None:
    if fd is None:
        return
    try:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child may still hold a copy of fd
    except OSError:
        pass
    os.close(fd)


def _close_db(conn: Any, path: str, persist: bool, lock_fd: Optional[int], pid: int) -> None:
    if _getpid() != pid:  # a forked child's exit: the files are its parent's
        return
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
    _unlock_file(lock_fd)


class ColdTier(_TierCounters):
    """Compressed values in one sqlite3 table; the key index (key -> rowid, size, times) stays in
    memory, least recently used first, so a miss never costs a query."""

    def __init__(self, directory: str, name: str, max_bytes: Optional[int], compression: int,
                 persist: bool, timed: bool) -> None:
        import sqlite3
        super().__init__(max_bytes)
        self.level = compression
        self.persist = persist
        self.pid = _getpid()
        # key -> [rowid, size, written, accessed], least recently used first
        self.index: "OrderedDict[Any, list]" = OrderedDict()
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        # "name#2" (a second registered cache named "name") -> "name-2"
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.replace("#", "-"))[:64] or "cache"
        self._lock_fd: Optional[int] = None
        if persist:
            self.path = os.path.join(directory, "%s.sqlite3" % safe)
            self._lock_fd = _lock_file(self.path + ".lock", self.path)
            flags = os.O_RDWR | os.O_CREAT
        else:
            self.path = os.path.join(directory, "%s-%d-%d.sqlite3"
                                     % (safe, self.pid, next(_SERIAL)))
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(self.path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                os.fchmod(fd, 0o600)  # a persisted file from an older run gets its mode back too
            finally:
                os.close(fd)
            # Autocommit: each statement is its own short transaction; WAL lets them be cheap.
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except BaseException:
            _unlock_file(self._lock_fd)
            raise
        self._finalizer = weakref.finalize(self, _close_db, self.db, self.path, persist,
                                           self._lock_fd, self.pid)
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
        blob, weight, written, accessed, key_blob = rec
        if key_blob is None:
            return False
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
        return [blob, weight, meta[2], meta[3], None]

    def oldest(self, read: bool) -> Tuple[Any, Record]:
        key = next(iter(self.index))
        return key, self.pop(key, read)  # type: ignore[return-value]

    def clear(self) -> None:
        self.db.execute("DELETE FROM entries")
        self.index.clear()
        self.bytes = 0

    def restamp(self, now: float, col: int) -> None:
        for meta in self.index.values():
            meta[col] = now
        self.db.execute("UPDATE entries SET %s = ?" % ("written" if col == 2 else "last_access"),
                        (now,))

    def close(self) -> None:
        self._finalizer()

    def detach(self) -> None:
        """In a forked child: let go of the parent's files without touching them."""
        self._finalizer.detach()
        _INHERITED.append(self.db)  # unclosed: closing could checkpoint or drop the parent's WAL
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)  # this copy only; the parent's flock stays
            except OSError:
                pass
        self.index, self.bytes = OrderedDict(), 0

    def __len__(self) -> int:
        return len(self.index)
