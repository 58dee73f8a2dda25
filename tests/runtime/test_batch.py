"""BatchProcessor: batching by size and by age, failing batches, result cache, hammering, close."""
from __future__ import annotations

import threading

import pytest

import memtui.agent
from conftest import wait_for
from memtui.runtime._stats import SHAPES
from memtui.runtime.batch import BatchProcessor


class DictCache:
    def __init__(self) -> None:
        self.data = {}

    def get(self, key, default=None):
        return self.data.get(key, default)

    def set(self, key, value):
        self.data[key] = value


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def batch_threads(bp):
    return [t for t in threading.enumerate() if t.name.startswith("memtui-%s" % bp.name)]


def recording_handler(seen):
    def handler(items):
        seen.append(list(items))
        return [x * 10 for x in items]
    return handler


def test_batches_by_size():
    seen = []
    with BatchProcessor(recording_handler(seen), batch_size=4, flush_interval=60,
                        register=False) as bp:
        futures = [bp.submit(i) for i in range(8)]
        assert [f.result(5) for f in futures] == [i * 10 for i in range(8)]
        assert sorted(map(tuple, seen)) == [(0, 1, 2, 3), (4, 5, 6, 7)]
        st = bp.stats()
    assert set(SHAPES["batch"]) <= set(st)
    assert st["batches"] == 2 and st["items"] == 8 and st["pending"] == 0


def test_batches_by_interval_with_real_flusher():
    seen = []
    with BatchProcessor(recording_handler(seen), batch_size=100, flush_interval="30ms",
                        register=False) as bp:
        futures = [bp.submit(i) for i in range(3)]
        assert [f.result(5) for f in futures] == [0, 10, 20]
        assert seen == [[0, 1, 2]]


def test_interval_uses_injected_clock():
    clock = FakeClock()
    seen = []
    bp = BatchProcessor(recording_handler(seen), batch_size=100, flush_interval=1.0,
                        clock=clock, register=False)
    f = bp.submit(7)
    assert bp.tick() is False and not f.done()
    clock.now += 1.5
    assert bp.tick() is True
    assert f.result(5) == 70
    bp.close()


def test_handler_error_fails_every_future_of_the_batch():
    def handler(items):
        if 3 in items:
            raise KeyError("bad batch")
        return items

    with BatchProcessor(handler, batch_size=2, flush_interval=60, register=False) as bp:
        good = [bp.submit(0), bp.submit(1)]
        bad = [bp.submit(2), bp.submit(3)]
        assert [f.result(5) for f in good] == [0, 1]
        for f in bad:
            with pytest.raises(KeyError):
                f.result(5)
        wait_for(lambda: bp.stats()["errors"] == 1, message="error counted")


def test_wrong_result_count_is_an_error():
    with BatchProcessor(lambda items: items[:-1], batch_size=2, flush_interval=60,
                        register=False) as bp:
        futures = [bp.submit(1), bp.submit(2)]
        for f in futures:
            with pytest.raises(ValueError, match="returned 1 results for 2 items"):
                f.result(5)


def test_result_cache_hits_skip_the_handler():
    seen = []
    cache = DictCache()
    with BatchProcessor(recording_handler(seen), batch_size=2, flush_interval=60,
                        result_cache=cache, key=lambda x: "k%d" % x, register=False) as bp:
        assert [f.result(5) for f in (bp.submit(1), bp.submit(2))] == [10, 20]
        assert cache.data == {"k1": 10, "k2": 20}
        hit = bp.submit(1)
        assert hit.done() and hit.result() == 10
        f3 = bp.submit(3)
        bp.flush()
        assert f3.result(5) == 30
        assert seen == [[1, 2], [3]]
        assert bp.stats()["cache_hits"] == 1


def test_bounded_concurrency_and_hammer():
    live = {"cur": 0, "max": 0}
    lock = threading.Lock()
    release = threading.Event()

    def handler(items):
        with lock:
            live["cur"] += 1
            live["max"] = max(live["max"], live["cur"])
        release.wait(5)
        with lock:
            live["cur"] -= 1
        return [x + 1 for x in items]

    bp = BatchProcessor(handler, batch_size=5, flush_interval=0.01, max_concurrency=2,
                        name="hammer-batch", register=False)
    results = {}

    def producer(base):
        for i in range(base, base + 200):
            results[i] = bp.submit(i)

    threads = [threading.Thread(target=producer, args=(k * 200,)) for k in range(6)]
    for t in threads:
        t.start()
    wait_for(lambda: live["cur"] == 2, message="two batches running")
    release.set()
    for t in threads:
        t.join(30)
    assert bp.flush(timeout=30)
    assert all(results[i].result(10) == i + 1 for i in range(1200))
    st = bp.stats()
    assert live["max"] == 2
    assert st["items"] == 1200 and st["pending"] == 0 and st["errors"] == 0
    assert st["latency_p95_ms"] >= st["latency_p50_ms"] > 0
    bp.close()
    assert batch_threads(bp) == []


def test_close_flushes_and_stops_threads():
    seen = []
    bp = BatchProcessor(recording_handler(seen), batch_size=50, flush_interval=60,
                        name="closing", register=False)
    f = bp.submit(4)
    bp.close(wait=True)
    assert f.result(0) == 40
    assert batch_threads(bp) == []
    with pytest.raises(RuntimeError, match="closed"):
        bp.submit(1)


def test_configure():
    with BatchProcessor(lambda items: items, register=False) as bp:
        assert bp.configure({"batch_size": 10, "flush_interval": "100ms", "x": 1}) == \
            {"batch_size": 10, "flush_interval": 0.1}
        with pytest.raises(ValueError):
            bp.configure({"batch_size": 0})
        assert bp.batch_size == 10


def test_registration_shows_in_agent_registry():
    bp = BatchProcessor(lambda items: items, name="test-batch-reg")
    try:
        item = memtui.agent.registry().collect()[bp.name]
        assert item["kind"] == "batch" and set(SHAPES["batch"]) <= set(item["stats"])
    finally:
        bp.close()
        memtui.agent.unregister(bp)
