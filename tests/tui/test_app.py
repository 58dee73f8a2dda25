"""The dashboard shell: header, pause, help, palette, the disconnection banner, the Overview and
Events panes — with the recorded fake agent, and once against a real demo service."""
from __future__ import annotations

import os
import time


from memtui.client import AgentClient
from memtui.tui import feed as feed_mod
from memtui.tui.app import PANES, MemtuiApp
from memtui.tui.widgets.keyed_table import KeyedTable

from .fake_client import FakeClient
from .pilot import FROZEN, run, screen_text, wait_for


def _app(client=None, **kw):
    return MemtuiApp(client or FakeClient(), clock=lambda: FROZEN, **kw)


async def _ready(pilot):
    await wait_for(pilot, lambda: pilot.app.last_sample is not None, what="first sample")
    await pilot.pause()


def test_header_shows_who_and_how_and_pause_stops_the_feed():
    client = FakeClient()
    app = _app(client)

    async def body(pilot):
        await _ready(pilot)
        text = screen_text(app)
        for expected in ("PID 14607", "Python 3.11.7", "env dev", "health 90", "rss 33.5 MiB",
                         "● live", "every 1s", "service.py"):
            assert expected in text, expected
        await pilot.press("p")
        assert "PAUSED" in screen_text(app)
        await pilot.pause(0.1)
        n = client.ops().count("stats")
        await pilot.pause(1.5)
        assert client.ops().count("stats") == n
        await pilot.press("p")
        await wait_for(pilot, lambda: client.ops().count("stats") > n, what="polling again")
        assert "PAUSED" not in screen_text(app)
        await pilot.press("minus")
        assert app.interval == 2.0 and app.feed.interval == 2.0
        assert "every 2s" in screen_text(app)
        await pilot.press("plus", "plus")
        assert app.interval == 0.5

    run(app, body)


def test_a_client_connected_before_the_app_starts_shows_live():
    client = FakeClient().connect()  # `memtui attach` connects first, to fail before any TUI
    app = _app(client)

    async def body(pilot):
        await _ready(pilot)
        await wait_for(pilot, lambda: "● live" in screen_text(app), what="live in the header")

    run(app, body)


def test_overview_graphs_gc_alerts_and_top_components():
    app = _app()

    async def body(pilot):
        await _ready(pilot)
        text = screen_text(app)
        assert "RSS 33.5 MiB" in text and "traced heap" in text
        assert "GC runs 124/11/1" in text
        assert "cache sessions hit rate" in text
        top = app.query_one("#overview-top", KeyedTable)
        order = [top.coordinate_to_cell_key((i, 0)).row_key.value for i in range(top.row_count)]
        assert order[:3] == ["request_log", "search", "users"]  # by bytes, largest first
        graph = app.query_one("#graph-rss")
        assert len(graph.series) == len(app.last_sample.history.rows)

    run(app, body, size=(80, 24))


def test_every_pane_opens_by_its_key_and_shows_without_errors():
    client = FakeClient()
    app = _app(client)

    async def body(pilot):
        await _ready(pilot)
        await pilot.pause(0.3)
        assert "tuner.recommend" not in client.ops()  # the Overview does not show them
        await pilot.press("3")
        await wait_for(pilot, lambda: "tuner.recommend" in client.ops(), what="tuner asked")
        for pane in PANES:
            await pilot.press(pane.KEY)
            await pilot.pause()
            assert app.active_pane.PANE_ID == pane.PANE_ID
        await pilot.press("1")
        assert app.active_pane.PANE_ID == "overview"

    run(app, body)


def test_help_lists_every_binding_and_the_palette_offers_pane_actions():
    app = _app()

    async def body(pilot):
        await _ready(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert "memtui keys" in screen_text(app)
        from rich.console import Console

        from memtui.tui.screens.help import HelpScreen, help_table

        assert isinstance(app.screen, HelpScreen)
        console = Console(width=100, record=True, file=open(os.devnull, "w"))
        console.print(help_table(app.screen.groups))
        listed = console.export_text()
        for title, bindings in app.binding_groups():
            for b in bindings:
                assert (b.tooltip or b.description) in listed, (title, b.description)
        assert "Pause" in listed and "Severity" in listed
        await pilot.press("escape")
        await pilot.pause()
        assert "memtui keys" not in screen_text(app)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Show Events" in titles and "Events: Severity" in titles
        for pane in PANES:
            for b in pane.BINDINGS:
                desc = b.description if hasattr(b, "description") else b[2]
                if desc:
                    assert "%s: %s" % (pane.TITLE, desc) in titles

    run(app, body)


def test_palette_command_switches_pane_and_runs_the_action():
    app = _app()

    async def body(pilot):
        await _ready(pilot)
        command = next(c for c in app.get_system_commands(app.screen)
                       if c.title == "Events: Severity")
        command.callback()
        await pilot.pause(0.2)
        assert app.active_pane.PANE_ID == "events"
        assert app.pane("events").lowest == "info"

    run(app, body)


def test_agent_vanishing_shows_a_banner_and_reconnects(monkeypatch):
    monkeypatch.setattr(feed_mod, "RETRY_DELAYS", (0.1,))
    client = FakeClient()
    app = _app(client)

    async def body(pilot):
        await _ready(pilot)
        banner = app.query_one("#banner")
        assert not banner.display
        client.kill()
        await wait_for(pilot, lambda: banner.display, what="banner")
        text = screen_text(app)
        assert "14607" in text and "Retrying in 0.1s" in text and "● lost" in text
        assert "Traceback" not in text
        assert app.query_one("#tabs").has_class("-stale")
        assert "RSS 33.5 MiB" in text  # the last figures stay on screen
        client.revive()
        await wait_for(pilot, lambda: not banner.display, what="banner gone")
        assert "● live" in screen_text(app)
        assert not app.query_one("#tabs").has_class("-stale")

    run(app, body)


def test_an_agent_not_there_yet_is_a_waiting_banner_not_an_error(monkeypatch):
    monkeypatch.setattr(feed_mod, "RETRY_DELAYS", (0.1,))
    client = FakeClient()
    client.kill()  # e.g. `memtui run` before its command has started the agent
    app = _app(client)

    async def body(pilot):
        banner = app.query_one("#banner")
        await wait_for(pilot, lambda: banner.display, what="banner")
        assert banner.has_class("-waiting") and "● connecting" in screen_text(app)
        client.revive()
        await wait_for(pilot, lambda: app.last_sample is not None, what="first sample")
        await wait_for(pilot, lambda: not banner.display, what="banner gone")
        client.kill()
        await wait_for(pilot, lambda: banner.display and not banner.has_class("-waiting"),
                       what="lost banner")
        assert "● lost" in screen_text(app)

    run(app, body)


def test_action_errors_surface_once_as_a_notification():
    client = FakeClient()
    app = _app(client)

    async def body(pilot):
        await _ready(pilot)
        seen = []
        client.state.tracing = False
        app.run_agent_action("Heap sites", lambda c: c.heap_top(), seen.append)
        await wait_for(pilot, lambda: app._notifications, what="notification")
        note = list(app._notifications)[0]
        assert note.severity == "error" and "not tracing" in note.message
        assert seen == []
        app.run_agent_action("GC", lambda c: c.gc_collect(), seen.append)
        await wait_for(pilot, lambda: seen, what="result")
        assert seen[0]["collected"] == client.state.data["gc"]["collected"]
        # actions use their own connection, not the feed's
        assert app._action_client is not client and app._action_client.connected

    run(app, body)


def test_events_filter_by_text_and_severity():
    app = _app()

    async def body(pilot):
        await _ready(pilot)
        await pilot.press("6")
        table = app.query_one("#events-table", KeyedTable)
        await wait_for(pilot, lambda: table.row_count, what="events")
        total = table.row_count
        assert total == len(app.last_sample.events)
        first = table.coordinate_to_cell_key((0, 0)).row_key.value
        assert int(first) == max(e["seq"] for e in app.last_sample.events)  # newest first
        await pilot.press("slash")
        await pilot.press(*"snapshot")
        await pilot.pause()
        kinds = {e["kind"] for e in app.last_sample.events
                 if str(e["seq"]) in {table.coordinate_to_cell_key((i, 0)).row_key.value
                                      for i in range(table.row_count)}}
        assert 0 < table.row_count < total and kinds <= {"snapshot", "action", "agent"}
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == total
        await pilot.press("s", "s")  # debug → info → warning
        await pilot.pause()
        warnings = [e for e in app.last_sample.events if e["severity"] == "warning"]
        assert table.row_count == len(warnings) > 0
        assert "severity ≥ warning" in screen_text(app)

    run(app, body)


def test_attached_to_a_real_demo_service_shows_its_live_numbers(agent_env):
    from memtui.demo import DemoProcess

    with DemoProcess(["--interval", "0.2", "--exit-with-parent"], env=agent_env) as demo:
        client = AgentClient(pid=demo.pid)
        app = MemtuiApp(client, interval=0.25)

        async def body(pilot):
            await wait_for(pilot, lambda: app.last_sample is not None and
                           app.last_sample.history.rows, timeout=15, what="first sample")
            first = app.last_sample
            await wait_for(pilot, lambda: app.last_sample.seq > first.seq + 2, timeout=15,
                           what="more samples")
            text = screen_text(app)
            assert "PID %d" % demo.pid in text and "● live" in text
            top = app.query_one("#overview-top", KeyedTable)
            assert {"users", "search"} <= {top.coordinate_to_cell_key((i, 0)).row_key.value
                                           for i in range(top.row_count)}
            assert len(app.last_sample.history.rows) > len(first.history.rows)
            demo.stop()
            await wait_for(pilot, lambda: app.query_one("#banner").display, timeout=10,
                           what="banner after the demo exits")
            assert str(demo.pid) in app.connection.message, app.connection.message
            assert app.connection.message.split("  ")[0][:30] in screen_text(app)
            assert "Traceback" not in screen_text(app)

        run(app, body)


def test_markup_in_agent_text_is_shown_literally_never_parsed(monkeypatch):
    """Review finding: a component named "[/]x" ended the dashboard with a MarkupError."""
    monkeypatch.setattr(feed_mod, "RETRY_DELAYS", (0.1,))
    client = FakeClient()
    comps = client.state.data["stats"]["components"]
    comps["[/]x"] = dict(comps["users"])
    comps["[bold]pool[/]"] = dict(comps["db"])
    comps["[bold]pool[/]"]["stats"] = dict(comps["db"]["stats"], note="[/]")
    client.state.data["events"]["events"][0]["kind"] = "[/]odd"
    app = _app(client)

    async def body(pilot):
        await _ready(pilot)
        for key in ("1", "3", "4", "6"):
            await pilot.press(key)
            await pilot.pause(0.1)
        await pilot.press("4")
        table = app.query_one("#pools KeyedTable")
        keys = [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]
        table.move_cursor(row=keys.index("[bold]pool[/]"))
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert "[bold]pool[/]" in screen_text(app)
        await pilot.press("escape")
        client.path = "/tmp/r6[/]rt/14607.sock"
        client.kill()
        await wait_for(pilot, lambda: app.query_one("#banner").display, what="banner")
        assert app.is_running

    run(app, body)


def test_quit_does_not_wait_for_a_poll_stuck_on_a_stopped_target():
    """Review finding: q took 5 s while the target was SIGSTOPped (feed joined for 5 s)."""
    import threading

    gate = threading.Event()

    class Stuck(FakeClient):
        def stats(self, *a, **k):
            if self.state.data.get("stuck"):
                gate.wait(10)
            return super().stats(*a, **k)

    client = Stuck()
    app = _app(client)
    timing = {}

    async def body(pilot):
        await _ready(pilot)
        client.state.data["stuck"] = True
        await pilot.pause(1.5)  # the next poll is now stuck inside stats()
        timing["t0"] = time.monotonic()

    run(app, body)
    timing["t1"] = time.monotonic()
    gate.set()
    assert timing["t1"] - timing["t0"] < 3.0  # not the feed's 5 s join (a functional bound)
