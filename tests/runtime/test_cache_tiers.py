"""Cache tiers: demotion to a zlib-compressed warm tier and a real sqlite3 cold tier, promotion on a
hit, expiry across tiers, per-tier stats, file permissions and clean-up."""
from __future__ import annotations

import os
import pickle
import random
import sqlite3
import stat
import threading
import zlib

import pytest

from memtui.runtime.cache import Cache


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def value(i: int) -> str:
    return random.Random(i).randbytes(150).hex()  # 300 characters that zlib halves


def weigh(k, v):
    return 1000


def sqlite_rows(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT key_blob, value_blob, size FROM entries").fetchall()
    finally:
        conn.close()


def test_demotion_to_warm_then_cold_and_promotion_back(tmp_path):
    cold_dir = tmp_path / "cold"
    cache = Cache(max_bytes=3000, weigher=weigh, register=False,
                  tiers={"warm": {"max_bytes": "300B", "compression": 9},
                         "cold": {"path": str(cold_dir), "max_bytes": "1MiB"}})
    for i in range(10):
        cache.set(i, value(i))
    stats = cache.stats()
    warm, cold = stats["tiers"]["warm"], stats["tiers"]["cold"]
    assert stats["entries"] == 3 and len(cache) == 10           # 3 hot, the rest below
    assert warm["entries"] + cold["entries"] == 7
    assert 0 < warm["bytes"] <= 300 and cold["entries"] >= 1
    assert warm["demotions"] == 7 and cold["demotions"] == cold["entries"]

    # The cold tier is a real sqlite file holding real zlib+pickle bytes.
    rows = sqlite_rows(cache._tiers.cold.path)
    assert len(rows) == cold["entries"]
    for key_blob, value_blob, size in rows:
        assert pickle.loads(zlib.decompress(value_blob)) == value(pickle.loads(key_blob))
        assert size == len(value_blob) < len(value(0))

    # A hit below promotes to hot and removes the entry from below.
    assert 0 in cache and cache.get(0) == value(0)
    stats = cache.stats()
    assert stats["tiers"]["cold"]["promotions"] == 1 and stats["tiers"]["cold"]["hits"] == 1
    assert 0 in cache._data and 0 not in cache._tiers.cold.index
    assert len(sqlite_rows(cache._tiers.cold.path)) == stats["tiers"]["cold"]["entries"]
    warm_key = next(iter(cache._tiers.warm.entries))
    assert cache.get(warm_key) == value(warm_key)
    assert cache.stats()["tiers"]["warm"]["promotions"] == 1
    assert stats["hits"] == 1 and len(cache) == 10               # nothing was lost on the way
    assert all(cache.get(i) == value(i) for i in range(10))
    cache.close()


def test_cold_dir_and_file_are_private_and_removed_on_close(tmp_path):
    cold_dir = tmp_path / "private"
    cache = Cache(max_entries=1, register=False, tiers={"cold": {"path": str(cold_dir)}})
    cache.set("a", 1)
    cache.set("b", 2)
    path = cache._tiers.cold.path
    assert stat.S_IMODE(os.stat(cold_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.close()
    assert not os.path.exists(path) and not os.path.exists(path + "-wal")
    cache.set("c", 3)                       # the hot tier keeps working after close
    assert cache.get("c") == 3


def test_persisted_cold_tier_survives_close_and_reopens(tmp_path):
    spec = {"cold": {"path": str(tmp_path), "persist": True}}
    cache = Cache(name="persisted", max_entries=1, register=False, tiers=spec)
    cache.set("a", {"x": 1})
    cache.set("b", 2)
    path = cache._tiers.cold.path
    cache.close()
    assert os.path.exists(path)
    again = Cache(name="persisted", max_entries=1, register=False, tiers=spec)
    assert "a" in again and again.get("a") == {"x": 1}
    again.close()


def test_unpicklable_values_are_not_demoted(tmp_path):
    events = []
    cache = Cache(max_entries=1, on_evict=lambda k, v, c: events.append((k, c)), register=False,
                  tiers={"warm": {"max_bytes": "1MiB"}})
    lock = threading.Lock()
    cache.set("lock", lock)
    cache.set("other", 1)
    assert events == [("lock", "size")] and "lock" not in cache
    cache.set("third", 3)
    assert events == [("lock", "size")] and cache.get("other") == 1   # picklable: kept below
    cache.close()


def test_expired_entries_never_come_back_from_below(tmp_path):
    clock = FakeClock()
    events = []
    cache = Cache(max_entries=1, ttl=10, clock=clock, register=False,
                  on_evict=lambda k, v, c: events.append((k, v, c)),
                  tiers={"warm": {"max_bytes": "1MiB"}, "cold": {"path": str(tmp_path)}})
    cache.set("old", "o")
    cache.set("new", "n")                   # "old" drops to warm, keeping its write time
    assert cache._tiers.warm.entries
    clock.now += 11
    assert "old" not in cache and cache.get("old") is None
    assert ("old", "o", "expired") in events
    assert cache.stats()["tiers"]["warm"]["entries"] == 0
    cache.close()


def test_promotion_keeps_the_original_write_time(tmp_path):
    clock = FakeClock()
    cache = Cache(max_entries=1, ttl=10, clock=clock, register=False,
                  tiers={"warm": {"max_bytes": "1MiB"}})
    cache.set("a", 1)
    cache.set("b", 2)
    clock.now += 6
    assert cache.get("a") == 1              # promoted
    clock.now += 5
    assert cache.get("a") is None           # 11 s after its write, not 5 s after promotion
    cache.close()


def test_writes_and_deletes_reach_every_tier(tmp_path):
    cache = Cache(max_entries=1, register=False,
                  tiers={"warm": {"max_bytes": 400}, "cold": {"path": str(tmp_path)}})
    for i in range(6):
        cache.set(i, value(i))
    below = [k for k in range(6) if k not in cache._data]
    cache.set(below[0], "fresh")            # a write above discards the stale copy below
    assert cache.get(below[0]) == "fresh"
    assert cache.pop(below[1]) == value(below[1]) and below[1] not in cache
    assert cache.delete(below[2]) and not cache.delete(below[2])
    cache.clear()
    assert len(cache) == 0 and not sqlite_rows(cache._tiers.cold.path)
    cache.close()


def test_shrink_pushes_down_and_reports_memory_freed(tmp_path):
    cache = Cache(register=False, weigher=weigh,
                  tiers={"warm": {"max_bytes": "1MiB"}, "cold": {"path": str(tmp_path)}})
    for i in range(100):
        cache.set(i, value(i))
    hot_before = cache.stats()["bytes"]
    freed = cache.shrink(0.5)
    stats = cache.stats()
    assert stats["evictions"]["pressure"] == 50 and len(cache) == 100
    assert hot_before - stats["bytes"] == 50_000
    assert 0 < freed < 50_000               # warm holds what left hot, compressed
    assert stats["tiers"]["cold"]["entries"] > 0              # half of warm went to disk
    cache.close()


def test_bad_tier_specs_are_refused(tmp_path):
    with pytest.raises(ValueError):
        Cache(register=False, tiers={"lukewarm": {}})
    with pytest.raises(ValueError):
        Cache(register=False, tiers={"cold": {}})
    with pytest.raises(ValueError):
        Cache(register=False, tiers={"warm": {"compression": 12}})
