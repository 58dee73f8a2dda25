"""Adapters watch real things (lru_cache, cachetools, executors, queues, an asyncio loop, SQLAlchemy
on SQLite) and report real numbers in the blocks' stats shapes; watching leaks nothing and changes
no behaviour."""
from __future__ import annotations

import asyncio
import copy
import functools
import gc
import pickle
import queue
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

import memtui.agent
from memtui.runtime import adapters
from memtui.runtime._stats import SHAPES
from conftest import wait_for

cachetools = pytest.importorskip("cachetools")


@pytest.fixture(autouse=True)
def _clean_registry():
    before = set(memtui.agent.registry().names())
    yield
    for name in set(memtui.agent.registry().names()) - before:
        memtui.agent.unregister(name)


def stats_of(name):
    return memtui.agent.registry().collect()[name]


def check_shape(item, kind):
    assert item["kind"] == kind
    missing = set(SHAPES[kind]) - set(item["stats"])
    assert not missing, missing
    return item["stats"]


def _square(x):
    return x * x


def _fail(x):
    raise ValueError(x)


# -- functools.lru_cache ------------------------------------------------------------------------
def test_lru_cache_function_reports_hits_misses_and_estimated_evictions():
    @functools.lru_cache(maxsize=4)
    def f(x):
        return x + 1

    name = adapters.watch(f, name="f")
    for x in (1, 2, 1, 1, 3, 4, 5, 6):  # 6 misses, 2 hits, 2 evicted to make room
        f(x)
    s = check_shape(stats_of(name), "cache")
    assert (s["hits"], s["misses"], s["entries"], s["max_entries"]) == (2, 6, 4, 4)
    assert s["hit_rate"] == pytest.approx(0.25)
    assert s["evictions"]["size"] == 2 and s["bytes"] is None and "note" in s


def test_watching_twice_gives_one_entry_and_an_unsupported_object_is_a_type_error():
    f = functools.lru_cache(maxsize=2)(_square)
    assert adapters.watch(f, name="sq") == adapters.watch(f) == "sq"
    assert memtui.agent.registry().names().count("sq") == 1
    with pytest.raises(TypeError, match="ThreadPoolExecutor"):
        adapters.watch(object())
    with pytest.raises(TypeError, match="dict"):
        adapters.watch({})


@pytest.mark.parametrize("make", [
    lambda: functools.lru_cache(maxsize=8)(lambda x: x),
    lambda: cachetools.LRUCache(maxsize=8),
    lambda: ThreadPoolExecutor(max_workers=1),
    lambda: queue.Queue(),
    lambda: asyncio.new_event_loop(),
], ids=["lru_cache", "cachetools", "executor", "queue", "loop"])
def test_adapter_leaves_the_registry_when_the_object_is_collected(make):
    obj = make()
    name = adapters.watch(obj, name="gone")
    assert name in memtui.agent.registry().names()
    if hasattr(obj, "shutdown"):
        obj.shutdown(wait=True)
    if hasattr(obj, "close"):
        obj.close()
    del obj
    gc.collect()
    assert name not in memtui.agent.registry().names()
    assert not adapters._LIVE or all(a.target() is not None for a in adapters._LIVE.values())


# -- cachetools ---------------------------------------------------------------------------------
def test_cachetools_lru_counts_hits_misses_and_size_evictions():
    c = cachetools.LRUCache(maxsize=3)
    name = adapters.watch(c, name="ct")
    for k in "abcd":  # d evicts a
        c[k] = k.upper()
    assert c["b"] == "B" and c.get("c") == "C"
    assert c.get("a") is None and c.get("zz", 7) == 7
    with pytest.raises(KeyError):
        c["a"]
    del c["b"]
    c["c"] = "again"
    s = check_shape(stats_of(name), "cache")
    assert (s["hits"], s["misses"]) == (2, 3)
    assert s["evictions"] == {"size": 1, "expired": 0, "explicit": 1, "replaced": 1}
    assert (s["entries"], s["max_entries"], s["policy"]) == (2, 3, "lru")


def test_cachetools_ttl_counts_expiry_with_its_own_timer():
    now = [0.0]
    c = cachetools.TTLCache(maxsize=10, ttl=5, timer=lambda: now[0])
    name = adapters.watch(c, name="ttl")
    c["a"], c["b"] = 1, 2
    assert c["a"] == 1
    now[0] = 6.0
    assert c.get("a") is None
    c["c"] = 3  # setting expires a and b
    s = check_shape(stats_of(name), "cache")
    assert s["evictions"]["expired"] == 2 and s["evictions"]["size"] == 0
    assert (s["hits"], s["misses"], s["policy"], s["ttl_s"]) == (1, 1, "ttl", 5)


def test_cachetools_weighed_cache_reports_bytes_and_the_cached_decorator_is_watchable():
    c = cachetools.LFUCache(maxsize=100, getsizeof=len)
    name = adapters.watch(c, name="lfu")
    c["x"] = "a" * 60
    c["y"] = "b" * 50  # 110 > 100: x goes
    s = check_shape(stats_of(name), "cache")
    assert (s["bytes"], s["max_bytes"], s["max_entries"], s["entries"]) == (50, 100, None, 1)
    assert s["evictions"]["size"] == 1 and s["policy"] == "lfu"

    @cachetools.cached(cachetools.LRUCache(maxsize=2))
    def double(x):
        return 2 * x

    wname = adapters.watch(double)
    assert [double(i) for i in (1, 1, 2, 3, 1)] == [2, 2, 4, 6, 2]
    s = stats_of(wname)["stats"]
    assert (s["hits"], s["misses"], s["evictions"]["size"]) == (1, 4, 2)


def test_watching_cachetools_changes_no_behaviour():
    def run(c):
        out = []
        for i in range(40):
            c[i % 7] = i
            out.append((c.get(i % 5), c.get(99, "d"), len(c), list(c), c.currsize))
            if i % 9 == 0:
                out.append(c.pop(i % 7, None))
                out.append(c.setdefault("s", i))
        out.append(c.popitem())
        return out, repr(c)

    def ttl(maxsize):
        return cachetools.TTLCache(maxsize, ttl=10, timer=lambda: 0)  # time stands still

    ttl.__name__ = "TTLCache"
    for make in (cachetools.LRUCache, cachetools.LFUCache, cachetools.FIFOCache, ttl):
        plain, watched = make(maxsize=4), make(maxsize=4)
        cls = type(plain)
        adapters.watch(watched, name="w")
        assert run(plain) == run(watched)
        assert isinstance(watched, cls) and type(watched).__name__ == cls.__name__
        twin = copy.copy(watched)
        assert type(twin) is cls and dict(twin) == dict(watched)
        if make is not ttl:  # a lambda timer does not pickle, watched or not
            back = pickle.loads(pickle.dumps(watched))
            assert type(back) is cls and dict(back) == dict(watched)
        deep = copy.deepcopy(watched)
        assert type(deep) is cls and dict(deep) == dict(watched)
        assert adapters.unwatch(watched) and type(watched) is cls
        assert adapters._COUNTS not in watched.__dict__


# -- executors ----------------------------------------------------------------------------------
def test_thread_pool_executor_reports_active_queued_completed_and_failed():
    gate = threading.Event()
    ex = ThreadPoolExecutor(max_workers=2, thread_name_prefix="io")
    try:
        name = adapters.watch(ex)
        assert name == "io"
        blockers = [ex.submit(gate.wait, 10) for _ in range(2)]
        waiting = [ex.submit(_square, i) for i in range(3)]
        s = check_shape(stats_of(name), "workers")
        assert (s["active"], s["queued"], s["max_workers"], s["executor"]) == (2, 3, 2, "thread")
        gate.set()
        assert [f.result(5) for f in waiting] == [0, 1, 4]
        bad = ex.submit(_fail, 1)
        with pytest.raises(ValueError):
            bad.result(5)
        assert list(ex.map(_square, range(4))) == [0, 1, 4, 9]
        wait_for(lambda: all(f.done() for f in blockers))
        s = wait_for(lambda: (lambda st: st if st["completed"] == 9 else None)(
            stats_of(name)["stats"]), message="9 completed")
        assert (s["failed"], s["active"], s["queued"]) == (1, 0, 0)
        assert s["latency_p95_ms"] >= s["latency_p50_ms"] > 0
    finally:
        gate.set()
        ex.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        ex.submit(_square, 1)
    assert stats_of(name)["stats"]["rejected"] == 1


def test_process_pool_executor_reports_completed_tasks():
    with ProcessPoolExecutor(max_workers=2) as ex:
        name = adapters.watch(ex, name="procs")
        assert sum(ex.map(_square, range(10))) == 285
        assert pytest.raises(ValueError, ex.submit(_fail, 2).result, 30)
        s = wait_for(lambda: (lambda st: st if st["completed"] + st["failed"] == 11 else None)(
            stats_of(name)["stats"]), message="11 done")
        s = check_shape(stats_of(name), "workers")
        assert (s["completed"], s["failed"], s["queued"], s["active"]) == (10, 1, 0, 0)
        assert (s["executor"], s["max_workers"]) == ("process", 2) and s["workers"] >= 1


# -- queue.Queue --------------------------------------------------------------------------------
def test_queue_reports_depth_rejections_and_blocked_consumers():
    q = queue.Queue(maxsize=3)
    name = adapters.watch(q, name="jobs")
    for i in range(3):
        q.put(i)
    with pytest.raises(queue.Full):
        q.put_nowait(99)
    s = check_shape(stats_of(name), "workers")
    assert (s["queued"], s["queue_size"], s["rejected"], s["puts"]) == (3, 3, 1, 3)
    assert [q.get(), q.get_nowait(), q.get()] == [0, 1, 2]
    got = []
    consumers = [threading.Thread(target=lambda: got.append(q.get(timeout=10))) for _ in range(2)]
    for t in consumers:
        t.start()
    wait_for(lambda: stats_of(name)["stats"]["idle"] == 2, message="2 blocked consumers")
    q.put("x")
    q.put("y")
    for t in consumers:
        t.join(5)
    s = stats_of(name)["stats"]
    assert sorted(got) == ["x", "y"] and (s["completed"], s["queued"], s["idle"]) == (5, 0, 0)


# -- asyncio ------------------------------------------------------------------------------------
def test_asyncio_loop_in_a_thread_reports_its_task_count():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        name = adapters.watch(loop, name="loop")

        async def sleeper():
            await asyncio.sleep(30)

        async def spawn(n):
            return [asyncio.ensure_future(sleeper()) for _ in range(n)]

        tasks = asyncio.run_coroutine_threadsafe(spawn(7), loop).result(5)
        s = wait_for(lambda: (lambda st: st if st["active"] == 7 else None)(
            check_shape(stats_of(name), "workers")), message="7 tasks")
        assert s["running"] is True and s["tasks"] == 7 and s["lag_ms"] >= 0
        for t in tasks:
            loop.call_soon_threadsafe(t.cancel)
        wait_for(lambda: stats_of(name)["stats"]["active"] == 0, message="tasks gone")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# -- SQLAlchemy ---------------------------------------------------------------------------------
def test_sqlalchemy_queue_pool_on_sqlite_reports_checkouts_waiters_and_timeouts(tmp_path):
    sa = pytest.importorskip("sqlalchemy")
    engine = sa.create_engine("sqlite:///%s" % (tmp_path / "db.sqlite"),
                              poolclass=sa.pool.QueuePool, pool_size=2, max_overflow=0, pool_timeout=0.2,
                              connect_args={"check_same_thread": False})
    try:
        name = adapters.watch(engine)
        assert name == "sqlalchemy-sqlite"
        a, b = engine.connect(), engine.connect()
        assert a.execute(sa.text("select 1")).scalar() == 1
        s = check_shape(stats_of(name), "pool")
        assert (s["in_use"], s["idle"], s["size"], s["max_size"], s["created"]) == (2, 0, 2, 2, 2)
        with pytest.raises(sa.exc.TimeoutError):
            engine.connect()
        assert stats_of(name)["stats"]["timeouts"] == 1
        engine.pool._timeout = 10  # a waiter that will be served
        got = []
        waiter = threading.Thread(target=lambda: got.append(engine.connect()))
        waiter.start()
        wait_for(lambda: stats_of(name)["stats"]["waiters"] == 1, message="one waiter")
        a.close()
        waiter.join(5)
        s = stats_of(name)["stats"]
        assert got and (s["waiters"], s["in_use"], s["checkouts"]) == (0, 2, 3)
        assert s["wait_p95_ms"] >= 100  # the timed-out and the waiting checkout both waited
        got[0].close()
        b.close()
        s = stats_of(name)["stats"]
        assert (s["in_use"], s["idle"]) == (0, 2)
        engine.dispose()  # a new pool: still watched, counters carry on
        engine.connect().close()
        s = stats_of(name)["stats"]
        assert (s["created"], s["checkouts"], s["destroyed"]) == (3, 4, 2)
        assert adapters.unwatch(engine) and "connect" not in engine.pool.__dict__
    finally:
        engine.dispose()
