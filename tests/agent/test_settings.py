"""Profile sections reach components by name: defaults, per-name overrides, later registrations."""
from __future__ import annotations

import memtui
from memtui.agent import AgentOptions
from memtui.agent.core import Agent, settings_for
from memtui.agent.registry import ComponentRegistry
from memtui.runtime.cache import Cache
from memtui.runtime.pool import ResourcePool
from memtui.runtime.workers import WorkerPool

SETTINGS = {
    "cache": {"max_entries": 100, "policy": "lru", "compression": True},  # compression: not a Cache key
    "caches": {"users": {"max_entries": 7, "ttl": "30s"}},
    "pool": {"max_size": 3},
    "workers": {"max_workers": 2, "queue_size": 10},
}


def test_settings_for_layers_named_over_defaults():
    assert settings_for(SETTINGS, "cache", "users") == {"max_entries": 7, "policy": "lru",
                                                         "compression": True, "ttl": "30s"}
    assert settings_for(SETTINGS, "cache", "users#2")["max_entries"] == 7
    assert settings_for(SETTINGS, "cache", "other")["max_entries"] == 100
    assert settings_for(SETTINGS, "custom", "x") == {}


def test_components_take_their_section_at_registration_and_on_apply():
    reg = ComponentRegistry()
    agent = Agent(AgentOptions(serve=False), reg, SETTINGS)
    agent.start()
    try:
        early = Cache(name="early", register=False)
        reg.register(early)
        assert early.stats()["max_entries"] == 100  # configured when registered
        users = Cache(name="users", register=False)
        reg.register(users)
        s = users.stats()
        assert (s["max_entries"], s["ttl_s"]) == (7, 30.0)
        pool = ResourcePool(factory=object, max_size=10, register=False)
        reg.register(pool)
        assert pool.stats()["max_size"] == 3
        workers = WorkerPool(max_workers=8, register=False)
        reg.register(workers)
        assert (workers.stats()["max_workers"], workers.stats()["queue_size"]) == (2, 10)
        changed = agent.apply_settings({"caches": {"users": {"max_entries": 50}}})
        assert changed["users"] == {"max_entries": 50}
        events = [e for e in agent.events.since(0)["events"] if e["kind"] == "config"]
        assert any("users configured: max_entries=50" in e["message"] for e in events)
        bad = agent.apply_settings({"caches": {"users": {"max_entries": -5}}})
        assert "error" in bad["users"] and users.stats()["max_entries"] == 50
        workers.shutdown()
    finally:
        agent.stop()


def test_tuner_section_sets_gc_thresholds_and_a_bad_one_is_an_event_not_an_exception():
    import gc

    before = gc.get_threshold()
    agent = Agent(AgentOptions(serve=False), ComponentRegistry(),
                  {"tuner": {"gc_thresholds": [before[0] + 1, 11]}})
    agent.start()
    try:
        assert gc.get_threshold() == (before[0] + 1, 11, before[2])
        agent.apply_settings({"tuner": {"gc_thresholds": "high"}})
        assert gc.get_threshold() == (before[0] + 1, 11, before[2])
        messages = [e["message"] for e in agent.events.since(0)["events"]
                    if e["kind"] == "config"]
        assert messages[0] == "gc thresholds %s -> %s" % (before, (before[0] + 1, 11, before[2]))
        assert messages[-1].startswith("tuner settings rejected: tuner.gc_thresholds must be")
    finally:
        agent.stop()
        gc.set_threshold(*before)


def test_start_with_settings_configures_blocks_created_afterwards(runtime_dir, tmp_path):
    # through the public entry point, in a real process, read back over the socket
    import json
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import memtui, json, sys\n"
            "memtui.start(settings=json.loads(sys.argv[1]))\n"
            "c = memtui.Cache(name='users')\n"
            "print(json.dumps(c.stats()['max_entries']))\n")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(SETTINGS)], capture_output=True,
                         text=True, cwd=str(tmp_path), timeout=30,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                              "MEMTUI_RUNTIME_DIR": runtime_dir})
    assert out.stdout.strip() == "7", out.stderr
    assert memtui.Cache is Cache
