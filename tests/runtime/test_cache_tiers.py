"""Cache tiers: demotion to a zlib-compressed warm tier and a real sqlite3 cold tier, promotion on a
hit, expiry across tiers, per-tier stats, file permissions and clean-up."""
from __future__ import annotations

import json
import os
import pickle
import random
import sqlite3
import stat
import subprocess
import sys
import threading
import zlib

import pytest

from conftest import FakeClock

from memtui.runtime.cache import Cache




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
    clock = FakeClock(50.0)
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
    clock = FakeClock(50.0)
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


# -- fork, file ownership, live retuning, re-entry, light import ----------------------------------
def run_python(code, *args):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=60)


FORK_SCRIPT = r"""
import json, os, sys
from memtui.runtime.cache import Cache
d = sys.argv[1]
c = Cache(name="f", max_entries=2, register=False, tiers={"cold": {"path": d}})
for i in range(10):
    c.set(i, "v%d" % i)
path, status = c._tiers.cold.path, []
for use in (False, True):
    pid = os.fork()
    if pid == 0:  # exits through sys.exit, so the inherited finalizers run
        if use:
            c.clear()
            for i in range(20, 30):
                c.set(i, "child")
            assert c._tiers.cold.path != path and len(c._tiers.cold) == 8   # its own file
            assert c.get(25) == "child" and c.get(3) is None
        sys.exit(0)
    status.append(os.waitpid(pid, 0)[1])
print(json.dumps({"files": sorted(os.listdir(d)), "path": os.path.basename(path), "len": len(c),
                  "reads": [c.get(i) for i in range(8)], "status": status}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_closes_deletes_or_writes_the_parents_cold_file(tmp_path):
    out = run_python(FORK_SCRIPT, tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["files"] == sorted(got["path"] + s for s in ("", "-shm", "-wal"))
    assert got["len"] == 10 and got["reads"] == ["v%d" % i for i in range(8)]
    assert got["status"] == [0, 0], out.stderr          # the children's own checks passed


def test_persisted_cold_files_are_per_cache_and_exclusive(tmp_path):
    spec = {"cold": {"path": str(tmp_path), "persist": True}}
    a = Cache(name="tiers-test-users", max_entries=1, tiers=spec)
    b = Cache(name="tiers-test-users", max_entries=1, tiers=spec)   # registered as "...#2"
    assert b.name == "tiers-test-users#2"
    assert os.path.basename(b._tiers.cold.path) == "tiers-test-users-2.sqlite3"
    a.set("k", "A")
    a.set("j", "A2")                                    # "k" goes to a's cold file
    assert b.get("k") is None and a.get("k") == "A"
    a.set("j", "A3")
    with pytest.raises(ValueError, match="in use by another cache"):
        Cache(name="tiers-test-users", register=False, tiers=spec)
    other = run_python("import sys; from memtui.runtime.cache import Cache; Cache("
                       "name='tiers-test-users', register=False, tiers={'cold': "
                       "{'path': sys.argv[1], 'persist': True}})", tmp_path)
    assert other.returncode != 0 and "is in use by another cache" in other.stderr
    a.close()                                           # releases the file
    again = Cache(name="tiers-test-users", register=False, tiers=spec)
    assert again.get("k") == "A"
    again.close()
    b.close()


def test_switching_ttl_and_tti_on_restarts_the_clock_in_every_tier(tmp_path):
    clock = FakeClock(50.0)
    cache = Cache(max_entries=1, clock=clock, register=False,
                  tiers={"warm": {"max_bytes": 400}, "cold": {"path": str(tmp_path)}})
    for i in range(6):
        cache.set(i, value(i))
    assert cache._tiers.warm.entries and cache._tiers.cold.index
    clock.now += 1000
    cache.configure({"ttl": 60, "tti": 30})             # everything counts as written now
    assert len(cache) == 6 and all(i in cache for i in range(6))
    clock.now += 20
    assert all(cache.get(i) == value(i) for i in range(6))
    clock.now += 41                                     # 61 s after the switch: ttl is over
    assert not any(i in cache for i in range(6))
    cache.close()


class UsesCache:
    """A value whose pickling (its demotion) reads, rewrites or deletes its own cache."""
    cache = None
    action = "read"

    def __init__(self, key):
        self.key = key

    def __reduce__(self):
        cache = UsesCache.cache
        if UsesCache.action == "read":
            cache.get("missing"), len(cache), "missing" in cache, cache.stats()
        elif UsesCache.action == "rewrite":
            cache.set(self.key, "fresh")
        else:
            cache.delete(self.key)
        return (UsesCache, (self.key,))


@pytest.mark.parametrize("action", ["read", "rewrite", "delete"])
def test_a_value_using_the_cache_while_demoted_neither_deadlocks_nor_comes_back_stale(
        tmp_path, action):
    cache = Cache(max_entries=1, register=False,
                  tiers={"warm": {"max_bytes": "1MiB"}, "cold": {"path": str(tmp_path)}})
    UsesCache.cache, UsesCache.action = cache, action
    worker = threading.Thread(target=lambda: (cache.set("k", UsesCache("k")), cache.set("x", 1)),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "deadlocked"
    if action == "read":
        assert "k" in cache._tiers.warm.entries and cache.get("k").key == "k"
    elif action == "rewrite":
        assert cache.get("k") == "fresh" and "k" not in cache._tiers.warm.entries
        assert len(cache) == 2
    else:
        assert "k" not in cache and cache.get("k") is None and len(cache) == 1
    assert not cache._demoting
    cache.close()


def test_importing_the_cache_loads_none_of_the_tier_modules(tmp_path):
    out = run_python("import sys; import memtui.runtime.cache as c\n"
                     "heavy = lambda: [m for m in ('sqlite3', 'pickle', 'zlib') if m in sys.modules]\n"
                     "print(heavy())\n"
                     "c.Cache(register=False, tiers={'cold': {'path': sys.argv[1]}}).close()\n"
                     "print(heavy())", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "['sqlite3', 'pickle', 'zlib']"]
