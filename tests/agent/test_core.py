"""Agent internals in this process, with no socket: registry, history ring, alerts, options."""
from __future__ import annotations

import gc
import weakref

import pytest

from memtui.agent import AgentOptions, ComponentRegistry, parse_duration, parse_size
from memtui.agent.core import HISTORY_FIELDS, Agent, TokenBucket


class Comp:
    kind = "cache"

    def __init__(self, name="c", fail=False):
        self.name = name
        self.fail = fail

    def stats(self):
        if self.fail:
            raise RuntimeError("boom")
        return {"hits": 1, "ratio": float("nan")}


def test_registry_holds_weakly_and_forgets_dead_components():
    reg = ComponentRegistry()
    c = Comp()
    assert reg.register(c) == "c"
    ref = weakref.ref(c)
    del c
    gc.collect()
    assert ref() is None
    assert reg.collect() == {} and len(reg) == 0


def test_registry_names_are_unique_and_reregistering_is_idempotent():
    reg = ComponentRegistry()
    a, b = Comp("x"), Comp("x")
    assert reg.register(a) == "x"
    assert reg.register(b) == "x#2"
    assert reg.register(a) == "x"
    assert reg.unregister("x#2") and reg.names() == ["x"]


def test_broken_component_is_reported_not_raised():
    reg = ComponentRegistry()
    good, bad = Comp("good"), Comp("bad", fail=True)
    reg.register(good)
    reg.register(bad)
    out = reg.collect()
    assert out["good"]["stats"]["hits"] == 1
    assert out["bad"]["error"] == "RuntimeError: boom" and out["bad"]["errors"] == 1


def test_registry_rejects_what_it_cannot_watch_safely():
    reg = ComponentRegistry()
    with pytest.raises(TypeError, match="stats"):
        reg.register(object())

    class Slotted:
        __slots__ = ("name",)

        def stats(self):
            return {}

    with pytest.raises(TypeError, match="strong=True"):
        reg.register(Slotted())
    assert reg.register(Slotted(), name="kept", strong=True) == "kept"
    gc.collect()
    assert "kept" in reg.collect()


def _agent(**kw) -> Agent:
    return Agent(AgentOptions(serve=False, **kw))


def test_history_ring_is_bounded_and_columnar():
    agent = _agent(history=10, component_history=3)
    agent.registry.register(c := Comp())
    for _ in range(25):
        agent.sample(record=True)
    h = agent.history(components=True)
    assert h["fields"] == list(HISTORY_FIELDS)
    assert [r[0] for r in h["rows"]] == list(range(16, 26))
    assert [c_["seq"] for c_ in h["components"]] == [23, 24, 25]
    assert agent.history(since=23)["rows"][0][0] == 24
    expanded = h["components"][-1]["components"]["c"]
    assert expanded["kind"] == "cache" and expanded["stats"]["hits"] == 1
    rss = h["rows"][-1][HISTORY_FIELDS.index("rss")]
    assert rss > 1 << 20
    del c


def _levels(agent: Agent, rss_values):
    out = []
    for rss in rss_values:
        agent._check_memory(rss)
        out.append(agent.level)
    return out


def test_memory_alerts_fire_escalate_and_clear_with_hysteresis():
    agent = _agent(memory_limit=1000, warning_pct=80, critical_pct=95, hysteresis_pct=5)
    seq = [500, 800, 790, 760, 740, 950, 930, 900, 890, 700]
    assert _levels(agent, seq) == ["ok", "warning", "warning", "warning", "ok", "critical",
                                   "critical", "critical", "warning", "ok"]
    ev = [e for e in agent.events.since(0)["events"] if e["kind"] == "alert"]
    assert [(e["severity"], e["data"]["state"]) for e in ev] == [
        ("warning", "warning"), ("info", "ok"), ("critical", "critical"), ("warning", "warning"),
        ("info", "ok")]
    assert "80.0% of the 1000 B limit (configured)" in ev[0]["message"]
    assert [e["seq"] for e in ev] == sorted(e["seq"] for e in ev)


def test_events_since_reports_missed_when_ring_overflows():
    agent = _agent(events=5)
    for i in range(12):
        agent.events.emit("x", "info", "m%d" % i)
    got = agent.events.since(0)
    assert [e["message"] for e in got["events"]] == ["m7", "m8", "m9", "m10", "m11"]
    assert got["missed"] == 7 and got["last_seq"] == 12
    assert agent.events.since(10)["missed"] == 0


def test_token_bucket_limits_bursts_then_refills():
    b = TokenBucket(burst=2, rate=1000.0)
    assert b.take() == 0 and b.take() == 0
    slow = TokenBucket(burst=1, rate=0.001)
    assert slow.take() == 0 and slow.take() > 100


@pytest.mark.parametrize("text,value", [("512MiB", 512 << 20), ("1.5GB", 1_500_000_000),
                                        (4096, 4096), ("10 kb", 10_000)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text,value", [("250ms", 0.25), ("90s", 90.0), ("2m", 120.0), (3, 3.0)])
def test_parse_duration(text, value):
    assert parse_duration(text) == value


def test_options_name_the_bad_key():
    with pytest.raises(ValueError, match="memory_limit"):
        AgentOptions.from_mapping({"memory_limit": "lots"})
    with pytest.raises(ValueError, match="unknown agent option 'intervl'"):
        AgentOptions.from_mapping({"intervl": 1})
    with pytest.raises(ValueError, match="warning_pct < critical_pct"):
        AgentOptions.from_mapping({"warning_pct": 96})
    assert AgentOptions.from_mapping({"interval": "500ms", "signal": "USR1"}).interval == 0.5


def test_malformed_mutating_request_spends_no_rate_limit_token():
    from memtui.agent import ops

    agent = _agent(mutations_burst=1, mutations_per_s=0.001)
    bad = ops.dispatch(agent, {"id": 1, "op": "gc.collect", "args": {"generation": "x" * 500}}, {})
    assert bad["error"]["code"] == "bad_args" and len(bad["error"]["message"]) < 200
    assert ops.dispatch(agent, {"id": 2, "op": "gc.collect"}, {})["ok"] is True
    limited = ops.dispatch(agent, {"id": 3, "op": "gc.collect"}, {})
    assert limited["error"]["code"] == "rate_limited" and limited["error"]["retry_after_s"] > 0
    assert ops.dispatch(agent, {"id": 4, "op": "stats", "args": None}, {})["ok"] is True
    assert ops.dispatch(agent, {"id": 5, "op": "stats", "args": []}, {})["error"]["code"] == "bad_args"


@pytest.mark.parametrize("bad", [{"interval": float("nan")}, {"interval": float("inf")},
                                 {"interval": 0.001}, {"memory_limit": 1e400},
                                 {"memory_limit": "1e400GB"}, {"warning_pct": float("nan")},
                                 {"signal": "KILL"}, {"signal": "SEGV"}, {"signal": 9999}])
def test_options_reject_values_that_would_spin_or_crash_the_host(bad):
    with pytest.raises(ValueError):
        AgentOptions.from_mapping(bad)


def test_gc_pauses_are_timed_per_generation_and_folded_on_read():
    from memtui.agent.collectors.heap import HeapCollector

    h = HeapCollector()
    h.install()
    try:
        for _ in range(3):
            gc.collect(2)
        gc.collect(0)
    finally:
        h.uninstall()
    gc.collect()  # after uninstall: not timed
    out = h.collect()["gc"]["pause_ms"]
    assert out["timed"][2] == 3 and out["timed"][0] >= 1
    assert out["max"][2] >= out["last"] >= 0 and out["total"][2] > 0
    assert h.take_window_max() > 0 and h.take_window_max() == 0


def test_sampler_ticks_maintain_and_contains_its_errors():
    ticks = []

    class Ticking(Comp):
        def maintain(self):
            ticks.append(1)

    class Broken(Comp):
        def maintain(self):
            raise RuntimeError("tick failed")

    agent = _agent(interval=0.02)
    good, bad = Ticking("good"), Broken("bad")
    agent.registry.register(good)
    agent.registry.register(bad)
    agent.start()
    try:
        import time

        deadline = time.monotonic() + 5
        while len(ticks) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        agent.stop()
    assert len(ticks) >= 3
    assert any(where == "maintain bad" for _, where, _ in agent.errors)
