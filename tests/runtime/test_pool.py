"""ResourcePool: borrowing, timeouts, validation, idle cleanup on a fake clock, scaling, hammering."""
from __future__ import annotations

import itertools
import threading
import time

import pytest

import memtui.agent
from conftest import FakeClock, wait_for
from memtui.runtime._stats import SHAPES
from memtui.runtime.pool import PoolClosed, PoolTimeout, ResourcePool




class Conn:
    ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(self.ids)
        self.closed = False
        self.healthy = True
        self.users = 0


def make_pool(**kw):
    closed = []

    def close(c):
        c.closed = True
        closed.append(c)

    kw.setdefault("register", False)
    return ResourcePool(Conn, close=close, **kw), closed


def test_acquire_release_reuses_and_stats_have_shape():
    pool, _ = make_pool(max_size=2)
    with pool.acquire() as a:
        assert pool.stats()["in_use"] == 1
    with pool.acquire() as b:
        assert b is a
    st = pool.stats()
    assert set(SHAPES["pool"]) <= set(st)
    assert (st["size"], st["in_use"], st["idle"], st["created"]) == (1, 0, 1, 1)


def test_timeout_raises_pool_timeout_naming_the_pool():
    pool, _ = make_pool(max_size=1, name="db")
    lease = pool.acquire()
    with pytest.raises(PoolTimeout, match=r"'db'.*size 1 of max 1") as info:
        pool.acquire(timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert pool.stats()["timeouts"] == 1
    lease.release()
    with pool.acquire(timeout=0.05):
        pass


def test_waiter_gets_released_resource():
    pool, _ = make_pool(max_size=1)
    lease = pool.acquire()
    got = []
    t = threading.Thread(target=lambda: got.append(pool.acquire(timeout=5).resource))
    t.start()
    wait_for(lambda: pool.stats()["waiters"] == 1, message="a waiter")
    lease.release()
    t.join(5)
    assert got == [lease.resource]
    assert pool.stats()["wait_p95_ms"] > 0


def test_validation_failure_closes_and_replaces():
    pool, closed = make_pool(max_size=2, validate=lambda c: c.healthy)
    with pool.acquire() as c1:
        pass
    c1.healthy = False
    with pool.acquire() as c2:
        assert c2 is not c1
    assert closed == [c1]
    st = pool.stats()
    assert st["validation_failures"] == 1 and st["destroyed"] == 1 and st["size"] == 1


def test_validate_raising_counts_as_invalid():
    def validate(c):
        raise OSError("ping failed")

    pool, closed = make_pool(max_size=1, validate=validate, default_size=1)
    first = pool._idle[-1][0]
    with pool.acquire() as c:  # the created one is not validated; the eager one was
        assert c is not first
    assert pool.stats()["validation_failures"] == 1 and closed == [first]


def test_factory_error_propagates_and_does_not_leak_a_slot():
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("db down")
        return Conn()

    pool = ResourcePool(factory, max_size=1, register=False)
    with pytest.raises(ConnectionError):
        pool.acquire(timeout=0.1)
    with pool.acquire(timeout=0.1) as c:  # the slot came back
        assert isinstance(c, Conn)
    assert pool.stats()["size"] == 1


def test_discard_closes_broken_resource():
    pool, closed = make_pool(max_size=1)
    lease = pool.acquire()
    lease.release(discard=True)
    assert closed == [lease.resource] and pool.stats()["size"] == 0


def test_idle_cleanup_with_fake_clock_keeps_min_size():
    clock = FakeClock()
    pool, closed = make_pool(min_size=1, default_size=3, max_size=5, idle_timeout="10s",
                             clock=clock)
    assert pool.stats()["size"] == 3
    clock.advance(5)
    assert pool.maintain()["closed"] == 0
    clock.advance(6)
    assert pool.maintain()["closed"] == 2
    st = pool.stats()
    assert st["size"] == 1 and st["destroyed"] == 2 and len(closed) == 2


def test_stale_resources_closed_lazily_on_acquire():
    clock = FakeClock()
    pool, closed = make_pool(default_size=2, max_size=4, idle_timeout=1.0, clock=clock)
    old = [slot[0] for slot in pool._idle]
    clock.advance(2)
    with pool.acquire() as c:
        assert c not in old
    assert sorted(c.id for c in closed) == sorted(c.id for c in old)


def test_scale_up_under_load_and_down_when_quiet():
    clock = FakeClock()
    pool, closed = make_pool(default_size=1, max_size=6, scale_down_after=5, clock=clock)
    leases = [pool.acquire(timeout=1) for _ in range(4)]  # demand grows it past default
    assert pool.stats()["size"] == 4
    assert pool.maintain()["created"] == 1  # utilization 1.0 > 0.8: one step ahead
    assert pool.stats()["size"] == 5
    for lease in leases:
        lease.release()
    pool.maintain()  # utilization 0: starts the quiet period
    clock.advance(6)
    pool.maintain()
    assert pool.stats()["size"] == 1 and len(closed) == 4


def test_shrink_frees_weighed_bytes_and_respects_min():
    pool = ResourcePool(Conn, min_size=1, default_size=4, max_size=4, weigher=lambda c: 100,
                        register=False)
    assert pool.shrink(0.5) == 200
    assert pool.shrink(1.0) == 100  # never below min_size
    assert pool.stats()["size"] == 1


def test_configure_validates_and_reports_changes():
    pool, closed = make_pool(default_size=4, max_size=8)
    assert pool.configure({"max_size": 6, "idle_timeout": "2m"}) == \
        {"max_size": 6, "idle_timeout": 120.0}
    with pytest.raises(ValueError):
        pool.configure({"min_size": 5, "max_size": 3})
    assert pool.max_size == 6
    pool.configure({"max_size": 2, "default_size": 2})
    assert pool.stats()["size"] == 2 and len(closed) == 2


SETTINGS = ("min_size", "default_size", "max_size", "idle_timeout", "scale_up_threshold",
            "scale_down_threshold", "scale_down_after", "maintain_interval")


@pytest.mark.parametrize("values, key", [
    ({"max_size": 2.9}, "max_size"), ({"max_size": True}, "max_size"),
    ({"min_size": "1"}, "min_size"), ({"default_size": 1.5}, "default_size"),
    ({"maintain_interval": 0}, "maintain_interval"), ({"scale_down_after": 0}, "scale_down_after"),
    ({"idle_timeout": 0}, "idle_timeout"), ({"idle_timeout": "later"}, "idle_timeout"),
    ({"scale_up_threshold": 1.5}, "scale_up_threshold"),
    ({"scale_down_threshold": float("nan")}, "scale_down_threshold"),
    ({"scale_down_threshold": 0.9}, "scale_down_threshold"), ({"min_size": 5}, "min_size"),
    ({"min_size": 1, "max_size": 0}, "max_size"), ({"max_size": 6, "unrelated": 1}, "unrelated"),
])
def test_configure_rejects_bad_values_and_unknown_keys_changing_nothing(values, key):
    pool, closed = make_pool(default_size=2, max_size=4)
    before = {k: getattr(pool, k) for k in SETTINGS}
    with pytest.raises(ValueError, match=key):
        pool.configure(values)
    assert {k: getattr(pool, k) for k in SETTINGS} == before
    assert pool.stats()["size"] == 2 and closed == []


def test_raising_min_or_default_size_creates_the_resources_at_once():
    pool, _ = make_pool(min_size=0, default_size=0, max_size=5)
    assert pool.configure({"min_size": 3}) == {"min_size": 3, "default_size": 3}
    assert pool.stats()["size"] == 3 and pool.stats()["idle"] == 3
    assert pool.configure({"default_size": 4}) == {"default_size": 4}
    assert pool.stats()["size"] == 4 and pool.stats()["created"] == 4


def test_failed_top_up_on_configure_keeps_the_setting_and_maintain_retries():
    up = [False]

    def factory():
        if not up[0]:
            raise ConnectionError("db down")
        return Conn()

    pool = ResourcePool(factory, max_size=5, register=False)
    assert pool.configure({"min_size": 2}) == {"min_size": 2, "default_size": 2}
    assert pool.stats()["size"] == 0 and pool.fill_errors == 1
    up[0] = True
    assert pool.maintain()["created"] == 2 and pool.stats()["size"] == 2


def test_maintain_from_another_thread_while_others_borrow():
    alive = set()
    peak = [0]
    guard = threading.Lock()

    class Res:
        def __init__(self):
            with guard:
                alive.add(self)
                peak[0] = max(peak[0], len(alive))

    def close(res):
        with guard:
            alive.discard(res)

    pool = ResourcePool(Res, close=close, min_size=1, default_size=2, max_size=4,
                        idle_timeout="5ms", scale_down_after="5ms", maintain_interval="1ms",
                        register=False)
    stop = threading.Event()
    errors = []
    ticks = [0]

    def ticker():  # the agent's periodic maintain(), much faster than once a second
        try:
            while not stop.is_set():
                pool.maintain()
                ticks[0] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def borrower(i):
        try:
            for n in range(400):
                with pool.acquire(timeout=10):
                    if n % 50 == i:
                        time.sleep(0.001)
                if n % 100 == 0:
                    time.sleep(0.01)  # let idle ones expire
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ticker)] + \
        [threading.Thread(target=borrower, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(60)
    stop.set()
    threads[0].join(10)
    assert not errors, errors
    st = pool.stats()
    assert ticks[0] > 10 and st["in_use"] == 0 and st["creating"] == 0
    assert peak[0] <= 4, "more than max_size resources alive at once"
    assert st["created"] - st["destroyed"] == st["size"] == len(alive) >= 1
    pool.close()
    assert alive == set() and pool.stats()["size"] == 0


def test_maintain_with_nothing_to_do_changes_nothing():
    pool, closed = make_pool(min_size=2, max_size=4)
    before = pool.stats()
    for _ in range(100):
        assert pool.maintain() == {"closed": 0, "created": 0}
    after = pool.stats()
    assert (after["size"], after["created"], after["destroyed"]) == \
        (before["size"], before["created"], before["destroyed"]) and not closed


def test_close_closes_idle_now_and_in_use_on_release():
    pool, closed = make_pool(default_size=2, max_size=3)
    lease = pool.acquire()
    pool.close()
    assert len(closed) == 1
    with pytest.raises(PoolClosed):
        pool.acquire()
    lease.release()
    assert len(closed) == 2


def test_hammer_never_exceeds_max_and_never_shares():
    pool, _ = make_pool(max_size=4, min_size=1, validate=lambda c: not c.closed)
    errors = []
    busy = set()
    guard = threading.Lock()

    def worker():
        try:
            for _ in range(300):
                with pool.acquire(timeout=10) as c:
                    with guard:
                        assert c.id not in busy, "resource lent twice"
                        busy.add(c.id)
                        assert pool.size <= 4
                    c.users += 1
                    with guard:
                        busy.discard(c.id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    st = pool.stats()
    assert st["in_use"] == 0 and st["size"] <= 4 and st["created"] <= 4
    assert st["acquires"] == 12 * 300


def test_registration_shows_in_agent_registry():
    pool = ResourcePool(Conn, name="test-pool-reg")
    try:
        collected = memtui.agent.registry().collect()
        assert collected[pool.name]["kind"] == "pool"
        assert set(SHAPES["pool"]) <= set(collected[pool.name]["stats"])
    finally:
        memtui.agent.unregister(pool)
