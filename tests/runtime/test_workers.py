"""WorkerPool and AsyncLimiter: priorities, bounded queue, throttling, scaling, shutdown, stats."""
from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import weakref

import pytest

import memtui.agent
from conftest import run_in_fork, wait_for
from memtui.runtime._stats import SHAPES
from memtui.runtime.limiter import AsyncLimiter
from memtui.runtime.workers import QueueFull, WorkerPool


def pool_threads(pool):
    return [t for t in threading.enumerate() if t.name.startswith("memtui-%s-" % pool.name)]


def blocked_pool(**kw):
    """A pool whose only worker is stuck until the returned event is set."""
    kw.setdefault("register", False)
    pool = WorkerPool(min_workers=1, max_workers=1, **kw)
    gate, started = threading.Event(), threading.Event()
    pool.submit(lambda: (started.set(), gate.wait(10)))
    assert started.wait(5)
    return pool, gate


def test_submit_returns_future_with_result_and_exception():
    with WorkerPool(max_workers=2, register=False) as pool:
        assert pool.submit(lambda a, b=0: a + b, 40, b=2).result(5) == 42
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(5)
        wait_for(lambda: pool.stats()["failed"] == 1, message="failed counted")
        st = pool.stats()
    assert set(SHAPES["workers"]) <= set(st)
    assert st["completed"] == 1 and st["failed"] == 1


def test_priorities_honoured_fifo_within_priority():
    pool, gate = blocked_pool(queue_size=100)
    order = []
    plan = [(5, "e1"), (1, "b1"), (9, "z"), (1, "b2"), (0, "a"), (5, "e2"), (-3, "first")]
    futures = [pool.submit(order.append, label, priority=p) for p, label in plan]
    gate.set()
    for f in futures:
        f.result(5)
    pool.shutdown()
    assert order == ["first", "a", "b1", "b2", "e1", "e2", "z"]


def test_queue_full_raises_naming_pool_and_size():
    pool, gate = blocked_pool(queue_size=3, name="wq")
    for _ in range(3):
        pool.submit(time.sleep, 0)
    with pytest.raises(QueueFull, match=r"'wq'.*queue_size 3"):
        pool.submit(time.sleep, 0)
    assert pool.stats()["rejected"] == 1 and pool.stats()["queued"] == 3
    gate.set()
    pool.shutdown()


def test_block_policy_waits_then_times_out():
    pool, gate = blocked_pool(queue_size=1, when_full="block", block_timeout="50ms")
    pool.submit(time.sleep, 0)
    t0 = time.monotonic()
    with pytest.raises(QueueFull, match="after waiting"):
        pool.submit(time.sleep, 0)
    assert time.monotonic() - t0 >= 0.045
    gate.set()
    pool.shutdown()


def test_block_policy_admits_when_room_appears():
    pool, gate = blocked_pool(queue_size=1, when_full="block", block_timeout=10)
    pool.submit(time.sleep, 0)
    done = []
    t = threading.Thread(target=lambda: done.append(pool.submit(lambda: "late").result(10)))
    t.start()
    wait_for(lambda: pool.stats()["blocked_submitters"] == 1, message="a blocked submitter")
    gate.set()
    t.join(10)
    assert done == ["late"]
    pool.shutdown()


def test_throttle_stops_intake_and_resumes():
    with WorkerPool(max_workers=2, register=False) as pool:
        assert pool.throttle() is True
        assert pool.stats()["throttled"] is True
        with pytest.raises(QueueFull, match="throttled"):
            pool.submit(time.sleep, 0)
        pool.throttle(False)
        assert pool.submit(lambda: 7).result(5) == 7


def test_scales_up_with_backlog_and_down_after_idle_timeout():
    pool = WorkerPool(min_workers=1, max_workers=4, idle_timeout=0.1, name="scale",
                      register=False)
    gate = threading.Event()
    futures = [pool.submit(gate.wait, 10) for _ in range(8)]
    wait_for(lambda: pool.stats()["active"] == 4, message="4 busy workers")
    assert pool.stats()["workers"] == 4 and pool.stats()["queued"] == 4
    gate.set()
    for f in futures:
        f.result(5)
    wait_for(lambda: pool.stats()["workers"] == 1, message="back to min_workers")
    wait_for(lambda: len(pool_threads(pool)) == 1, message="threads gone")
    pool.shutdown()


def test_shutdown_runs_queued_work_and_leaves_no_thread():
    pool = WorkerPool(min_workers=2, max_workers=3, name="sd", register=False)
    results = [pool.submit(lambda i=i: i * i) for i in range(200)]
    pool.shutdown(wait=True)
    assert [f.result(0) for f in results] == [i * i for i in range(200)]
    assert pool_threads(pool) == []
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(time.sleep, 0)


def test_shutdown_cancel_pending():
    pool, gate = blocked_pool(name="cancel")
    pending = [pool.submit(time.sleep, 0) for _ in range(5)]
    threading.Timer(0.05, gate.set).start()
    pool.shutdown(wait=True, cancel_pending=True)
    assert all(f.cancelled() for f in pending)
    assert pool.stats()["cancelled"] == 5 and pool_threads(pool) == []


def test_context_manager_and_configure():
    with WorkerPool(min_workers=0, max_workers=2, register=False, name="cfg") as pool:
        assert pool.configure({"max_workers": 3, "idle_timeout": "1m"}) == \
            {"max_workers": 3, "idle_timeout": 60.0}
        with pytest.raises(ValueError):
            pool.configure({"when_full": "drop"})
        assert pool.when_full == "raise"
        assert pool.submit(lambda: 1).result(5) == 1
    assert pool_threads(pool) == []


SETTINGS = ("min_workers", "max_workers", "queue_size", "when_full", "block_timeout",
            "idle_timeout", "batch")


@pytest.mark.parametrize("values, key", [
    ({"max_workers": 2.9}, "max_workers"), ({"max_workers": True}, "max_workers"),
    ({"queue_size": "12"}, "queue_size"), ({"batch": 0.5}, "batch"),
    ({"min_workers": -1}, "min_workers"), ({"idle_timeout": 0}, "idle_timeout"),
    ({"block_timeout": "-1s"}, "block_timeout"), ({"idle_timeout": "soon"}, "idle_timeout"),
    ({"when_full": "drop"}, "when_full"), ({"max_wrokers": 3}, "max_wrokers"),
    ({"queue_size": 50, "batch": 0}, "batch"), ({"max_workers": 3, "other": 1}, "other"),
])
def test_configure_rejects_bad_values_and_unknown_keys_changing_nothing(values, key):
    with WorkerPool(min_workers=0, max_workers=2, register=False) as pool:
        before = {k: getattr(pool, k) for k in SETTINGS}
        with pytest.raises(ValueError, match="'%s'|%s" % (key, key)):
            pool.configure(values)
        assert {k: getattr(pool, k) for k in SETTINGS} == before


def test_constructor_is_strict_too():
    with pytest.raises(ValueError, match="max_workers"):
        WorkerPool(max_workers=2.5, register=False)
    with pytest.raises(ValueError, match="min_workers <= max_workers"):
        WorkerPool(min_workers=3, max_workers=2, register=False)


def test_task_submitting_to_its_own_full_pool_gets_queue_full_instead_of_deadlock():
    pool = WorkerPool(min_workers=1, max_workers=1, queue_size=1, when_full="block",
                      block_timeout=None, name="selfsub", register=False)
    gate = threading.Event()

    def outer():
        gate.wait(10)
        return pool.submit(lambda: "inner").result(10)

    f1 = pool.submit(outer)
    wait_for(lambda: pool.stats()["active"] == 1, message="outer running")
    f2 = pool.submit(lambda: 2)  # fills the queue
    gate.set()
    with pytest.raises(QueueFull, match="cannot wait on its own pool"):
        f1.result(5)
    assert f2.result(5) == 2
    assert pool.stats()["rejected"] == 1 and pool.stats()["blocked_submitters"] == 0
    # with room, a task may still submit to its own pool
    assert pool.submit(lambda: pool.submit(lambda: 3)).result(5).result(5) == 3
    pool.shutdown()


def test_dropped_pools_are_collected_and_their_idle_workers_exit():
    refs = []
    for i in range(5):
        pool = WorkerPool(min_workers=2, max_workers=3, name="dropped%d" % i,
                          register=(i == 0))
        assert pool.submit(lambda: 1).result(5) == 1
        refs.append(weakref.ref(pool))
        if i == 0:
            registered = pool.name
            assert registered in memtui.agent.registry().collect()
        del pool
    wait_for(lambda: (gc.collect(), all(r() is None for r in refs))[1], timeout=10,
             message="the dropped pools collected")
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("memtui-dropped")],
             timeout=10, message="their worker threads gone")
    assert registered not in memtui.agent.registry().collect()


def test_pool_with_queued_work_stays_alive_until_drained():
    done = []
    pool = WorkerPool(min_workers=1, max_workers=1, name="draining", register=False)
    gate = threading.Event()
    pool.submit(gate.wait, 10)
    futures = [pool.submit(done.append, i) for i in range(5)]
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is not None
    gate.set()
    assert [f.result(5) for f in futures] == [None] * 5 and done == list(range(5))
    wait_for(lambda: (gc.collect(), ref() is None)[1], message="collected once drained")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_pool_works_in_a_forked_child_and_drops_the_parents_queue():
    pool = WorkerPool(min_workers=2, max_workers=2, name="forked", register=False)
    assert pool.submit(lambda: 1).result(5) == 1
    gate = threading.Event()
    started = [threading.Event(), threading.Event()]
    for ev in started:  # one at a time: a worker may take tiny tasks in twos
        pool.submit(lambda ev=ev: (ev.set(), gate.wait(20)))
        assert ev.wait(5)
    parents = [pool.submit(lambda i=i: i) for i in range(3)]  # queued at fork time

    def child():
        st = pool.stats()
        inherited = (st["queued"], st["workers"], st["active"])
        result = pool.submit(lambda: 42).result(5)
        wait_for(lambda: pool.stats()["workers"] == 2, timeout=5, message="min_workers back")
        return [inherited, result, pool.submit(lambda: 7).result(5)]

    try:
        assert run_in_fork(child) == [[0, 0, 0], 42, 7]
    finally:
        gate.set()
    assert [f.result(5) for f in parents] == [0, 1, 2]  # the parent's own work still ran here
    pool.shutdown()
    assert pool_threads(pool) == []


def test_hammer_many_producers_every_task_runs_once():
    counts = [0] * 4000
    lock = threading.Lock()

    def task(i):
        with lock:
            counts[i] += 1

    pool = WorkerPool(min_workers=1, max_workers=4, queue_size=500, when_full="block",
                      name="hammer", register=False)
    futures = []

    def producer(base):
        for i in range(base, base + 500):
            futures.append(pool.submit(task, i, priority=i % 3))

    producers = [threading.Thread(target=producer, args=(k * 500,)) for k in range(8)]
    for t in producers:
        t.start()
    for t in producers:
        t.join(60)
    for f in list(futures):
        f.result(30)
    pool.shutdown()
    assert counts == [1] * 4000
    st = pool.stats()
    assert st["completed"] == 4000 and st["queued"] == 0 and st["active"] == 0
    assert st["latency_p95_ms"] >= st["latency_p50_ms"] > 0
    assert pool_threads(pool) == []


def test_registration_shows_in_agent_registry():
    pool = WorkerPool(max_workers=1, name="test-workers-reg")
    try:
        item = memtui.agent.registry().collect()[pool.name]
        assert item["kind"] == "workers" and set(SHAPES["workers"]) <= set(item["stats"])
    finally:
        pool.shutdown()
        memtui.agent.unregister(pool)


# -- AsyncLimiter ---------------------------------------------------------------------------------
def test_async_limiter_bounds_concurrency():
    limiter = AsyncLimiter(3, register=False)
    now = {"cur": 0, "max": 0}

    async def job(i):
        async with limiter:
            now["cur"] += 1
            now["max"] = max(now["max"], now["cur"])
            await asyncio.sleep(0.001 * (i % 3))
            now["cur"] -= 1
        return i

    async def main():
        return await asyncio.gather(*(job(i) for i in range(40)))

    assert asyncio.run(main()) == list(range(40))
    assert now["max"] == 3
    st = limiter.stats()
    assert set(SHAPES["workers"]) <= set(st)
    assert st["completed"] == 40 and st["active"] == 0 and st["queued"] == 0


def test_async_limiter_run_counts_failures_and_cancellation_frees_slot():
    limiter = AsyncLimiter(1, register=False)

    async def boom():
        raise ValueError("no")

    async def main():
        with pytest.raises(ValueError):
            await limiter.run(boom)
        hold = asyncio.Event()

        async def holder():
            async with limiter:
                await hold.wait()

        h = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(limiter.run(asyncio.sleep, 0))
        await asyncio.sleep(0)
        assert limiter.stats()["queued"] == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        hold.set()
        await h
        assert await asyncio.wait_for(limiter.run(asyncio.sleep, 0, "ok"), 5) == "ok"

    asyncio.run(main())
    st = limiter.stats()
    assert st["failed"] == 1 and st["completed"] == 2 and st["active"] == 0
    assert st["cancelled"] == 1


def test_async_limiter_configure_raises_limit_and_wakes_waiters():
    limiter = AsyncLimiter(1, register=False)

    async def main():
        gate = asyncio.Event()
        inside = []

        async def job():
            async with limiter:
                inside.append(1)
                await gate.wait()

        tasks = [asyncio.create_task(job()) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert len(inside) == 1
        assert limiter.configure({"limit": 3}) == {"limit": 3}
        for _ in range(100):
            if len(inside) == 3:
                break
            await asyncio.sleep(0.01)
        assert len(inside) == 3
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


def test_async_limiter_configure_is_strict():
    limiter = AsyncLimiter(2, register=False)
    for bad in ({"limit": 2.5}, {"limit": True}, {"limit": "3"}, {"limit": 0},
                {"max_workers": 0}, {"limit": 3, "lmit": 4}):
        with pytest.raises(ValueError, match="limiter"):
            limiter.configure(bad)
        assert limiter.limit == 2
    assert limiter.configure({"max_workers": 4}) == {"limit": 4}
    assert limiter.configure({"limit": 4}) == {}
    with pytest.raises(ValueError, match="limit"):
        AsyncLimiter(1.5, register=False)
