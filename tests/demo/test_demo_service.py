"""The demo service's stand-in components behave like the real things they imitate."""
from __future__ import annotations

import json
import threading
import time

from conftest import wait_for
from memtui.demo import service


def test_lru_cache_counts_and_evicts_oldest():
    loads = []
    cache = service.LRUCache("c", 2, lambda k: loads.append(k) or b"x" * 10)
    cache.get("a"), cache.get("b"), cache.get("a"), cache.get("c")  # "b" is least recent
    assert loads == ["a", "b", "c"]
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["evictions"], stats["entries"]) == (1, 3, 1, 2)
    assert stats["hit_rate"] == 0.25 and stats["bytes"] == 20
    cache.get("a")
    assert loads == ["a", "b", "c"]  # still cached
    assert cache.shrink(0.5) == 10 and cache.stats()["entries"] == 1
    json.dumps(cache.stats())


def test_pool_blocks_counts_waiters_and_times_out():
    pool = service.ConnectionPool("p", 1, buffer_kb=1)
    conn = pool.acquire()
    assert conn is not None and pool.stats()["in_use"] == 1
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=5)))
    waiter.start()
    wait_for(lambda: pool.stats()["waiters"] == 1, message="a waiter")
    pool.release(conn)
    waiter.join(5)
    assert got == [conn] and pool.stats()["waiters"] == 0
    assert pool.acquire(timeout=0.05) is None and pool.stats()["timeouts"] == 1


def test_workers_count_completed_failed_and_stop():
    def handle(job: int) -> None:
        if job % 2:
            raise ValueError(job)
        time.sleep(0.001)

    workers = service.Workers("w", 2, handle)
    for job in range(10):
        workers.submit(job)
    wait_for(lambda: workers.stats()["completed"] + workers.stats()["failed"] == 10)
    stats = workers.stats()
    assert (stats["completed"], stats["failed"], stats["queued"]) == (5, 5, 0)
    workers.stop()
    assert not any(t.is_alive() for t in workers._threads)


def test_request_log_leaks_up_to_its_cap():
    service.REQUEST_LOG.clear()
    log = service.RequestLog(kb_per_request=1, max_bytes=3 * 1024)
    for request_id in range(5):
        log.record(request_id)
    assert log.stats() == {"entries": 3, "bytes": 3 * 1024, "max_bytes": 3 * 1024}
    service.REQUEST_LOG.clear()
