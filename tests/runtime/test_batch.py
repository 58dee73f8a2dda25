"""BatchProcessor: batching by size and by age, failing batches, result cache, hammering, close."""
from __future__ import annotations

import gc
import os
import threading
import weakref

import pytest

import memtui.agent
from conftest import FakeClock, run_in_fork, wait_for
from memtui.runtime._stats import SHAPES
from memtui.runtime.batch import BatchProcessor


class DictCache:
    def __init__(self) -> None:
        self.data = {}

    def get(self, key, default=None):
        return self.data.get(key, default)

    def set(self, key, value):
        self.data[key] = value




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
    clock = FakeClock(50.0)
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
        assert bp.configure({"batch_size": 10, "flush_interval": "100ms"}) == \
            {"batch_size": 10, "flush_interval": 0.1}
        with pytest.raises(ValueError):
            bp.configure({"batch_size": 0})
        assert bp.batch_size == 10


@pytest.mark.parametrize("values, key", [
    ({"batch_size": 2.7}, "batch_size"), ({"max_concurrency": True}, "max_concurrency"),
    ({"flush_interval": 0}, "flush_interval"), ({"flush_interval": -1}, "flush_interval"),
    ({"batch_size": 5, "flush_interval": "bogus"}, "flush_interval"),
    ({"batch_size": "7"}, "batch_size"), ({"batch_size": 5, "x": 1}, "'x'"),
])
def test_configure_rejects_bad_values_and_unknown_keys_changing_nothing(values, key):
    with BatchProcessor(lambda items: items, register=False) as bp:
        before = (bp.batch_size, bp.flush_interval, bp.max_concurrency)
        with pytest.raises(ValueError, match=key):
            bp.configure(values)
        assert (bp.batch_size, bp.flush_interval, bp.max_concurrency) == before


def test_handler_submitting_while_the_runner_queue_is_full_runs_the_batch_inline():
    bp = None
    inner = []

    def handler(items):
        if items == ["outer"]:
            inner.append(bp.submit("inner"))  # batch_size 1: cuts and dispatches at once
        return items

    bp = BatchProcessor(handler, batch_size=1, max_concurrency=1, max_queued_batches=1,
                        register=False)
    gate = threading.Event()
    bp._runner.submit(gate.wait, 10)  # hold the only runner thread
    first = bp.submit("outer")  # queued: the runner queue is now full
    gate.set()
    assert first.result(5) == "outer"
    assert inner[0].result(5) == "inner"
    bp.close()


def test_dropped_processors_are_collected_and_their_threads_exit():
    refs = []
    for i in range(5):
        bp = BatchProcessor(lambda items: items, flush_interval="20ms", name="gone%d" % i,
                            register=(i == 0))
        assert bp.submit(i).result(5) == i
        refs.append(weakref.ref(bp))
        if i == 0:
            registered = bp.name
        del bp
    wait_for(lambda: (gc.collect(), all(r() is None for r in refs))[1],
             message="the dropped processors collected")
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("memtui-gone")],
             message="their flusher and runner threads gone")
    assert registered not in memtui.agent.registry().collect()


def test_buffered_items_keep_a_dropped_processor_alive_until_flushed():
    bp = BatchProcessor(lambda items: [x + 1 for x in items], batch_size=100,
                        flush_interval="100ms", register=False)
    futures = [bp.submit(i) for i in range(3)]
    del bp
    gc.collect()
    assert [f.result(5) for f in futures] == [1, 2, 3]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_works_in_a_forked_child():
    gate = threading.Event()

    def handler(items):
        if "hold" in items:
            gate.wait(20)
        return [str(x) for x in items]

    bp = BatchProcessor(handler, batch_size=100, flush_interval="20ms", max_concurrency=1,
                        name="forkbatch", register=False)
    assert bp.submit(1).result(5) == "1"
    held = bp.submit("hold")
    wait_for(lambda: bp.stats()["batches_inflight"] == 1 and not bp.stats()["buffered"],
             message="a batch running")
    queued = [bp.submit(i) for i in range(3)]  # buffered or queued at fork time

    def child():
        inherited = bp.stats()["pending"]
        return [inherited, bp.submit(7).result(5), bp.flush(timeout=5)]

    try:
        result = run_in_fork(child)
    finally:
        gate.set()
    assert result == [0, "7", True]
    assert held.result(5) == "hold" and [f.result(5) for f in queued] == ["0", "1", "2"]
    bp.close()
    assert batch_threads(bp) == []


def test_registration_shows_in_agent_registry():
    bp = BatchProcessor(lambda items: items, name="test-batch-reg")
    try:
        item = memtui.agent.registry().collect()[bp.name]
        assert item["kind"] == "batch" and set(SHAPES["batch"]) <= set(item["stats"])
    finally:
        bp.close()
        memtui.agent.unregister(bp)
