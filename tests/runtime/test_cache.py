"""Cache: a reference-model state machine, bounds, eviction causes, expiry, LFU, loads, threads,
pressure, live retuning, stats and registration."""
from __future__ import annotations

import gc
import random
import sys
import threading
import time
from collections import OrderedDict

import pytest

from conftest import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import memtui.agent
from memtui.runtime._stats import EVICTION_CAUSES, SHAPES
from memtui.runtime.cache import Cache, cached




def recorder():
    events = []
    return events, lambda k, v, cause: events.append((k, v, cause))


# -- the LRU cache against an OrderedDict model --------------------------------------------------
class LRUMachine(RuleBasedStateMachine):
    N = 5

    def __init__(self) -> None:
        super().__init__()
        self.events, listener = recorder()
        self.cache = Cache(policy="lru", max_entries=self.N, on_evict=listener, register=False)
        self.model: "OrderedDict[int, int]" = OrderedDict()
        self.expected_events = []

    keys = st.integers(0, 9)

    @rule(key=keys, value=st.integers())
    def set(self, key, value):
        self.cache.set(key, value)
        if key in self.model:
            old = self.model[key]
            if old is not value:
                self.expected_events.append((key, old, "replaced"))
            self.model.move_to_end(key)
        self.model[key] = value
        if len(self.model) > self.N:
            k, v = self.model.popitem(last=False)
            self.expected_events.append((k, v, "size"))

    @rule(key=keys)
    def get(self, key):
        got = self.cache.get(key, "absent")
        if key in self.model:
            self.model.move_to_end(key)
            assert got == self.model[key]
        else:
            assert got == "absent"

    @rule(key=keys)
    def delete(self, key):
        assert self.cache.delete(key) == (key in self.model)
        if key in self.model:
            self.expected_events.append((key, self.model.pop(key), "explicit"))

    @rule(key=keys)
    def contains(self, key):
        assert (key in self.cache) == (key in self.model)

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def clear(self):
        self.cache.clear()
        self.expected_events.extend((k, v, "explicit") for k, v in self.model.items())
        self.model.clear()

    @invariant()
    def same_contents_and_order(self):
        assert len(self.cache) == len(self.model)
        assert list(self.cache._data.items()) == list(self.model.items())
        assert self.events == self.expected_events


TestLRUModel = LRUMachine.TestCase
TestLRUModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# -- bounds --------------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(budget=st.integers(50, 5000),
       ops=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3000)), min_size=1, max_size=120))
def test_byte_budget_never_exceeded(budget, ops):
    events, listener = recorder()
    cache = Cache(max_bytes=budget, weigher=lambda k, v: len(v), on_evict=listener, register=False)
    for key, size in ops:
        cache.set(key, "x" * size)
        stats = cache.stats()
        assert stats["bytes"] <= budget
        assert stats["bytes"] == sum(len(v) for v in cache._data.values())
        if size > budget:
            assert cache.get(key) is None
            assert events[-1] == (key, "x" * size, "size")
        else:
            assert cache.get(key) == "x" * size


def test_sizes_and_durations_accept_units():
    cache = Cache(max_bytes="2KiB", ttl="1m", tti="250ms", register=False)
    assert (cache._max_bytes, cache._ttl, cache._tti) == (2048, 60.0, 0.25)
    with pytest.raises(ValueError):
        Cache(max_bytes="lots", register=False)
    with pytest.raises(ValueError):
        Cache(policy="ttl", register=False)  # a ttl policy needs a ttl
    with pytest.raises(ValueError):
        Cache(policy="mru", register=False)


def test_default_weigher_is_getsizeof_of_key_and_value():
    cache = Cache(register=False)
    cache.set("k", b"v" * 100)
    assert cache.stats()["bytes"] == sys.getsizeof("k") + sys.getsizeof(b"v" * 100)


# -- eviction causes -----------------------------------------------------------------------------
def test_every_eviction_cause_reported():
    clock = FakeClock()
    events, listener = recorder()
    cache = Cache(max_entries=2, ttl=10, on_evict=listener, clock=clock, register=False)
    cache.set("a", 1)
    cache.set("a", 2)                       # replaced
    cache.set("b", 3)
    cache.set("c", 4)                       # a evicted for size
    cache.delete("b")                       # explicit
    clock.advance(11)
    assert cache.get("c") is None           # expired
    cache.set("d", 5)
    assert cache.shrink(1.0) > 0            # pressure
    assert events == [("a", 1, "replaced"), ("a", 2, "size"), ("b", 3, "explicit"),
                      ("c", 4, "expired"), ("d", 5, "pressure")]
    assert cache.stats()["evictions"] == dict.fromkeys(EVICTION_CAUSES, 1)


def test_listener_runs_outside_the_lock_and_its_errors_are_contained():
    seen = []

    def listener(k, v, cause):
        seen.append(cache.get("other", "reentrant ok"))  # would deadlock under the lock
        raise RuntimeError("broken listener")

    cache = Cache(max_entries=1, on_evict=listener, register=False)
    cache.set("a", 1)
    cache.set("b", 2)
    assert seen == ["reentrant ok"]
    assert cache.stats()["listener_errors"] == 1 and cache.get("b") == 2


# -- expiry --------------------------------------------------------------------------------------
def test_ttl_expires_after_write_not_after_reads():
    clock = FakeClock()
    cache = Cache(policy="ttl", ttl=10, clock=clock, register=False)
    cache.set("k", "v")
    for _ in range(3):
        clock.advance(3)
        assert cache.get("k") == "v"        # reads do not extend a ttl
    clock.advance(1.5)
    assert "k" not in cache and cache.get("k") is None
    cache.set("k", "v2")                     # a write restarts it
    clock.advance(9)
    assert cache.get("k") == "v2"


def test_tti_expires_after_idle_and_reads_extend_it():
    clock = FakeClock()
    for policy in ("lru", "lfu"):
        cache = Cache(policy=policy, tti=5, clock=clock, register=False)
        cache.set("k", "v")
        for _ in range(4):
            clock.advance(4)
            assert cache.get("k") == "v"
        clock.advance(5)
        assert cache.get("k") is None
        assert cache.stats()["evictions"]["expired"] == 1


def test_expired_entries_are_swept_without_being_read():
    clock = FakeClock()
    events, listener = recorder()
    cache = Cache(ttl=5, on_evict=listener, clock=clock, register=False)
    for i in range(10):
        cache.set(i, i)
    clock.advance(6)
    assert cache.expire() == 10 and len(cache) == 0 and cache.stats()["bytes"] == 0
    assert [e[2] for e in events] == ["expired"] * 10


# -- LFU -----------------------------------------------------------------------------------------
def test_lfu_evicts_least_frequent_ties_by_recency():
    cache = Cache(policy="lfu", max_entries=3, register=False)
    for k in "abc":
        cache.set(k, k)
    for _ in range(3):
        cache.get("a")
    cache.get("b")
    cache.set("d", "d")                      # c was used least: evicted
    assert "c" not in cache and all(k in cache for k in "abd")
    cache.get("d")                           # b and d both count 2; b is the older
    cache.set("e", "e")
    assert "b" not in cache and all(k in cache for k in "ade")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("gs"), st.integers(0, 7)), max_size=80))
def test_lfu_matches_a_counting_model(ops):
    cache = Cache(policy="lfu", max_entries=4, register=False)
    counts, last, tick = {}, {}, 0
    for op, key in ops:
        tick += 1
        if op == "g":
            assert (cache.get(key) is not None) == (key in counts)
            if key in counts:
                counts[key] += 1
                last[key] = tick
        else:
            if key not in counts and len(counts) == 4:
                victim = min(counts, key=lambda k: (counts[k], last[k]))
                del counts[victim], last[victim]
            counts[key] = counts.get(key, 0) + 1
            last[key] = tick
            cache.set(key, key + 1)
        assert sorted(cache._data) == sorted(counts)


# -- get_or_load ---------------------------------------------------------------------------------
def test_get_or_load_loads_once_for_16_concurrent_misses():
    cache = Cache(register=False)
    calls, barrier = [], threading.Barrier(16)
    release = threading.Event()

    def loader(key):
        calls.append(key)
        release.wait(5)
        return key * 2

    results = []

    def worker():
        barrier.wait()
        results.append(cache.get_or_load(21, loader))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while cache.stats()["misses"] < 16 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for t in threads:
        t.join(5)
    assert calls == [21] and results == [42] * 16
    stats = cache.stats()
    assert stats["loads"] == 1 and stats["load_time_ms"] > 0 and cache.get(21) == 42


def test_get_or_load_error_reaches_every_waiter_and_is_not_cached():
    cache = Cache(register=False)
    started, release = threading.Event(), threading.Event()
    calls = []

    def failing(key):
        calls.append(key)
        started.set()
        release.wait(5)
        raise LookupError("backend down")

    errors = []

    def worker():
        try:
            cache.get_or_load("k", failing)
        except LookupError as exc:
            errors.append(str(exc))

    first = threading.Thread(target=worker)
    first.start()
    started.wait(5)
    others = [threading.Thread(target=worker) for _ in range(5)]
    for t in others:
        t.start()
    time.sleep(0.05)
    release.set()
    for t in [first] + others:
        t.join(5)
    assert calls == ["k"] and errors == ["backend down"] * 6
    assert "k" not in cache and cache.stats()["load_errors"] == 1
    assert cache.get_or_load("k", lambda k: "fine") == "fine"


def test_a_write_during_a_load_wins():
    cache = Cache(register=False)

    def loader(key):
        cache.set(key, "written meanwhile")
        return "loaded"

    assert cache.get_or_load("k", loader) == "loaded"
    assert cache.get("k") == "written meanwhile"


def test_a_loader_loading_its_own_key_fails_at_once_instead_of_hanging():
    cache = Cache(register=False)
    errors = []

    @cached(register=False)
    def recursive(x):
        return recursive(x) + 1

    def run():
        for call in (lambda: cache.get_or_load("a", lambda k: cache.get_or_load(k, str) + "!"),
                     lambda: recursive(5)):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "deadlocked"
    assert errors == ["recursive load of key 'a' in cache cache",
                      "recursive load of key 5 in cache %s" % recursive.cache.name]
    assert cache.stats()["loading"] == 0 and cache.get_or_load("a", str) == "a"


def test_cached_decorator_memoizes_by_arguments():
    calls = []

    @cached("pair", max_entries=100, register=False)
    def pair(x, scale=1):
        calls.append((x, scale))
        return (x, scale)

    assert [pair(3), pair(3), pair(3, scale=2), pair(3, scale=2), pair((3,)), pair((3,))] \
        == [(3, 1), (3, 1), (3, 2), (3, 2), ((3,), 1), ((3,), 1)]
    assert calls == [(3, 1), (3, 2), ((3,), 1)]
    assert pair.cache.stats()["hits"] == 3 and pair.__name__ == "pair"
    pair.cache_clear()
    pair(3)
    assert len(calls) == 4


def test_cached_bare_decorator_computes_once_for_concurrent_calls():
    calls = []
    gate = threading.Barrier(8)

    @cached
    def slow(x):
        calls.append(x)
        time.sleep(0.05)
        return x + 1

    results = []
    threads = [threading.Thread(target=lambda: (gate.wait(), results.append(slow(1))))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert calls == [1] and results == [2] * 8
    assert slow.cache.name.endswith("slow")


# -- threads -------------------------------------------------------------------------------------
def test_threads_hammering_keep_every_invariant():
    events, listener = recorder()
    cache = Cache(max_entries=64, max_bytes=20_000, weigher=lambda k, v: len(v) + 8,
                  on_evict=listener, register=False)
    ops_per_thread, n_threads = 4000, 8
    gets = [0] * n_threads

    errors = []

    def worker(i):
        try:
            work(i)
        except Exception as exc:  # an assertion in a thread must fail the test
            errors.append(exc)

    def work(i):
        rnd = random.Random(i)
        for _ in range(ops_per_thread):
            key = rnd.randrange(200)
            r = rnd.random()
            if r < 0.45:
                value = cache.get(key)
                gets[i] += 1
                assert value is None or value == str(key) * (key % 7 + 1)
            elif r < 0.8:
                cache.set(key, str(key) * (key % 7 + 1))
            elif r < 0.95:
                expected = str(key) * (key % 7 + 1)
                assert cache.get_or_load(key, lambda k: str(k) * (k % 7 + 1)) == expected
                gets[i] += 1
            else:
                cache.delete(key)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    stats = cache.stats()
    assert stats["hits"] + stats["misses"] == sum(gets)
    assert stats["entries"] == len(cache._data) <= 64
    assert stats["bytes"] == sum(len(v) + 8 for v in cache._data.values()) <= 20_000
    assert set(cache._weights) == set(cache._data)
    assert stats["loading"] == 0
    assert sum(stats["evictions"].values()) == len(events)


def test_threads_hammering_lfu_and_ttl():
    clock_lock = threading.Lock()
    for kwargs in (dict(policy="lfu", max_entries=32), dict(policy="ttl", ttl=0.01, max_entries=32),
                   dict(policy="lru", tti=0.01, max_entries=32)):
        cache = Cache(register=False, **kwargs)

        def worker(i):
            rnd = random.Random(i)
            for _ in range(2000):
                key = rnd.randrange(100)
                if rnd.random() < 0.5:
                    cache.get(key)
                else:
                    cache.set(key, key)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with clock_lock:
            assert len(cache._data) <= 32 and set(cache._weights) == set(cache._data)
            if cache._lfu is not None:
                assert set(cache._lfu.freq) == set(cache._data)
            if cache._ttl is not None:
                assert set(cache._written) == set(cache._data)


# -- pressure, retuning, stats, registration -----------------------------------------------------
def test_shrink_frees_about_the_fraction_and_reports_bytes():
    cache = Cache(weigher=lambda k, v: 100, register=False)
    for i in range(100):
        cache.set(i, i)
    freed = cache.shrink(0.25)
    assert freed == 2500 and len(cache) == 75 and cache.stats()["bytes"] == 7500
    assert cache.stats()["evictions"]["pressure"] == 25
    assert 0 not in cache and 99 in cache    # least recently used went first
    assert cache.shrink(0.0) == 0


def test_configure_shrinks_at_once_and_reports_changes():
    events, listener = recorder()
    clock = FakeClock()
    cache = Cache(max_entries=100, on_evict=listener, clock=clock, register=False)
    for i in range(50):
        cache.set(i, i)
    changed = cache.configure({"max_entries": 10, "ttl": "30s"})
    assert changed == {"max_entries": 10, "ttl": 30.0}
    assert len(cache) == 10 and len(events) == 40 and list(cache._data) == list(range(40, 50))
    assert cache.configure({"max_entries": 10}) == {}
    assert cache.configure({"policy": "lfu"}) == {"policy": "lfu"}
    cache.get(45)
    cache.set(100, 100)
    assert 40 not in cache and 45 in cache
    clock.advance(31)
    assert cache.get(45) is None
    with pytest.raises(ValueError):
        cache.configure({"max_entries": -1, "ttl": 5})
    with pytest.raises(ValueError):
        cache.configure({"colour": "blue"})
    assert cache.stats()["ttl_s"] == 30.0   # nothing applied from a bad call


def test_stats_have_the_shared_shape():
    cache = Cache(max_entries=10, register=False)
    cache.set("a", 1)
    cache.get("a")
    cache.get("b")
    stats = cache.stats()
    assert set(SHAPES["cache"]) <= set(stats)
    assert stats["hit_rate"] == 0.5 and stats["tiers"] is None
    assert set(stats["evictions"]) == set(EVICTION_CAUSES)


def test_registered_with_the_agent_and_dropped_when_collected():
    reg = memtui.agent.registry()
    first = Cache(name="sessions")
    second = Cache(name="sessions")
    assert first.name == "sessions" and second.name == "sessions#2"
    first.set("k", "v")
    collected = reg.collect()
    assert collected["sessions"]["kind"] == "cache"
    assert collected["sessions"]["stats"]["entries"] == 1
    del first, second
    gc.collect()
    assert "sessions" not in reg.collect() and "sessions#2" not in reg.collect()
