"""The feed thread: immutable samples, incremental history and events, no overlapping polls,
loss reported and retried (textual-free: plain threads and the recorded fake agent)."""
from __future__ import annotations

import threading
import time

import pytest

from memtui.tui import feed as feed_mod
from memtui.tui.feed import Feed, clamp_interval
from memtui.tui.model import History, freeze, thaw

from .fake_client import FakeClient


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Collector:
    def __init__(self):
        self.samples = []
        self.states = []

    def sample(self, s):
        self.samples.append(s)

    def state(self, c):
        self.states.append(c)


def _feed(client, interval=0.25, **kw):
    got = Collector()
    return Feed(client, got.sample, got.state, interval=interval, **kw), got


def test_samples_are_immutable_and_carry_history_events_and_recommendations():
    feed, got = _feed(FakeClient())
    feed.want_recommendations = True
    feed.start()
    try:
        _wait(lambda: got.samples)
    finally:
        feed.stop()
    s = got.samples[0]
    with pytest.raises(TypeError):
        s.stats["pid"] = 1
    with pytest.raises(TypeError):
        s.stats["components"]["users"]["stats"]["hits"] = 0
    with pytest.raises(AttributeError):
        s.seq = 5  # frozen dataclass
    assert s.history.fields[0] == "seq" and len(s.history.rows) > 10
    assert s.history.numbers("rss") and all(v > 0 for v in s.history.numbers("rss"))
    assert [e["seq"] for e in s.events] == sorted(e["seq"] for e in s.events)
    assert s.recommendations_for("users")[0]["setting"] == "max_entries"
    assert s.pid == 14607 and s.components("pool").keys() == {"db"}


def test_second_poll_asks_only_for_what_is_new():
    client = FakeClient()
    feed, got = _feed(client, tuner_every=3600)
    feed.want_recommendations = True
    feed.start()
    try:
        _wait(lambda: len(got.samples) >= 2)
    finally:
        feed.stop()
    hist = [args["since"] for op, args in client.state.calls if op == "history"]
    events = [args["since"] for op, args in client.state.calls if op == "events"]
    last_row = client.state.data["history"]["rows"][-1][0]
    assert hist[0] == 0 and hist[1] == last_row
    assert events[0] == 0 and events[1] == client.state.data["events"]["last_seq"]
    # nothing new arrived, so the record did not grow or duplicate
    assert len(got.samples[1].history.rows) == len(got.samples[0].history.rows)
    assert got.samples[1].events == got.samples[0].events
    assert [op for op, _ in client.state.calls].count("tuner.recommend") == 1


def test_recommendations_are_asked_for_only_while_wanted():
    client = FakeClient()
    feed, got = _feed(client, tuner_every=0)
    feed.start()
    try:
        _wait(lambda: len(got.samples) >= 2)
        assert "tuner.recommend" not in client.ops() and got.samples[-1].recommendations == ()
        feed.want_recommendations = True
        _wait(lambda: got.samples[-1].recommendations)
    finally:
        feed.stop()


class SlowClient(FakeClient):
    """Each stats() takes longer than the feed's interval; records how many run at once."""

    active = 0
    most = 0
    guard = threading.Lock()

    def stats(self, components=True, fresh=False):
        with SlowClient.guard:
            SlowClient.active += 1
            SlowClient.most = max(SlowClient.most, SlowClient.active)
        time.sleep(0.15)
        with SlowClient.guard:
            SlowClient.active -= 1
        return super().stats()


def test_polls_never_overlap_even_when_slower_than_the_interval():
    feed, got = _feed(SlowClient(), interval=0.25)
    feed.interval = 0.01  # below the clamp on purpose: the poll itself is the pacing
    feed.start()
    try:
        _wait(lambda: len(got.samples) >= 4)
    finally:
        feed.stop()
    assert SlowClient.most == 1
    starts = [s.received - s.poll_ms / 1000.0 for s in got.samples]
    ends = [s.received for s in got.samples]
    assert all(b >= a - 0.005 for a, b in zip(ends, starts[1:]))


def test_lost_agent_is_reported_retried_and_picked_up_again(monkeypatch):
    monkeypatch.setattr(feed_mod, "RETRY_DELAYS", (0.05,))
    client = FakeClient()
    feed, got = _feed(client)
    feed.start()
    try:
        _wait(lambda: got.samples)
        client.kill()
        _wait(lambda: any(c.state == "lost" for c in got.states))
        lost = [c for c in got.states if c.state == "lost"]
        assert "14607" in lost[0].message and lost[0].retry_in == 0.05
        _wait(lambda: len([c for c in got.states if c.state == "lost"]) >= 3)  # keeps retrying
        n = len(got.samples)
        client.revive()
        _wait(lambda: len(got.samples) > n)
        assert got.states[-1].state == "live"
    finally:
        feed.stop()
    assert not feed.running


def test_garbage_reply_is_a_lost_connection_not_a_dead_thread(monkeypatch):
    monkeypatch.setattr(feed_mod, "RETRY_DELAYS", (0.05,))

    class Broken(FakeClient):
        def history(self, *a, **k):
            return {"fields": ["seq"], "rows": "not rows"}  # rows of characters, not lists

    client = Broken()
    feed, got = _feed(client)
    feed.start()
    try:
        _wait(lambda: [c for c in got.states if c.message])
    finally:
        feed.stop()
    failed = [c for c in got.states if c.message][0]
    assert "Unexpected reply" in failed.message


def test_pause_stops_polling_and_resume_restarts():
    client = FakeClient()
    feed, got = _feed(client)
    feed.start()
    try:
        _wait(lambda: got.samples)
        feed.set_paused(True)
        time.sleep(0.1)
        n = len(got.samples)
        time.sleep(0.6)
        assert len(got.samples) == n
        feed.set_paused(False)
        _wait(lambda: len(got.samples) > n)
    finally:
        feed.stop()


def test_a_restarted_agent_starts_the_record_over():
    client = FakeClient()
    feed, got = _feed(client)
    feed.start()
    try:
        _wait(lambda: got.samples)
        client.state.data["info"]["started_at"] += 100  # a new agent in the same process
        client.close()  # the feed reconnects and reads the new hello
        _wait(lambda: len(got.samples) >= 2 and got.samples[-1].info["started_at"]
              != got.samples[0].info["started_at"])
    finally:
        feed.stop()
    hist = [args["since"] for op, args in client.state.calls if op == "history"]
    assert hist.count(0) >= 2


def test_history_keeps_at_most_its_capacity_and_restarts_on_new_fields():
    h = History().extended(("seq", "rss"), [(i, i * 10) for i in range(1, 8)], capacity=5)
    assert h.column("seq") == (3, 4, 5, 6, 7) and h.last_seq == 7
    assert h.extended(("seq", "rss", "uss"), [(8, 1, 2)], 5).rows == ((8, 1, 2),)
    assert h.numbers("missing") == ()


def test_freeze_and_thaw_round_trip():
    data = {"a": [1, {"b": [2, 3]}], "c": None}
    frozen = freeze(data)
    assert thaw(frozen) == data
    assert clamp_interval(0) == feed_mod.MIN_INTERVAL and clamp_interval(99) == feed_mod.MAX_INTERVAL
