"""Automatic heap snapshots: when they are due (a fake clock and fake settings), that they run on
their own thread with retention, and against real targets: periodic snapshots at the interval and
one snapshot per cooldown when RSS crosses the threshold."""
from __future__ import annotations

import datetime
import gzip
import json
import os
import re
import sys
import threading
import time
import types

import pytest

import memtui.agent
from conftest import FakeClock, wait_for
from memtui.agent import monitor
from memtui.agent.autoprofile import AutoProfiler
from memtui.agent.core import HISTORY_FIELDS, Agent
from memtui.agent.options import AgentOptions
from memtui.client import AgentClient


def settings(**kw):
    values = {"profiler": {}, "alerts": {}}
    for key, value in kw.items():
        values["profiler"][key] = value
    parsed, _, problems = monitor.read(values)
    assert problems == []
    return parsed


class Recorder(AutoProfiler):
    """Decides as the real one does; records instead of starting a thread."""

    def __init__(self, clock):
        super().__init__(agent=None, clock=clock)
        self.started = []

    def start(self, reason):
        self.started.append((reason, self.clock.now))


def test_periodic_snapshots_are_due_every_interval_from_when_they_were_turned_on():
    clock = FakeClock(1000.0)
    p = Recorder(clock)
    off, on = settings(), settings(auto_snapshot=True, snapshot_interval="10s")
    assert p.tick(1, off) is None
    for step, cfg in ((0, on), (9.9, on), (0.1, on), (5, on), (5, on)):
        clock.advance(step)
        p.tick(1, cfg)
    assert p.started == [("interval", 1010.0), ("interval", 1020.0)]
    assert p.status()["next_in"] == 10.0
    clock.advance(2)
    p.tick(1, settings(auto_snapshot=True, snapshot_interval=5))  # 5 s from the last one
    clock.advance(3)
    p.tick(1, settings(auto_snapshot=True, snapshot_interval=5))
    assert p.started[-1] == ("interval", 1025.0)
    clock.advance(100)
    p.tick(1, off)
    assert len(p.started) == 3 and p.status()["next_in"] is None


def test_threshold_snapshot_when_rss_crosses_at_most_once_per_cooldown():
    clock = FakeClock(0.0)
    p = Recorder(clock)
    cfg = settings(memory_threshold=1000, snapshot_cooldown="60s")
    for rss, step in ((900, 0), (1100, 1), (1500, 1), (1500, 1), (900, 1)):
        clock.advance(step)
        p.tick(rss, cfg)
    assert p.started == [("threshold", 1.0)]  # staying above is not crossing again
    # a crossing inside the cooldown is remembered and taken when the cooldown is over
    for rss, step in ((1100, 1), (1200, 30), (1200, 25.9)):
        clock.advance(step)
        p.tick(rss, cfg)
    assert len(p.started) == 1
    clock.advance(0.1)
    p.tick(1200, cfg)
    assert p.started[-1] == ("threshold", pytest.approx(61.0))
    p.tick(900, cfg)
    clock.advance(60)
    p.tick(2000, cfg)
    assert p.started[-1] == ("threshold", pytest.approx(121.0))
    p.tick(5000, settings(memory_threshold=0))  # off
    assert len(p.started) == 3


def test_a_running_snapshot_makes_the_next_one_wait(monkeypatch):
    clock = FakeClock(0.0)
    p = Recorder(clock)
    monkeypatch.setattr(AutoProfiler, "running", property(lambda self: True))
    cfg = settings(auto_snapshot=True, snapshot_interval=1, memory_threshold=10)
    clock.advance(5)
    assert p.tick(100, cfg) is None and p.started == []
    monkeypatch.setattr(AutoProfiler, "running", property(lambda self: False))
    assert p.tick(100, cfg) == "threshold"  # both due: one snapshot, the threshold's
    clock.advance(0.5)
    assert p.tick(100, cfg) is None  # and the periodic clock restarted from it
    clock.advance(0.5)
    assert p.tick(100, cfg) == "interval"


# -- taking them: a thread of their own, failures (a fake snapshots module) -----------------------
class FakeSnapshots:
    class SnapshotError(Exception):
        pass

    class SnapshotBusy(SnapshotError):
        pass

    def __init__(self, fail=None):
        self.fail = fail
        self.calls = []
        self.gate = threading.Event()
        self.gate.set()

    def module(self):
        mod = types.ModuleType("memtui.agent.snapshots")
        mod.take = self.take
        mod.SnapshotError, mod.SnapshotBusy = self.SnapshotError, self.SnapshotBusy
        return mod

    def take(self, agent, reason="manual", trace=None, budget_s=None, directory=None,
             progress=None):
        where = agent.settings.get("profiler", {}).get("output_dir") or "/default"
        self.calls.append((reason, where, threading.current_thread().name))
        self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        return {"id": "x", "path": os.path.join(where, "x.json.gz"), "bytes": 1,
                "elapsed_s": 0.0, "complete": True, "objects": 1, "reason": reason}


@pytest.fixture
def fake_snapshots(monkeypatch):
    def install(fail=None):
        fake = FakeSnapshots(fail)
        mod = fake.module()
        monkeypatch.setitem(sys.modules, "memtui.agent.snapshots", mod)
        monkeypatch.setattr(memtui.agent, "snapshots", mod, raising=False)
        return fake

    return install


def _agent(**settings_):
    return Agent(AgentOptions(serve=False), settings=settings_)


def test_snapshots_run_on_their_own_thread_one_at_a_time(fake_snapshots, tmp_path):
    fake = fake_snapshots()
    fake.gate.clear()
    agent = _agent(profiler={"output_dir": str(tmp_path)})
    p = agent.autoprofile
    assert p.tick(10, settings(memory_threshold=1)) == "threshold"
    wait_for(lambda: fake.calls, message="take called")
    assert p.running and p.tick(10, settings(auto_snapshot=True, snapshot_interval=0.1)) is None
    fake.gate.set()
    wait_for(lambda: not p.running, message="snapshot done")
    assert fake.calls == [("threshold", str(tmp_path), "memtui-autosnapshot")]
    assert p.status()["taken"] == 1 and p.status()["last"]["reason"] == "threshold"


def test_a_failed_snapshot_is_counted_and_a_bug_is_recorded(fake_snapshots):
    fake = fake_snapshots(FakeSnapshots.SnapshotError("disk full"))  # take() logged it itself
    agent = _agent()
    agent.autoprofile.tick(10, settings(memory_threshold=1))
    wait_for(lambda: agent.autoprofile.failed, message="failure")
    assert agent.autoprofile.status()["last_error"] == "SnapshotError: disk full"
    assert not agent.errors
    fake.fail = RuntimeError("a bug")
    agent.autoprofile.tick(10, settings(memory_threshold=1, snapshot_cooldown=0))
    agent.autoprofile.tick(0, settings(memory_threshold=1))  # below: re-arms
    wait_for(lambda: not agent.autoprofile.running, message="thread done")
    agent.autoprofile.tick(10, settings(memory_threshold=1, snapshot_cooldown=0))
    wait_for(lambda: agent.autoprofile.failed == 2, message="second failure")
    assert [where for _, where, _ in agent.errors] == ["auto snapshot"]


def test_a_busy_snapshotter_re_arms_the_threshold(fake_snapshots):
    fake = fake_snapshots(FakeSnapshots.SnapshotBusy("busy"))
    agent = _agent()
    cfg = settings(memory_threshold=1, snapshot_cooldown="1h")
    assert agent.autoprofile.tick(10, cfg) == "threshold"
    wait_for(lambda: fake.calls and not agent.autoprofile.running, message="busy")
    assert agent.autoprofile.failed == 0
    fake.fail = None
    assert agent.autoprofile.tick(10, cfg) == "threshold"  # not held back by the cooldown


def test_the_sampler_starts_periodic_snapshots_from_the_agents_settings(fake_snapshots,
                                                                         tmp_path):
    fake = fake_snapshots()
    agent = Agent(AgentOptions(serve=False, interval=0.02), settings={"profiler": {
        "auto_snapshot": True, "snapshot_interval": 0.1, "output_dir": str(tmp_path)}})
    agent.start()
    try:
        wait_for(lambda: len(fake.calls) >= 2, message="two periodic snapshots")
    finally:
        agent.stop()
    assert set(fake.calls) == {("interval", str(tmp_path), "memtui-autosnapshot")}


# -- real targets, real snapshots -----------------------------------------------------------------
MIB = 1 << 20
FAST = ("interval=0.05", "mutations_burst=100", "mutations_per_s=100")


def _snapshot_events(c, since=0):
    return [e for e in c.events(since=since, limit=1000)["events"] if e["kind"] == "snapshot"]


def _started(event):
    """When a snapshot started: its id's time stamp (the event is logged once it is written).
    Ids are PID-TOKEN-UTCSTAMP-N (PID-UTCSTAMP-N before the token)."""
    stamp = re.search(r"-(\d{8}T\d{12}Z)-\d+$", event["data"]["id"]).group(1)
    return datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ")


def _files(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".json.gz")) \
        if os.path.isdir(directory) else []


def test_periodic_snapshots_at_the_interval_with_retention(start_target, tmp_path):
    out = str(tmp_path / "snaps")
    t = start_target(*FAST, 'settings={"profiler": {"auto_snapshot": true, '
                     '"snapshot_interval": 0.3, "retention": 2, "output_dir": "%s"}}' % out,
                     script="pressure_target.py")
    with AgentClient(pid=t.pid) as c:
        wait_for(lambda: len(_snapshot_events(c)) >= 4, timeout=30, message="4 snapshots")
        events = _snapshot_events(c)
        assert all(e["data"].get("reason") == "interval" for e in events), events
        starts = [_started(e) for e in events]
        assert min((b - a).total_seconds() for a, b in zip(starts, starts[1:])) >= 0.28
        c.config_apply({})  # periodic snapshots off, live
        time.sleep(1.0)  # the one running when they were turned off ends meanwhile
        n = len(_snapshot_events(c))
        time.sleep(0.6)
        assert len(_snapshot_events(c)) == n
        files = _files(out)
        assert 1 <= len(files) <= 2  # retention
        with gzip.open(os.path.join(out, files[-1])) as fh:
            doc = json.load(fh)
        assert doc["format"] == "memtui-snapshot" and doc["reason"] == "interval"


def test_threshold_snapshot_once_per_cooldown_when_real_rss_crosses(start_target, tmp_path):
    # Only the snapshots' own start times are compared, never the wall clock of this test: how
    # long the steps between them take on a loaded machine does not matter.
    cooldown = 5.0
    out = str(tmp_path / "snaps")
    t = start_target(*FAST, script="pressure_target.py")
    base = int(t.send("rss").split()[1])
    line = base + 40 * MIB
    with AgentClient(pid=t.pid) as c:
        c.config_apply({"profiler": {"memory_threshold": line, "snapshot_cooldown": cooldown,
                                     "output_dir": out}})
        t.send("alloc 60")
        first = wait_for(lambda: _snapshot_events(c), timeout=20, message="threshold snapshot")
        assert first[0]["data"].get("reason") == "threshold"
        t.send("free")
        rss = HISTORY_FIELDS.index("rss")  # a sample the sampler recorded, so it saw it too
        wait_for(lambda: c.history(limit=1)["rows"][-1][rss] < line, message="below the line")
        t.send("alloc 60")  # crosses again, most likely inside the cooldown: waits for it
        wait_for(lambda: [e for e in _snapshot_events(c)
                          if e["data"].get("reason") == "threshold"][1:], timeout=30,
                 message="second threshold snapshot")
        events = [e for e in _snapshot_events(c) if e["data"].get("reason") == "threshold"]
    starts = [_started(e) for e in events]
    assert starts == sorted(starts)
    # never two in one cooldown; the slack is the first one's start-up (its thread, the import
    # of the snapshot modules) that the second does not pay
    gap = (starts[1] - starts[0]).total_seconds()
    assert gap >= cooldown - 1.0, gap
    assert len(_files(out)) == len(events) == 2
