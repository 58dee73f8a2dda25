"""Alerts, health and pressure actions: the monitor's logic on fake samples (deterministic), then
against real target processes whose real RSS, caches, pools and worker pools cross the lines."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT, wait_for
from memtui.agent import monitor
from memtui.agent.core import HISTORY_FIELDS, Agent
from memtui.agent.options import AgentOptions
from memtui.client import AgentClient, RemoteError
from memtui.config import profiles


# -- settings -------------------------------------------------------------------------------------
def test_defaults_equal_the_schema_defaults():
    schema = json.loads((ROOT / "memtui" / "config" / "schema.json").read_text())
    for key, default in monitor.DEFAULTS.items():
        node = schema
        for part in key.split("."):
            node = node["properties"][part]
        assert node["default"] == default, key
        assert node["x-applies"] == "agent", key
    prop = schema["properties"]
    listed = {"profiler." + k for k in prop["profiler"]["properties"]}
    listed |= {"alerts." + k for k in prop["alerts"]["properties"] if k != "pressure_actions"}
    listed |= {"alerts.pressure_actions." + k
               for k in prop["alerts"]["properties"]["pressure_actions"]["properties"]}
    assert listed == set(monitor.SETTING_KEYS) | set(monitor.OPTION_KEYS)


def test_read_parses_units_and_keeps_defaults_for_bad_or_unknown_keys():
    parsed, effective, problems = monitor.read({"profiler": {
        "memory_threshold": "1GiB", "gc_threshold": "5ms", "snapshot_interval": 0.3,
        "output_dir": ""}, "alerts": {"pressure_actions": {"shrink_fraction": 0.5}}})
    assert problems == []
    assert (parsed.memory_threshold, parsed.gc_threshold, parsed.snapshot_interval) == (
        1 << 30, 0.005, 0.3)
    assert parsed.output_dir is None and parsed.shrink_fraction == 0.5
    assert parsed.snapshot_cooldown == 300.0 and parsed.retention == 20
    assert effective["profiler.memory_threshold"] == "1GiB"
    parsed, _, problems = monitor.read({"alerts": {"pool_saturation": 2, "warning_pct": 70,
                                                   "colour": "red", "pressure_actions": 1},
                                        "profiler": {"snapshot_interval": "1ms",
                                                     "retention": True}})
    assert parsed.pool_saturation == 0.9 and parsed.snapshot_interval == 600.0
    text = " | ".join(problems)
    for words in ("alerts.pool_saturation: must be a fraction", "alerts.warning_pct is an agent "
                  "option", "alerts.colour: unknown key", "alerts.pressure_actions: must be a "
                  "table", "profiler.snapshot_interval: must be at least", "profiler.retention"):
        assert words in text, text


def test_changes_lists_effective_values_that_differ():
    assert monitor.changes({}, {"alerts": {"queue_backlog": 0.5, "pool_saturation": 0.9}}) == {
        "alerts.queue_backlog": [0.8, 0.5]}
    assert monitor.changes({"profiler": {"auto_snapshot": True}}, {}) == {
        "profiler.auto_snapshot": [True, False]}


def test_component_settings_hands_the_agent_explicit_profiler_and_alerts_keys(tmp_path):
    (tmp_path / "dev.toml").write_text(
        '[profiler]\ninterval = "2s"\nauto_snapshot = true\nmemory_threshold = "1GiB"\n'
        '[alerts]\nwarning_pct = 70\npool_saturation = 0.5\n'
        '[alerts.pressure_actions]\nshrink_fraction = 0.1\n')
    resolved = profiles.load("dev", str(tmp_path), environ={})
    out = profiles.component_settings(resolved)
    assert out["profiler"] == {"auto_snapshot": True, "memory_threshold": "1GiB"}
    assert out["alerts"] == {"pool_saturation": 0.5, "pressure_actions": {"shrink_fraction": 0.1}}
    assert monitor.read(out)[2] == []  # and the agent takes every key it is handed


# -- the monitor on fake samples ------------------------------------------------------------------
class Shrinks:
    kind = "cache"

    def __init__(self, name, freed=1000, fail=False):
        self.name, self.freed, self.fail, self.calls, self.entries = name, freed, fail, [], 100

    def stats(self):
        return {"entries": self.entries}

    def shrink(self, fraction):
        self.calls.append(fraction)
        if self.fail:
            raise RuntimeError("cannot shrink")
        self.entries = int(self.entries * (1 - fraction))
        return self.freed


class Throttles:
    kind = "workers"

    def __init__(self, name):
        self.name, self.on, self.calls = name, False, []

    def stats(self):
        return {}

    def throttle(self, on=True):
        self.calls.append(on)
        changed, self.on = self.on != on, on
        return changed


def _agent(settings=None, **kw):
    return Agent(AgentOptions(serve=False, **kw), settings=settings)


def _events(agent, kind, since=0):
    return [e for e in agent.events.since(since, 1000)["events"] if e["kind"] == kind]


def _observe(agent, comps=None, rss=0, pause=0.0, times=1):
    for _ in range(times):
        agent.monitor.observe({"rss": rss}, comps or {}, pause)


def cache(hits, misses):
    return {"kind": "cache", "stats": {"hits": hits, "misses": misses}}


def test_cache_hit_rate_alert_needs_enough_lookups_sustains_and_clears_above_a_margin():
    a = _agent()
    state = {"h": 0, "m": 0}

    def step(hits, misses):
        state["h"] += hits
        state["m"] += misses
        _observe(a, {"c": cache(state["h"], state["m"])})
        alerts = a.monitor.view()[1]
        return alerts[0]["severity"] if alerts else "ok"

    assert [step(0, 5) for _ in range(12)] == ["ok"] * 12  # 0% hits, but never 100 lookups
    assert [step(10, 40) for _ in range(4)] == ["ok", "ok", "ok", "warning"]  # 20%, sustained
    fired = _events(a, "alert")
    assert [(e["severity"], e["data"]["state"]) for e in fired] == [("warning", "warning")]
    assert fired[0]["data"]["component"] == "c" and fired[0]["data"]["threshold"] == 0.6
    assert "cache c hit rate 17% over the last 230 lookups" in fired[0]["message"]
    assert [step(0, 0) for _ in range(20)] == ["warning"] * 20  # idle: nothing to judge
    assert [step(62, 38) for _ in range(12)] == ["warning"] * 12  # 62%: inside the margin
    # the window still holds 62% samples: 64.8%, 67.6%, 70.4%, 73.2% -> three past the margin
    assert [step(90, 10) for _ in range(4)] == ["warning", "warning", "warning", "ok"]
    assert [e["severity"] for e in _events(a, "alert")] == ["warning", "info"]
    assert step(0, 0) == "ok" and a.monitor.score == 100


def test_cache_counters_going_back_restart_the_window():
    a = _agent()
    _observe(a, {"c": cache(0, 1000)})
    _observe(a, {"c": cache(0, 2000)}, times=3)
    assert a.monitor.view()[1][0]["alert"] == "cache_hit_rate"
    _observe(a, {"c": cache(0, 10)}, times=10)  # a new cache under the name: too few to judge
    assert a.monitor.view()[1][0]["alert"] == "cache_hit_rate"
    _observe(a, {}, times=1)  # gone: the alert clears
    assert a.monitor.view()[1] == [] and "is gone" in _events(a, "alert")[-1]["message"]


def pool(in_use, waiters, max_size=10):
    return {"kind": "pool", "stats": {"in_use": in_use, "waiters": waiters, "max_size": max_size}}


def test_pool_saturation_needs_waiters_and_holds_for_three_samples():
    a = _agent(settings={"alerts": {"pool_saturation": 0.8}})
    _observe(a, {"db": pool(10, 0)}, times=5)  # full but nobody waits: fine
    assert a.monitor.view()[1] == []
    _observe(a, {"db": pool(8, 2)}, times=2)
    _observe(a, {"db": pool(5, 0)})  # one good sample resets the streak
    _observe(a, {"db": pool(8, 2)}, times=2)
    assert a.monitor.view()[1] == []
    _observe(a, {"db": pool(8, 2)})
    (alert,) = a.monitor.view()[1]
    assert (alert["alert"], alert["component"], alert["value"]) == ("pool_saturation", "db", 0.8)
    _observe(a, {"db": pool(8, 0)}, times=2)
    assert a.monitor.view()[1]
    _observe(a, {"db": pool(8, 0)})
    assert a.monitor.view()[1] == []
    _observe(a, {"db": pool(8, 5, max_size=None)}, times=5)  # unbounded: not judged
    assert [e["severity"] for e in _events(a, "alert")] == ["warning", "info"]


def workers(queued, size=100):
    return {"kind": "workers", "stats": {"queued": queued, "queue_size": size}}


def test_queue_backlog_warns_goes_critical_when_full_and_clears_below_a_margin():
    a = _agent()
    _observe(a, {"jobs": workers(79)}, times=5)
    assert a.monitor.view()[1] == []
    _observe(a, {"jobs": workers(85)}, times=3)
    assert a.monitor.view()[1][0]["severity"] == "warning"
    _observe(a, {"jobs": workers(100)}, times=3)
    assert a.monitor.view()[1][0]["severity"] == "critical"
    _observe(a, {"jobs": workers(75)}, times=5)  # under the line, inside the margin: holds
    assert a.monitor.view()[1][0]["severity"] == "critical"
    _observe(a, {"jobs": workers(60)}, times=3)
    assert a.monitor.view()[1] == []
    _observe(a, {"jobs": workers(1000, size=None)}, times=5)  # unbounded (AsyncLimiter)
    ev = _events(a, "alert")
    assert [(e["severity"], e["data"]["previous"]) for e in ev] == [
        ("warning", "ok"), ("critical", "warning"), ("info", "critical")]
    assert "queue full" in ev[1]["message"]


def test_gc_pause_alert_fires_at_once_and_clears_after_quiet_samples():
    a = _agent(settings={"profiler": {"gc_threshold": "50ms"}})
    _observe(a, pause=0.049)
    assert a.monitor.view()[1] == []
    _observe(a, pause=0.2)
    (alert,) = a.monitor.view()[1]
    assert alert["alert"] == "gc_pause" and alert["value"] == 200.0
    _observe(a, times=monitor.GC_CLEAR - 1)
    _observe(a, pause=0.3)  # another long one: still the same open alert, no new event
    _observe(a, times=monitor.GC_CLEAR - 1)
    assert a.monitor.view()[1][0]["value"] == 300.0  # the last long pause
    _observe(a)
    assert a.monitor.view()[1] == []
    assert [e["severity"] for e in _events(a, "alert")] == ["warning", "info"]
    off = _agent(settings={"profiler": {"gc_threshold": 0}})
    _observe(off, pause=5.0)
    assert off.monitor.view()[1] == []


def test_health_is_100_minus_penalties_with_caps_and_a_floor():
    def alert(kind, severity="warning", component=None):
        return {"alert": kind, "severity": severity, "message": kind, "component": component}

    assert monitor.health([]) == {"score": 100, "reasons": []}
    h = monitor.health([alert("memory", "critical")] + [alert("cache_hit_rate", component=c)
                                                          for c in "abc"] + [alert("gc_pause")])
    assert h["score"] == 100 - 50 - 20 - 10
    assert [r["penalty"] for r in h["reasons"]] == [50, 10, 10, 10, 0]
    assert h["reasons"][0] == {"alert": "memory", "severity": "critical", "penalty": 50,
                               "message": "memory", "component": None}
    many = [alert("memory", "critical"), alert("gc_pause")] + [
        alert(k, component=c) for k in ("cache_hit_rate", "pool_saturation", "queue_backlog")
        for c in "ab"]
    assert monitor.health(many)["score"] == 0


def test_stats_and_history_carry_health_and_open_alerts():
    a = _agent(memory_limit=1 << 40)
    a.registry.register(c := Shrinks("c"))
    _observe(a, {"jobs": workers(90)}, times=3)
    sample = a.sample()
    assert sample["health"]["score"] == 90 and sample["alerts"][0]["key"] == "queue_backlog:jobs"
    assert sample["health"]["reasons"][0]["alert"] == "queue_backlog"
    a.sample(record=True)  # judges the real registry, where "jobs" is not: the alert clears
    row = a.history()["rows"][-1]
    assert row[HISTORY_FIELDS.index("health")] == 100
    del c


def test_pressure_actions_shrink_at_warning_and_collect_and_throttle_at_critical():
    a = _agent(memory_limit=1000)
    good, bad, other = Shrinks("good", freed=4096), Shrinks("bad", fail=True), Shrinks("x", 0)
    pool_ = Throttles("jobs")
    for comp in (good, bad, other, pool_):
        a.registry.register(comp)
    _observe(a, rss=500)
    assert _events(a, "action") == []
    _observe(a, rss=850)  # warning: shrink, no gc, no throttle
    (shrink,) = _events(a, "action")
    d = shrink["data"]
    assert (d["action"], d["level"], d["fraction"], d["bytes_freed"]) == ("shrink", "warning",
                                                                          0.25, 4096)
    assert d["components"]["good"] == {"kind": "cache", "freed": 4096, "before": 100,
                                       "after": 75}
    assert "bad" in d["errors"] and "cannot shrink" in d["errors"]["bad"]
    assert shrink["severity"] == "warning" and d["rss_before"] == 850
    assert good.calls == [0.25] and pool_.calls == []
    _observe(a, rss=840, times=3)  # still warning: nothing more
    assert len(_events(a, "action")) == 1
    _observe(a, rss=960)  # critical: shrink again, gc.collect, throttle
    actions = [e["data"]["action"] for e in _events(a, "action")]
    assert actions == ["shrink", "shrink", "gc.collect", "throttle"]
    gc_ev, thr = _events(a, "action")[2:]
    assert gc_ev["data"]["collected"] >= 0 and gc_ev["data"]["duration_ms"] >= 0
    assert thr["data"] == {"action": "throttle", "on": True, "level": "critical",
                           "components": ["jobs"], "errors": {}}
    assert pool_.on is True
    _observe(a, rss=920)  # below the critical line but within its hysteresis: still critical
    assert pool_.on is True and a.monitor.level == "critical"
    _observe(a, rss=880)  # back to warning: intake resumes (throttling is for critical only)
    assert pool_.on is False and pool_.calls == [True, False]
    last = _events(a, "action")[-1]
    assert (last["data"]["action"], last["data"]["on"]) == ("throttle", False)
    assert last["data"]["reason"] == "memory no longer critical"
    _observe(a, rss=960)  # critical again: throttled again
    assert pool_.on is True and pool_.calls == [True, False, True]
    _observe(a, rss=100)  # straight to ok: intake resumes
    assert pool_.on is False and pool_.calls == [True, False, True, False]
    last = _events(a, "action")[-1]
    assert (last["data"]["on"], last["data"]["reason"]) == (False, "memory back to normal")
    _observe(a, rss=850)  # warning after ok: nothing to release, nothing throttled
    assert pool_.calls == [True, False, True, False]
    assert [e["data"]["state"] for e in _events(a, "alert")] == [
        "warning", "critical", "warning", "critical", "ok", "warning"]


def test_pressure_actions_follow_their_settings_and_release_on_stop():
    a = _agent(memory_limit=1000, settings={"alerts": {"pressure_actions": {
        "shrink_fraction": 0, "gc_at_critical": False}}})
    c, w = Shrinks("c"), Throttles("w")
    a.registry.register(c)
    a.registry.register(w)
    _observe(a, rss=990)
    assert [e["data"]["action"] for e in _events(a, "action")] == ["throttle"]
    assert c.calls == [] and w.on
    a.monitor.stop()
    assert not w.on and _events(a, "action")[-1]["data"]["reason"] == "the agent stopped"
    a.settings = {"alerts": {"pressure_actions": {"enabled": False}}}
    _observe(a, rss=100)
    _observe(a, rss=990)
    assert c.calls == [] and not w.on
    # turning throttling off while throttled lets go at once
    b = _agent(memory_limit=1000)
    b.registry.register(w)
    _observe(b, rss=990)
    assert w.on
    b.settings = {"alerts": {"pressure_actions": {"throttle_at_critical": False}}}
    _observe(b, rss=990)
    assert not w.on


def test_bad_settings_are_one_config_event_and_the_defaults_apply():
    a = _agent(settings={"alerts": {"queue_backlog": "most"}})
    _observe(a, times=3)
    (ev,) = _events(a, "config")
    assert "alerts.queue_backlog" in ev["message"] and a.monitor.settings().queue_backlog == 0.8


def test_a_monitor_step_that_raises_is_recorded_and_the_others_run(monkeypatch):
    a = _agent(settings={"profiler": {"gc_threshold": "1ms"}})
    monkeypatch.setattr(a.monitor, "_check_components",
                        lambda *args: (_ for _ in ()).throw(RuntimeError("boom")))
    _observe(a, pause=1.0)
    assert any(where == "alerts" for _, where, _ in a.errors)
    assert a.monitor.view()[1][0]["alert"] == "gc_pause"


# -- real targets ---------------------------------------------------------------------------------
MIB = 1 << 20
FAST = ("interval=0.05", "mutations_burst=100", "mutations_per_s=100")


def _start(start_target, *args):
    return start_target(*(FAST + args), script="pressure_target.py")


def _wait_event(c, kind, predicate, since=0, timeout=10.0, message="event"):
    def check():
        for e in c.events(since=since, limit=1000)["events"]:
            if e["kind"] == kind and predicate(e):
                return e
        return None

    return wait_for(check, timeout=timeout, message=message)


def _open(c):
    return {a["key"]: a for a in c.stats(fresh=True)["alerts"]}


def test_memory_pressure_shrinks_a_cache_then_gc_and_throttles_workers_then_recovers(
        start_target):
    t = _start(start_target)
    assert t.send("cache users 4000") == "ok 4000"
    t.send("workers jobs 100")
    base = int(t.send("rss").split()[1])
    limit = base + 100 * MIB
    with AgentClient(pid=t.pid) as c:
        c.config_apply(options={"memory_limit": limit})
        wait_for(lambda: c.stats(fresh=True)["memory"]["limit"] == limit, message="new limit")
        assert c.stats(fresh=True)["health"] == {"score": 100, "reasons": []}
        seq = c.events()["last_seq"]
        # warning: 85% of the limit, real pages
        t.send("alloc %d" % ((int(limit * 0.85) - base) // MIB))
        warn = _wait_event(c, "alert", lambda e: e["data"].get("state") == "warning", seq)
        assert warn["severity"] == "warning" and warn["data"]["alert"] == "memory"
        shrink = _wait_event(c, "action", lambda e: e["data"]["action"] == "shrink", seq)
        users = shrink["data"]["components"]["users"]
        assert users["freed"] > 0 and users["before"] == 4000 and users["after"] == 3000
        assert shrink["data"]["bytes_freed"] >= users["freed"] and shrink["data"]["rss_before"]
        assert t.send("len users") == "ok 3000"
        assert t.send("throttled jobs") == "ok false"
        health = c.stats(fresh=True)["health"]
        assert health["score"] == 75 and health["reasons"][0]["alert"] == "memory"
        # critical: past 95%
        rss = int(t.send("rss").split()[1])
        t.send("alloc %d" % ((int(limit * 1.0) - rss) // MIB + 2))
        crit = _wait_event(c, "alert", lambda e: e["data"].get("state") == "critical", seq)
        assert crit["severity"] == "critical"
        gc_ev = _wait_event(c, "action", lambda e: e["data"]["action"] == "gc.collect", seq)
        assert gc_ev["data"]["level"] == "critical" and gc_ev["data"]["rss_before"] > limit * 0.9
        thr = _wait_event(c, "action", lambda e: e["data"]["action"] == "throttle", seq)
        assert thr["data"]["on"] is True and thr["data"]["components"] == ["jobs"]
        assert t.send("throttled jobs") == "ok true" and t.send("submit jobs") == "rejected"
        assert int(t.send("len users").split()[1]) < 3000  # shrunk again on the way up
        assert c.stats(fresh=True)["health"]["score"] == 50
        # recovery: the memory goes back, intake resumes
        seq = c.events()["last_seq"]
        t.send("free")
        _wait_event(c, "alert", lambda e: e["data"].get("state") == "ok", seq)
        back = _wait_event(c, "action", lambda e: e["data"]["action"] == "throttle", seq)
        assert back["data"]["on"] is False and back["data"]["components"] == ["jobs"]
        assert t.send("throttled jobs") == "ok false" and t.send("submit jobs") == "ok"
        wait_for(lambda: c.stats(fresh=True)["health"]["score"] == 100, message="health 100")
        fields = c.history()["fields"]
        scores = [r[fields.index("health")] for r in c.history()["rows"]]
        assert 50 in scores and 75 in scores and scores[-1] == 100


def test_cache_hit_rate_alert_fires_and_clears_in_a_real_cache(start_target):
    t = _start(start_target, 'settings={"alerts": {"cache_hit_rate_warning": 0.6}}')
    t.send("cache users 10")
    t.send("cache quiet 10")
    with AgentClient(pid=t.pid) as c:
        # a window starts at the first sample that sees a cache: counts from before are history
        wait_for(lambda: {"users", "quiet"} <= set(c.stats(fresh=True)["components"]),
                 message="both caches sampled")
        t.send("look quiet 50 0")  # 0% hits, but too few lookups to judge
        t.send("look users 500 100")  # 20% hits
        ev = _wait_event(c, "alert", lambda e: e["data"].get("alert") == "cache_hit_rate",
                         message="hit-rate alert")
        assert ev["severity"] == "warning" and ev["data"]["component"] == "users"
        assert ev["data"]["lookups"] >= 100 and ev["data"]["value"] < 0.25
        alerts = _open(c)
        assert list(alerts) == ["cache_hit_rate:users"]
        assert c.stats(fresh=True)["health"]["score"] == 90
        seq = ev["seq"]
        t.send("look users 3000 3000")
        ok = _wait_event(c, "alert", lambda e: e["data"].get("alert") == "cache_hit_rate",
                         seq, message="hit-rate clear")
        assert ok["severity"] == "info" and ok["data"]["state"] == "ok"
        assert _open(c) == {}


def test_pool_saturation_and_worker_backlog_alerts_in_real_components(start_target):
    t = _start(start_target)
    t.send("pool db 2")
    t.send("workers jobs 10")
    with AgentClient(pid=t.pid) as c:
        t.send("hold db 2")
        t.send("wait db 2")
        sat = _wait_event(c, "alert", lambda e: e["data"].get("alert") == "pool_saturation",
                          message="pool alert")
        assert (sat["severity"], sat["data"]["in_use"], sat["data"]["waiters"]) == (
            "warning", 2, 2)
        assert t.send("queue jobs 9") in ("ok 8", "ok 9")
        back = _wait_event(c, "alert", lambda e: e["data"].get("alert") == "queue_backlog",
                           message="backlog alert")
        assert back["severity"] == "warning" and back["data"]["queue_size"] == 10
        t.send("queue jobs 2")
        full = _wait_event(c, "alert", lambda e: e["data"].get("alert") == "queue_backlog"
                           and e["severity"] == "critical", message="backlog critical")
        assert full["data"]["queued"] == 10
        health = c.stats(fresh=True)["health"]
        assert health["score"] == 80
        assert {r["alert"] for r in health["reasons"]} == {"pool_saturation", "queue_backlog"}
        seq = c.events()["last_seq"]
        t.send("release db")
        t.send("unblock jobs")
        for alert in ("pool_saturation", "queue_backlog"):
            _wait_event(c, "alert", lambda e, a=alert: e["data"].get("alert") == a
                        and e["data"]["state"] == "ok", seq, message=alert + " clears")
        wait_for(lambda: _open(c) == {}, message="no open alerts")


def test_long_gc_pause_alert_with_a_tiny_threshold(start_target):
    t = _start(start_target, 'settings={"profiler": {"gc_threshold": "2ms"}}')
    with AgentClient(pid=t.pid) as c:
        t.send("objs 400000")
        # automatic collections while building them may have been long too: let that clear
        wait_for(lambda: _open(c) == {}, message="no open alert")
        seq = c.events()["last_seq"]
        t.send("collect")
        ev = _wait_event(c, "alert", lambda e: e["data"].get("alert") == "gc_pause", seq,
                         message="gc alert")
        assert ev["severity"] == "warning" and ev["data"]["value"] > 2.0
        assert "over the 2 ms threshold" in ev["message"]
        _wait_event(c, "alert", lambda e: e["data"].get("alert") == "gc_pause"
                    and e["data"]["state"] == "ok", ev["seq"], message="gc alert clears")


def test_config_apply_changes_alert_lines_live_and_refuses_bad_ones(start_target):
    t = _start(start_target)
    t.send("workers jobs 10")
    t.send("queue jobs 5")  # 40-50%: under the default 80% line
    with AgentClient(pid=t.pid) as c:
        dry = c.config_apply({"alerts": {"queue_backlog": 0.3}}, dry_run=True)
        assert dry["options"] == {"alerts.queue_backlog": [0.8, 0.3]}
        assert c.config_get()["settings"] == {}
        result = c.config_apply({"alerts": {"queue_backlog": 0.3}})
        assert result["options"] == {"alerts.queue_backlog": [0.8, 0.3]}
        ev = _wait_event(c, "alert", lambda e: e["data"].get("alert") == "queue_backlog",
                         message="backlog at the new line")
        assert ev["data"]["threshold"] == 0.3
        for bad, words in (({"alerts": {"queue_backlog": 3}}, "must be a fraction"),
                           ({"profiler": {"interval": "1s"}}, "agent option"),
                           ({"profiler": {"memory_threshold": "lots"}}, "memory_threshold")):
            with pytest.raises(RemoteError, match=words):
                c.config_apply(bad)
        # the complete set of sections replaces the agent's: back to the default line
        assert c.config_apply({})["options"] == {"alerts.queue_backlog": [0.3, 0.8]}
        t.send("unblock jobs")


def test_every_value_the_schema_allows_at_its_bounds_the_agent_takes():
    from memtui.config import schema

    refused = []
    for key in monitor.SETTING_KEYS:
        spec = schema.lookup(key).spec
        values = [spec["default"]] + [spec[k] for k in ("minimum", "maximum") if k in spec]
        if spec.get("x-unit") == "seconds":
            values += ["%gs" % v for v in values[1:]]
        if spec.get("x-unit") == "bytes":
            values += ["1GiB", "512MB"]
        for value in values:
            problems = monitor.read(profiles.nest({key: value}))[2]
            if problems:
                refused.append(problems)
    assert refused == []
