"""config.get and config.apply against a real target over its real socket: live retunes of caches,
the gc tuner and agent options, dry runs, strict arguments, rate limits and refusing components."""
from __future__ import annotations

import pytest

from conftest import wait_for
from memtui.client import AgentClient, RemoteError

OPTS = ("interval=0.2",)


def client(target):
    return AgentClient(pid=target.pid)


def wait_stats(c, name, predicate, message):
    """Component stats come from the sampler: wait for a sample that shows *predicate*."""
    def check():
        item = c.stats(fresh=True)["components"].get(name)
        return item["stats"] if item and predicate(item["stats"]) else None

    return wait_for(check, message=message)


def test_config_get_reports_env_settings_options_and_each_components_settings(start_target):
    t = start_target(*OPTS, 'settings={"caches": {"users": {"ttl": "1m"}}}', "env=\"qa\"")
    t.send('cache users {"max_entries": 100}')
    t.send("register 1")
    with client(t) as c:
        got = c.config_get()
    assert set(got) == {"env", "profile", "settings", "options", "components"}
    assert got["env"] == "qa" and got["profile"] is None
    assert got["settings"] == {"caches": {"users": {"ttl": "1m"}}}
    assert got["options"]["interval"] == 0.2 and got["options"]["env"] == "qa"
    assert got["components"]["users"] == {"kind": "cache", "settings": {
        "policy": "lru", "max_entries": 100, "max_bytes": None, "ttl": 60.0, "tti": None}}
    assert got["components"]["c0"] == {"kind": "custom", "settings": None}


def test_apply_changes_a_live_caches_max_entries(start_target):
    """The acceptance test: a push against a live agent changes a live Cache's max_entries."""
    t = start_target(*OPTS)
    assert t.send('cache users {"max_entries": 100}') == "ok users"
    assert t.send("fill users 100") == "ok 100"
    with client(t) as c:
        result = c.config_apply({"caches": {"users": {"max_entries": 10}}})
        assert result == {"dry_run": False, "env": "dev", "changed": {"users": {"max_entries": 10}},
                          "errors": {}, "options": {}, "tuner": {}}
        assert t.send("len users") == "ok 10"  # shrunk at once, in the host
        s = wait_stats(c, "users", lambda s: s["max_entries"] == 10, "new max_entries in stats")
        assert s["entries"] == 10 and s["evictions"]["size"] >= 90
        assert t.send("fill users 50") == "ok 10"  # and it stays bounded
        assert c.config_get()["settings"] == {"caches": {"users": {"max_entries": 10}}}
        # the settings were replaced: a cache created afterwards takes them too
        assert c.config_apply({"cache": {"max_entries": 3}})["changed"] == {"users": {
            "max_entries": 3}}
        t.send("cache later")
        assert c.config_get()["components"]["later"]["settings"]["max_entries"] == 3
        events = [e for e in c.events()["events"] if e["kind"] == "config"]
    assert any(e["message"] == "users configured: max_entries=10" for e in events)
    summaries = [e for e in events if e["message"].startswith("config applied")]
    assert len(summaries) == 2
    assert summaries[0]["data"]["changed"] == {"users": {"max_entries": 10}}
    assert "users max_entries=10" in summaries[0]["message"]


def test_dry_run_changes_nothing_and_says_what_would_change(start_target):
    t = start_target(*OPTS)
    t.send('cache users {"max_entries": 100}')
    t.send('cache other {"ttl": 30}')
    t.send("fill users 100")
    with client(t) as c:
        before = c.config_get()
        seq = c.events()["last_seq"]
        result = c.config_apply({"caches": {"users": {"max_entries": 10, "policy": "lfu"}},
                                 "cache": {"ttl": 30}, "tuner": {"gc_thresholds": [5000]}},
                                options={"interval": "1s"}, env="prod", dry_run=True)
        assert result == {
            "dry_run": True, "env": "prod", "errors": {},
            "changed": {"users": {"max_entries": 10, "policy": "lfu", "ttl": 30.0}},
            "options": {"env": ["dev", "prod"], "interval": [0.2, 1.0]},
            "tuner": {"gc_thresholds": [[700, 10, 10], [5000, 10, 10]]}}
        assert c.config_get() == before
        assert c.events(since=seq)["events"] == []
        assert c.request("hello")["env"] == "dev"
    assert t.send("len users") == "ok 100"
    assert t.send("gcthreshold") == "ok 700 10 10"


def test_dry_run_reports_what_a_component_would_refuse(start_target):
    t = start_target(*OPTS)
    t.send("cache users")
    with client(t) as c:
        result = c.config_apply({"caches": {"users": {"max_entries": -1}}}, dry_run=True)
    assert result["changed"] == {}
    assert result["errors"] == {"users": "ValueError: max_entries must be an integer >= 0, got -1"}


def test_a_component_whose_configure_raises_does_not_stop_the_others(start_target):
    t = start_target(*OPTS)
    t.send("cache users")
    assert t.send("broken b1") == "ok b1"
    settings = {"cache": {"max_entries": 5}}
    with client(t) as c:
        preview = c.config_apply(settings, dry_run=True)
        assert preview["changed"] == {"users": {"max_entries": 5}}
        assert preview["errors"] == {"b1": "cannot preview: Broken has no preview() method"}
        result = c.config_apply(settings)
        events = [e for e in c.events()["events"] if e["kind"] == "config"]
    assert result["changed"] == {"users": {"max_entries": 5}}
    assert result["errors"] == {"b1": "RuntimeError: broken on purpose"}
    assert any(e["severity"] == "warning" and e["message"].startswith("b1 rejected") for e in events)
    summary = [e for e in events if e["message"].startswith("config applied")][-1]
    assert summary["severity"] == "warning" and "1 refused: b1" in summary["message"]


def test_tuner_through_config_apply(start_target):
    t = start_target(*OPTS)
    with client(t) as c:
        result = c.config_apply({"tuner": {"gc_thresholds": [2000, 15, 15], "gc_freeze": True}})
        assert result["tuner"] == {"gc_thresholds": [[700, 10, 10], [2000, 15, 15]],
                                   "gc_freeze": [False, True]}
        assert t.send("gcthreshold") == "ok 2000 15 15"
        frozen = int(t.send("gcfrozen").split()[1])
        assert frozen > 0
        again = c.config_apply({"tuner": {"gc_thresholds": [2000, 15, 15], "gc_freeze": True}})
        assert again["tuner"] == {}  # thresholds as asked, and gc.freeze() only ever once
        assert int(t.send("gcfrozen").split()[1]) <= frozen  # frozen objects may still die
        assert c.config_apply({"tuner": {"enabled": False, "gc_thresholds": [1, 1, 1]}})[
            "tuner"] == {}
    assert t.send("gcthreshold") == "ok 2000 15 15"


def test_options_change_live_interval_env_and_alert_thresholds(start_target):
    t = start_target("interval=5", "memory_limit=\"64GiB\"")
    with client(t) as c:
        result = c.config_apply(options={"interval": "50ms", "memory_limit": "1MiB",
                                         "warning_pct": 50, "critical_pct": 60}, env="prod")
        assert result["options"] == {"env": ["dev", "prod"], "interval": [5.0, 0.05],
                                     "memory_limit": [64 * 1024 ** 3, 1024 ** 2],
                                     "warning_pct": [80.0, 50.0], "critical_pct": [95.0, 60.0]}
        assert c.request("hello")["env"] == "prod"
        # the sampler woke and now samples every 50 ms, not every 5 s
        seq = c.history()["last_seq"]
        wait_for(lambda: c.history()["last_seq"] >= seq + 5, timeout=5, message="fast samples")
        # an RSS far over 1 MiB: the critical alert comes with the next sample
        wait_for(lambda: any(e["kind"] == "alert" and e["severity"] == "critical"
                             for e in c.events()["events"]), timeout=5, message="alert")
        assert c.history()["interval"] == 0.05
        assert c.config_get()["options"]["critical_pct"] == 60.0
    assert "\"interval\": 0.05" in t.send("options")


def test_options_that_need_a_restart_are_reported_not_applied(start_target):
    t = start_target(*OPTS)
    with client(t) as c:
        result = c.config_apply(options={"history": 50, "trace_frames": 1, "interval": 0.3})
        assert result["errors"] == {
            "option history": "needs a restart: the agent runs with 600, asked for 50"}
        assert result["options"] == {"interval": [0.2, 0.3]}
        assert c.config_get()["options"]["history"] == 600


BAD = [
    ({"settings": [1]}, "'settings' must be an object"),
    ({"settings": {"caches": {"users": {"max_entries": 1}}, "colour": {}}}, "unknown section 'colour'"),
    ({"settings": {"cache": 5}}, "settings.cache must be an object"),
    ({"settings": {"caches": {"users": 5}}}, "settings.caches.users must be an object"),
    ({"settings": {"tuner": {"gc_thresholds": [1, 2, 3, 4]}}}, "gc_thresholds"),
    ({"settings": {"tuner": {"gc_percent": 5}}}, "unknown key 'gc_percent'"),
    ({"settings": {"tuner": {"gc_freeze": "yes"}}}, "gc_freeze must be true or false"),
    ({"options": "fast"}, "'options' must be an object"),
    ({"options": {"serve": False}}, "option 'serve' cannot change in a running agent"),
    ({"options": {"socket_path": "/tmp/x"}}, "option 'socket_path' cannot change"),
    ({"options": {"interval": "soon"}}, "agent option interval"),
    ({"options": {"interval": 0.001}}, "interval must be at least 10ms"),
    ({"options": {"warning_pct": 99}}, "warning_pct < critical_pct"),
    ({"options": {"memory_limit": "lots"}}, "agent option memory_limit"),
    ({"env": "../etc"}, "'env' must be an environment name"),
    ({"env": 5}, "'env' must be an environment name"),
    ({"env": "a", "options": {"env": "b"}}, "differ"),
    ({"options": {"env": None}}, "options.env must be an environment name"),
    ({"dry_run": "yes"}, "'dry_run' must be true or false"),
    ({"sections": {}}, "unknown argument 'sections'"),
]


def test_bad_args_are_bad_args_change_nothing_spend_no_token_and_the_host_keeps_serving(
        start_target):
    t = start_target(*OPTS, "mutations_burst=2", "mutations_per_s=0.001")
    t.send('cache users {"max_entries": 100}')
    with client(t) as c:
        before = c.config_get()
        for args, words in BAD:
            with pytest.raises(RemoteError) as info:
                c.request("config.apply", **args)
            assert info.value.code == "bad_args", (args, str(info.value))
            assert words in str(info.value), (args, str(info.value))
        assert c.config_get() == before
        assert t.send("ping") == "pong" and t.send("len users") == "ok 0"
        assert c.stats()["pid"] == t.pid
        # none of them spent a token: both of the burst are still there
        c.config_apply({"cache": {"max_entries": 9}})
        c.config_apply({"cache": {"max_entries": 8}})


def test_real_applies_are_rate_limited_dry_runs_are_not(start_target):
    t = start_target(*OPTS, "mutations_burst=2", "mutations_per_s=0.001")
    t.send("cache users")
    with client(t) as c:
        assert "config.apply" in c.info["mutating_ops"]
        c.config_apply({"cache": {"max_entries": 9}})
        c.config_apply({"cache": {"max_entries": 8}})
        with pytest.raises(RemoteError) as info:
            c.config_apply({"cache": {"max_entries": 7}})
        assert info.value.code == "rate_limited"
        for _ in range(5):
            assert c.config_apply({"cache": {"max_entries": 7}}, dry_run=True)["changed"] == {
                "users": {"max_entries": 7}}
        assert c.config_get()["components"]["users"]["settings"]["max_entries"] == 8
