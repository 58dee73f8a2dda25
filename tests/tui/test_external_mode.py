"""The dashboard without an agent: MemtuiApp on an ExternalClient — the banner, the header, the
Overview's external panel, the agent-only panes' one line and their keys' one sentence — on a
real process, and layout snapshots from recorded figures (tests/tui/data/external.json)."""
from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any, Dict, Optional

import pytest

from memtui.attach.external import ExternalClient, history_row, stats_reply
from memtui.tui.app import MemtuiApp
from memtui.tui.panes.base import NoAgentLine

from .fake_client import FakeClient, load
from .pilot import FROZEN, run, screen_text, wait_for


class RecordedExternalClient(ExternalClient):
    """An ExternalClient serving real recorded figures: the last reading, and the readings
    before it as its history, whatever the clock — so that screens are deterministic."""

    def __init__(self, pid: int = 14607) -> None:
        super().__init__(pid)
        self.data = load("external")

    def connect(self) -> "RecordedExternalClient":
        fig = self.data["figure"]
        self.python = fig["python"]
        self.info = {"mode": "external", "pid": self.pid, "python": {"version": fig["python"]},
                     "env": None, "started_at": fig["create_time"], "agent_version": None,
                     "argv": [fig["command"]]}
        self._connected = True
        return self

    def clone(self) -> "RecordedExternalClient":
        return RecordedExternalClient(self.pid)

    def stats(self, components: bool = True, fresh: bool = False) -> Dict[str, Any]:
        fig = copy.deepcopy(self.data["figure"])
        return stats_reply(fig, len(self.data["history"]["rows"]))

    def history(self, since: int = 0, limit: Optional[int] = None,
                components: bool = False) -> Dict[str, Any]:
        hist = self.data["history"]
        rows = []
        for seq, values in enumerate(hist["rows"], 1):
            reading = dict(zip(hist["fields"], values))
            fig = {"time": reading.pop("t"), "process": reading}
            rows.append(list(history_row(fig, seq)))
        out = super().history(since, limit)
        out["rows"] = [r for r in rows if r[0] > since]
        out["last_seq"] = len(rows)
        return out


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _app(client: Any, **kw: Any) -> MemtuiApp:
    return MemtuiApp(client, interval=0.25, **kw)


def _text(app: MemtuiApp, selector: str) -> str:
    return str(app.query_one(selector).render())


def _notes(app: MemtuiApp):
    return [n.message for n in app._notifications]


# a real process --------------------------------------------------------------------------------
def test_external_view_of_a_process_that_is_not_python(sleeper):
    app = _app(ExternalClient(sleeper.pid))
    pid = sleeper.pid

    async def body(pilot):
        await wait_for(pilot, lambda: app.external, what="the external view")
        banner = app.query_one("#external-banner")
        assert banner.display and not app.query_one("#banner").display
        assert _text(app, "#external-banner") == (
            "PID %d has no agent, so no heap, GC, tracemalloc, caches, pools, workers or "
            "snapshots here; for Python, use `memtui run` or memtui.install()." % pid)
        header = screen_text(app)
        assert "PID %d external view  sleep 60" % pid in header and " no agent  rss " in header
        assert " env " not in header and "health" not in header
        # Overview: the RSS graph over the client's own readings, then /proc's figures
        graph = app.query_one("#graph-rss")
        await wait_for(pilot, lambda: len(graph.series) >= 3, what="three readings")
        shown = screen_text(app)
        for word in ("Process (from /proc)", "RSS", "USS", "PSS", "swap", "threads", "fds",
                     "children", "Mappings", "heap", "anonymous", "stacks", "files", "other",
                     "total"):
            assert word in shown, word
        for hidden in ("#graph-traced", "#overview-gc", "#overview-lower"):
            assert not app.query_one(hidden).display
        assert app.query_one("#external-process").region.height > 0
        # Heap: one line instead of tables, and its keys say why nothing happens
        await pilot.press("2")
        line = app.pane("heap").query_one(NoAgentLine)
        assert str(line.render()) == ("No agent in PID %d — for Python, use `memtui run` or "
                                      "memtui.install()." % pid)
        assert app.focused is line
        shown = app.pane("heap").region
        assert line.region == shown  # the pane's own widgets get no room
        for table in ("#heap-types", "#heap-sites"):
            assert app.query_one(table).region.intersection(shown).area == 0
        await pilot.press("g")
        await wait_for(pilot, lambda: _notes(app), what="a notification")
        assert _notes(app) == ["PID %d has no memtui agent (this is the external view); for "
                               "Python, use `memtui run` or memtui.install()." % pid]
        await pilot.press("s")  # a snapshot: its progress polling must not break the feed
        await wait_for(pilot, lambda: len(_notes(app)) == 2, what="a second notification")
        await pilot.pause(0.6)
        assert app.connection.state == "live"
        for key, pane in (("3", "caches"), ("4", "pools"), ("5", "workers"), ("6", "events"),
                          ("7", "profiles")):
            await pilot.press(key)
            assert "No agent in PID %d" % pid in screen_text(app), pane
            assert app.pane(pane).query(NoAgentLine)
        await pilot.pause(0.6)  # the component panes want the tuner: never asked of no agent
        assert app.connection.state == "live" and not app.query_one("#banner").display
        await pilot.press("1")
        # the process goes: the red banner says so, the external one stays
        sleeper.kill()
        sleeper.wait()
        await wait_for(pilot, lambda: app.connection.state == "lost", what="lost")
        assert app.query_one("#banner").display and banner.display
        assert "No process with PID %d." % pid in _text(app, "#banner")

    run(app, body, size=(80, 24))


def test_external_view_of_a_python_process_says_how_to_inject():
    proc = subprocess.Popen([sys.executable, "-c", "import time; print('ok', flush=True); "
                             "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ok"
        app = _app(ExternalClient(proc.pid))

        async def body(pilot):
            await wait_for(pilot, lambda: app.external, what="the external view")
            py = "%d.%d" % sys.version_info[:2]
            assert app.external.endswith("`memtui attach %d --inject` starts one." % proc.pid)
            assert "Python %s" % py in screen_text(app).splitlines()[0]
            await pilot.press("2")
            assert "No agent in PID %d — `memtui attach %d --inject` starts one." % (
                proc.pid, proc.pid) in screen_text(app)

        run(app, body)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_attaching_an_agent_after_the_external_view_leaves_it():
    """The picker's flow: an external view first, then a process with an agent."""
    app = MemtuiApp(RecordedExternalClient(), clock=lambda: FROZEN)

    async def body(pilot):
        await wait_for(pilot, lambda: app.external, what="the external view")
        assert app.pane("heap").query(NoAgentLine)
        app.attach(FakeClient().connect())
        await wait_for(pilot, lambda: app.external is None, what="the agent's view")
        await pilot.pause(0.1)
        assert not app.query_one("#external-banner").display
        assert not app.query(NoAgentLine)
        assert app.query_one("#overview-gc").display
        assert not app.query_one("#overview-external").display
        assert "env dev" in screen_text(app).splitlines()[0]

    run(app, body)


# layout snapshots ------------------------------------------------------------------------------
SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def fixed_world(no_memtui_env):
    """UTC (the conftest's) and none of the developer's MEMTUI* settings."""


def _then(keys):
    async def run_before(pilot):
        app = pilot.app
        await wait_for(pilot, lambda: app.last_sample is not None, what="first sample")
        app.feed.set_paused(True)  # nothing changes under the camera
        await pilot.pause(0.3)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.1)
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
    return run_before


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
@pytest.mark.parametrize("pane, keys", [("overview", []), ("heap", ["2"])],
                         ids=["overview", "heap"])
def test_external_layout(snap_compare, fixed_world, pane, keys, size):
    app = MemtuiApp(RecordedExternalClient(), clock=lambda: FROZEN)
    assert snap_compare(app, terminal_size=size, run_before=_then(keys))
