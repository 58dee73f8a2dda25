"""Tuner: recorded sample windows give the expected recommendation with its evidence and a
bounded suggestion; healthy windows give none; the agent serves it as ``tuner.recommend`` over its socket."""
from __future__ import annotations

import json

import pytest

from memtui.agent import AgentOptions
from memtui.agent.core import HISTORY_FIELDS, Agent
from memtui.client import AgentClient
from memtui.runtime.tuner import LIMITS, Recommendation, recommend

from conftest import wait_for

MACHINE = {"cpu_count": 4, "ram_bytes": 8 * 1024 ** 3}


def window(series, rows=None):
    """A history window: {name: (kind, [stats per sample])} plus optional history row dicts."""
    n = max([len(s) for _, s in series.values()] + [len(rows or [])])
    comps = [{"seq": i + 1, "components": {name: {"kind": kind, "stats": stats[i]}
                                           for name, (kind, stats) in series.items()
                                           if i < len(stats)}} for i in range(n)]
    table = [[r.get(f) for f in HISTORY_FIELDS] for r in (rows or [])]
    return {"fields": list(HISTORY_FIELDS), "rows": table, "components": comps}


def cache_samples(n=10, hit_step=10, miss_step=30, ev_step=30, entries=1000, max_entries=1000,
                  nbytes=None, max_bytes=None):
    return [{"policy": "lru", "entries": entries, "max_entries": max_entries, "bytes": nbytes,
             "max_bytes": max_bytes, "hits": i * hit_step, "misses": i * miss_step,
             "evictions": {"size": i * ev_step, "expired": 0}} for i in range(n)]


def only(recs, component):
    found = [r for r in recs if r.component == component]
    assert len(found) == 1, recs
    return found[0]


# -- caches -------------------------------------------------------------------------------------
def test_small_thrashing_cache_is_told_to_grow_with_evidence():
    recs = recommend(window({"users": ("cache", cache_samples())}), machine=MACHINE)
    r = only(recs, "users")
    assert (r.kind, r.setting, r.current, r.suggested, r.severity) == (
        "cache", "max_entries", 1000, 2000, "warning")
    assert r.evidence["hit_rate"] == pytest.approx(0.25)
    assert r.evidence["size_evictions"] == 270 and r.evidence["lookups"] == 360
    assert "25%" in r.reason and "60%" in r.reason
    json.dumps(r.to_dict())  # crosses the socket as JSON


def test_byte_bounded_cache_growth_is_capped_by_a_share_of_ram():
    gib = 1024 ** 3
    samples = cache_samples(entries=10, max_entries=None, nbytes=gib, max_bytes=gib)
    r = only(recommend(window({"blobs": ("cache", samples)}), machine=MACHINE), "blobs")
    assert (r.setting, r.current, r.suggested) == ("max_bytes", gib, 2 * gib)
    samples = cache_samples(entries=10, max_entries=None, nbytes=1.5 * gib, max_bytes=1.5 * gib)
    r = only(recommend(window({"blobs": ("cache", samples)}), machine=MACHINE), "blobs")
    assert r.suggested == 2 * gib == r.evidence["bound"]  # a quarter of 8 GiB, not 3 GiB
    # already at the bound: nothing sensible to suggest, so nothing is said
    samples = cache_samples(entries=10, max_entries=None, nbytes=2 * gib, max_bytes=2 * gib)
    assert recommend(window({"blobs": ("cache", samples)}), machine=MACHINE) == []


def test_entry_bound_growth_uses_average_entry_size_against_ram():
    samples = cache_samples(entries=1000, max_entries=1000, nbytes=1000 * 1024 ** 2)  # 1 MiB each
    r = only(recommend(window({"c": ("cache", samples)}), machine=MACHINE), "c")
    assert r.setting == "max_entries" and r.suggested == 2000  # 2 GiB = a quarter of 8 GiB
    big = cache_samples(entries=1000, max_entries=1000, nbytes=1500 * 1024 ** 2)
    r = only(recommend(window({"c": ("cache", big)}), machine=MACHINE), "c")
    assert r.suggested == 1365 and r.evidence["bound"] == 1365  # 2 GiB / 1.5 MiB


def test_healthy_or_quiet_caches_get_no_recommendation():
    good = cache_samples(hit_step=90, miss_step=10, ev_step=10, entries=700)  # 90% hits
    no_evictions = cache_samples(ev_step=0)  # low hit rate, but not for lack of room
    quiet = cache_samples(hit_step=1, miss_step=2)  # 27 lookups: says nothing
    short = cache_samples(n=2)
    series = {"good": ("cache", good), "cold": ("cache", no_evictions),
              "quiet": ("cache", quiet), "short": ("cache", short)}
    assert recommend(window(series), machine=MACHINE) == []


def test_a_cache_with_a_high_hit_rate_and_headroom_may_shrink():
    samples = cache_samples(hit_step=99, miss_step=1, ev_step=0, entries=100, max_entries=10000)
    r = only(recommend(window({"cfg": ("cache", samples)}), machine=MACHINE), "cfg")
    assert (r.severity, r.setting, r.current, r.suggested) == ("info", "max_entries", 10000, 200)
    assert r.evidence["peak"] == 100


def test_settings_override_what_the_stats_say():
    recs = recommend(window({"users": ("cache", cache_samples())}),
                     settings={"users": {"max_entries": 1500}}, machine=MACHINE)
    assert (recs[0].current, recs[0].suggested) == (1500, 3000)


def test_lru_cache_adapter_shape_with_int_evictions_is_understood():
    samples = cache_samples()
    for s in samples:
        s["evictions"] = s["evictions"]["size"]
    assert only(recommend(window({"f": ("cache", samples)}), machine=MACHINE), "f").suggested


# -- pools --------------------------------------------------------------------------------------
def pool_samples(waiters, in_use, max_size=10, timeouts=None):
    return [{"size": max_size, "in_use": u, "idle": max_size - u, "waiters": w,
             "max_size": max_size,
             "timeouts": (timeouts or [0] * len(waiters))[i], "wait_p95_ms": 120.0}
            for i, (w, u) in enumerate(zip(waiters, in_use))]


def test_pool_with_waiters_at_its_max_is_told_to_grow_bounded():
    samples = pool_samples([0, 2, 3, 4, 4, 6], [9, 10, 10, 10, 10, 10])
    r = only(recommend(window({"db": ("pool", samples)}), machine=MACHINE), "db")
    assert (r.setting, r.current, r.suggested, r.severity) == ("max_size", 10, 16, "warning")
    assert r.evidence["samples_with_waiters"] == 5 and r.evidence["peak_waiters"] == 6
    timeouts = pool_samples([3] * 5, [10] * 5, max_size=900, timeouts=[0, 1, 2, 4, 4])
    for s in timeouts:
        s["in_use"] = 900
    r = only(recommend(window({"db": ("pool", timeouts)}), machine=MACHINE), "db")
    assert r.severity == "critical" and r.suggested == LIMITS["pool_max_size"]
    assert r.evidence["timeouts"] == 4


def test_pool_with_occasional_waiters_or_headroom_is_left_alone():
    spikes = pool_samples([0, 0, 3, 0, 0, 0], [10] * 6)
    roomy = pool_samples([1] * 6, [5] * 6)
    assert recommend(window({"a": ("pool", spikes), "b": ("pool", roomy)}), machine=MACHINE) == []


# -- workers ------------------------------------------------------------------------------------
def worker_samples(queued, max_workers=4, queue_size=None, executor="thread", rejected=0):
    return [{"active": max_workers, "queued": q, "queue_size": queue_size,
             "max_workers": max_workers, "executor": executor, "rejected": rejected * i}
            for i, q in enumerate(queued)]


def test_backing_up_thread_pool_gets_more_workers_bounded_by_cpus():
    r = only(recommend(window({"w": ("workers", worker_samples([0, 5, 12, 30, 44]))}),
                       machine=MACHINE), "w")
    assert (r.setting, r.current, r.suggested) == ("max_workers", 4, 8)
    assert r.evidence["queued_last"] == 44 and "grew from 0 to 44" in r.reason
    r = only(recommend(window({"w": ("workers", worker_samples([0, 5, 12, 30, 44], 12))}),
                       machine=MACHINE), "w")
    assert r.suggested == 16 and r.evidence["bound"] == 16  # 4 CPUs x 4
    procs = worker_samples([1, 20, 40], max_workers=4, executor="process", queue_size=50,
                           rejected=1)
    r = only(recommend(window({"p": ("workers", procs)}), machine=MACHINE), "p")
    assert (r.setting, r.suggested, r.severity) == ("queue_size", 100, "critical")


def test_full_queue_without_worker_bound_suggests_queue_size_or_consumers():
    q = [{"queued": v, "queue_size": 100, "max_workers": None} for v in (85, 84, 86)]
    r = only(recommend(window({"q": ("workers", q)}), machine=MACHINE), "q")
    assert (r.setting, r.current, r.suggested) == ("queue_size", 100, 200)
    unbounded = [{"queued": v, "queue_size": None} for v in (10, 50, 90)]
    r = only(recommend(window({"u": ("workers", unbounded)}), machine=MACHINE), "u")
    assert r.setting == "consumers" and r.suggested is None


def test_steady_or_draining_queues_get_nothing():
    series = {"steady": ("workers", worker_samples([3, 4, 3, 4, 3])),
              "draining": ("workers", worker_samples([90, 60, 20, 5])),
              "small": ("workers", worker_samples([0, 1, 2, 3, 4]))}
    assert recommend(window(series), machine=MACHINE) == []


# -- gc -----------------------------------------------------------------------------------------
def gc_rows(pauses, gen0_step=10, gen2_step=0):
    return [{"seq": i + 1, "t": 1000.0 + i, "gc_pause_max_ms": p, "collections0": i * gen0_step,
             "collections2": i * gen2_step} for i, p in enumerate(pauses)]


def test_long_gc_pauses_suggest_freeze_and_frequent_collections_a_higher_threshold():
    rows = gc_rows([5, 80, 90, 120, 70, 85], gen0_step=200, gen2_step=1)
    recs = recommend(window({}, rows), settings={"gc": {"threshold": [700, 10, 10],
                                                        "frozen": False}}, machine=MACHINE)
    freeze = next(r for r in recs if r.setting == "gc.freeze")
    assert freeze.suggested is True and freeze.evidence["pause_p95_ms"] == 120
    thr = next(r for r in recs if r.setting == "gc.threshold0")
    assert (thr.current, thr.suggested, thr.severity) == (700, 2000, "info")
    assert thr.evidence["gen2_collections"] == 5
    assert [r.severity for r in recs] == ["warning", "info"]  # most severe first


def test_short_pauses_or_an_already_frozen_heap_give_no_gc_advice():
    calm = gc_rows([1, 2, 3, 2, 1])
    assert recommend(window({}, calm), settings={"gc": {"threshold": [700, 10, 10]}},
                     machine=MACHINE) == []
    slow = gc_rows([80] * 5)
    assert recommend(window({}, slow), settings={"gc": {"frozen": True}}, machine=MACHINE) == []


def test_recommendation_is_immutable_and_deterministic():
    w = window({"users": ("cache", cache_samples()), "db": ("pool", pool_samples(
        [2] * 5, [10] * 5))})
    assert recommend(w, machine=MACHINE) == recommend(w, machine=MACHINE)
    r = recommend(w, machine=MACHINE)[0]
    assert isinstance(r, Recommendation)
    with pytest.raises(AttributeError):
        r.suggested = 1  # type: ignore[misc]


# -- from a real agent --------------------------------------------------------------------------
class ThrashingCache:
    """A custom component reporting like a cache that is too small for its traffic."""

    kind = "cache"
    name = "thrash"

    def __init__(self):
        self.n = 0

    def stats(self):
        self.n += 1
        return {"entries": 100, "max_entries": 100, "hits": self.n * 5, "misses": self.n * 20,
                "evictions": {"size": self.n * 20}}


def test_a_recorded_agent_history_drives_the_tuner():
    agent = Agent(AgentOptions(serve=False))
    comp = ThrashingCache()
    agent.registry.register(comp)
    for _ in range(6):
        agent.sample(record=True)
    r = only(recommend(agent.history(components=True), machine=MACHINE), "thrash")
    assert (r.setting, r.current, r.suggested) == ("max_entries", 100, 200)
    assert r.evidence["samples"] == 6 and r.evidence["hit_rate"] == pytest.approx(0.2)


def test_tuner_recommend_op_over_a_real_socket(start_target):
    t = start_target(script="tuner_target.py")
    assert t.send("warm 400") == "ok"
    with AgentClient(pid=t.pid) as client:
        assert "tuner.recommend" in client.request("hello")["ops"]
        for _ in range(3):
            assert t.send("churn 400").startswith("ok")

        def small_rec():
            recs = client.request("tuner.recommend", window=40)
            return [r for r in recs if r["component"] == "small"] and recs

        recs = wait_for(small_rec, timeout=20, message="a recommendation for 'small'")
        rec = next(r for r in recs if r["component"] == "small")
        assert (rec["kind"], rec["setting"], rec["current"], rec["suggested"]) == (
            "cache", "max_entries", 50, 100)
        assert rec["evidence"]["hit_rate"] < 0.6 and rec["evidence"]["size_evictions"] > 0
        assert not [r for r in recs if r["component"] == "healthy"]
        with pytest.raises(Exception, match="window"):
            client.request("tuner.recommend", window=0)
