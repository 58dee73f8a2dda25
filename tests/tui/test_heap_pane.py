"""The Heap pane: sites and types with growth since a baseline, and every heap action (snapshot
with progress, baseline and diff, tracing, gc, leak suspects, referrers, sorting) — with the
recorded fake agent, and once against a real demo service."""
from __future__ import annotations

import threading

from rich.console import Console

from memtui.client import AgentClient
from memtui.protocol import RemoteError
from memtui.tui.app import MemtuiApp
from memtui.tui.panes import heap as heap_mod
from memtui.tui.screens import heap_views as views
from memtui.tui.screens.heap_views import HeapReport
from memtui.tui.widgets.keyed_table import KeyedTable

from .fake_client import FakeClient, FakeState
from .pilot import FROZEN, run, screen_text, wait_for

SITE = "/usr/lib/python3.11/threading.py:265"  # the largest site in heap_top.json


def _app(client=None, **kw):
    return MemtuiApp(client or FakeClient(), clock=lambda: FROZEN, **kw)


async def _open(pilot, rows=True):
    """Wait for the first sample, open the Heap pane and (with *rows*) its first figures."""
    app = pilot.app
    await wait_for(pilot, lambda: app.last_sample is not None, what="first sample")
    await pilot.press("2")
    pane = app.pane("heap")
    if rows:
        await wait_for(pilot, lambda: pane.figures is not None and _table(app, "types").row_count,
                       what="heap tables")
    await pilot.pause()
    return pane


def _table(app, which):
    return app.query_one("#heap-" + which, KeyedTable)


def _cell(app, which, key, column):
    table = _table(app, which)
    return table.row_cells(key)[table.column_keys.index(column)].plain


def _keys(table):
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


def _notes(app):
    return [(n.title, n.message, n.severity) for n in app._notifications]


def _report_text(app):
    screen = app.screen
    assert isinstance(screen, HeapReport), type(screen).__name__
    console = Console(width=160, record=True, color_system=None)
    console.print(screen.body)
    return console.export_text()


def _ops(client, op):
    return [args for name, args in client.state.calls if name == op]


def test_sites_and_types_come_from_the_agent_without_growth_before_a_baseline():
    client = FakeClient()
    app = _app(client)

    async def body(pilot):
        pane = await _open(pilot)
        data = client.state.data
        sites, types = _table(app, "sites"), _table(app, "types")
        assert sites.display and not app.query_one("#heap-trace-off").display
        assert sites.row_count == len(data["heap_top"]["entries"])
        assert _keys(sites)[0] == SITE  # sorted by size, largest first
        assert _cell(app, "sites", SITE, "size") == "27.5 KiB"
        assert _cell(app, "sites", SITE, "count") == "74"
        assert _cell(app, "sites", SITE, "dsize") == "-"
        assert _keys(types)[:2] == ["builtins.function", "builtins.tuple"]
        assert _cell(app, "types", "builtins.function", "count") == "3,820"
        assert _cell(app, "types", "builtins.function", "size") == "-"
        text = screen_text(app)
        for expected in ("Allocation sites · 85 sites, 87.0 KiB in 1,020 blocks",
                         "17,797 objects, 196 types", "size comes with a snapshot diff",
                         "tracemalloc on 3.9 MiB (peak 5.8 MiB)", "baseline none"):
            assert expected in text, expected
        assert _ops(client, "heap.top")[0]["limit"] == heap_mod.SITES_LIMIT
        assert pane.fetched_at == FROZEN and not _notes(app)

    run(app, body)


def test_rows_measure_growth_from_the_baseline_and_cut_names_from_the_left():
    top = {"entries": [{"file": "/srv/app/a.py", "line": 7, "size": 4096, "count": 10},
                       {"file": "/srv/app/b.py", "line": 9, "size": 100, "count": 1}]}
    types = {"types": [{"type": "builtins.dict", "count": 50}, {"type": "app.New", "count": 3}],
             "objects": 53, "distinct": 2}
    before = views.figures_from({"types": [{"type": "builtins.dict", "count": 60}]},
                                {"entries": [{"file": "/srv/app/a.py", "line": 7, "size": 1024,
                                              "count": 4}]})
    base = views.baseline_from(before, FROZEN)
    now = views.figures_from(types, top)
    sites = views.site_rows(now, base, 12)
    assert [c.plain for c in sites["/srv/app/a.py:7"]] == [
        "…/app/a.py:7", "4.0 KiB", "10", "+3.0 KiB", "+6"]
    assert sites["/srv/app/a.py:7"][0].sort_value == "/srv/app/a.py:7"  # sorts by the whole
    assert [c.plain for c in sites["/srv/app/b.py:9"]][3:] == ["new", "new"]
    rows = views.type_rows(now, base, {"builtins.dict": (2048, -512)}, 40)
    assert [c.plain for c in rows["builtins.dict"]] == [
        "builtins.dict", "50", "-10", "2.0 KiB", "-512 B"]
    assert rows["builtins.dict"][2].sort_value == -10
    assert [c.plain for c in rows["app.New"]][2:] == ["new", "-", "-"]
    untraced = views.baseline_from(views.figures_from(types, None), FROZEN)
    assert [c.plain for c in views.site_rows(now, untraced, 40)["/srv/app/a.py:7"]][3:] == \
        ["-", "-"]
    assert views.site_rows(now, None, 40)["/srv/app/a.py:7"][3].plain == "-"
    # suspects: the snapshots since the last census cut short are the comparable ones
    assert views.comparable({"snapshots": ["a", "b", "c", "d"], "incomplete": ["b"]}) == 2
    assert views.comparable({"snapshots": ["a", "b"], "comparable": 5}) == 5


class GatedClient(FakeClient):
    """heap.types waits for ``gate`` (shared by the clones): a fetch that takes its time."""

    def __init__(self, state=None, pid=14607, gate=None):
        super().__init__(state, pid)
        self.gate = gate or threading.Event()

    def clone(self):
        return GatedClient(self.state, self.pid, self.gate)

    def heap_types(self, limit=50):
        self.gate.wait(10)
        return super().heap_types(limit)


def test_fetches_never_overlap_and_come_again_while_the_pane_is_visible(monkeypatch):
    monkeypatch.setattr(heap_mod, "REFRESH_EVERY", 0.0)  # due at every poll
    client = GatedClient()
    app = _app(client, interval=0.25)

    async def body(pilot):
        await _open(pilot, rows=False)
        await wait_for(pilot, lambda: _ops(client, "heap.types"), what="first fetch")
        polls = len(_ops(client, "stats"))
        await wait_for(pilot, lambda: len(_ops(client, "stats")) >= polls + 3, what="3 polls")
        assert len(_ops(client, "heap.types")) == 1  # one still running: no second one
        client.gate.set()
        await wait_for(pilot, lambda: len(_ops(client, "heap.types")) >= 3, what="more fetches")
        await pilot.press("1")  # hidden: no more fetches
        await pilot.pause(0.1)
        n = len(_ops(client, "heap.types"))
        polls = len(_ops(client, "stats"))
        await wait_for(pilot, lambda: len(_ops(client, "stats")) >= polls + 3, what="3 polls")
        assert len(_ops(client, "heap.types")) <= n + 1  # at most the one in flight

    run(app, body)


def test_tracing_off_shows_how_to_start_it_and_t_toggles_tracing():
    state = FakeState()
    state.tracing = False
    client = FakeClient(state)
    app = _app(client)

    async def body(pilot):
        pane = await _open(pilot)
        hint = app.query_one("#heap-trace-off")
        assert hint.display and not _table(app, "sites").display
        text = screen_text(app)
        assert "tracemalloc is off — press t to start tracing (costs ~10× on" in text
        assert not _notes(app)  # not tracing is not an error
        assert _table(app, "types").row_count  # types come anyway
        await pilot.press("t")
        await wait_for(pilot, lambda: _table(app, "sites").row_count, what="sites")
        assert "trace.start" in client.ops() and state.tracing and pane.tracing
        assert _table(app, "sites").display and not hint.display
        assert _notes(app)[-1][0] == "Tracing on"
        await pilot.press("t")
        await wait_for(pilot, lambda: hint.display, what="hint again")
        assert "trace.stop" in client.ops() and not state.tracing
        assert _notes(app)[-1][0] == "Tracing off"

    run(app, body)


def test_snapshot_shows_its_progress_then_what_was_saved():
    state = FakeState()
    state.snapshot_gate = threading.Event()
    client = FakeClient(state)
    app = _app(client)

    async def body(pilot):
        pane = await _open(pilot)
        progress = app.query_one("#heap-progress")
        assert not progress.display
        await pilot.press("s")
        await wait_for(pilot, lambda: state.taking, what="snapshot.take running")
        assert app.feed.want_snapshot_status
        await wait_for(pilot, lambda: "census 40,000 / 80,000" in screen_text(app),
                       what="progress")
        assert progress.display
        bar = app.query_one("#heap-progress-bar")
        assert (bar.total, bar.progress) == (80000, 40000)
        await pilot.press("s")  # one at a time
        assert _notes(app)[-1][2] == "warning" and len(_ops(client, "snapshot.take")) == 1
        state.snapshot_gate.set()
        await wait_for(pilot, lambda: not progress.display, what="progress gone")
        assert not app.feed.want_snapshot_status
        saved = state.snapshots[-1]
        title, message, severity = _notes(app)[-1]
        assert title == "Snapshot saved" and severity == "information"
        assert message == "%s\n6.9 KiB, 54,017 objects in 1.75 s\nsaved in %s" % (
            saved["id"], state.data["snapshot_list"]["directory"])
        assert pane.last_snapshot["id"] == saved["id"]
        assert "snapshot 22:15:57 6.9 KiB" in screen_text(app)

    run(app, body)


class BusyClient(FakeClient):
    """An automatic snapshot is running in the agent: snapshot.take is refused."""

    def clone(self):
        return BusyClient(self.state, self.pid)

    def snapshot_take(self, **kw):
        self._call("snapshot.take", **kw)
        raise RemoteError("busy", "snapshot.take: a heap snapshot (interval) has been running")


def test_a_refused_snapshot_is_reported_once_and_clears_the_progress():
    client = BusyClient()
    app = _app(client)

    async def body(pilot):
        pane = await _open(pilot)
        await pilot.press("s")
        await wait_for(pilot, lambda: _notes(app), what="error")
        assert len(_notes(app)) == 1
        title, message, severity = _notes(app)[0]
        assert (title, severity) == ("Snapshot", "error") and "has been running" in message
        await wait_for(pilot, lambda: not app.query_one("#heap-progress").display,
                       what="progress gone")
        assert not app.feed.want_snapshot_status and pane.last_snapshot is None
        assert "Traceback" not in screen_text(app)

    run(app, body)


def test_baseline_then_diff_shows_growth_in_the_tables_and_a_report():
    client = FakeClient()
    state = client.state
    app = _app(client)

    async def body(pilot):
        pane = await _open(pilot)
        await pilot.press("d")  # no baseline yet
        assert _notes(app)[-1][0] == "Diff" and _notes(app)[-1][2] == "warning"
        assert not _ops(client, "snapshot.take")
        await pilot.press("b")
        await wait_for(pilot, lambda: pane.baseline and pane.baseline.snapshot_id,
                       what="baseline snapshot")
        base_id = pane.baseline.snapshot_id
        assert base_id == state.snapshots[-1]["id"]
        assert _cell(app, "sites", SITE, "dsize") == "0"
        assert _cell(app, "types", "builtins.dict", "dcount") == "0"
        assert "baseline 22:15:50" in screen_text(app)
        # the process grows: one site by 2 KiB and 10 blocks, dict by 100 objects, a new type
        state.data["heap_top"]["entries"][0].update(size=28120 + 2048, count=84)
        for row in state.data["heap_types"]["types"]:
            if row["type"] == "builtins.dict":
                row["count"] += 100
        state.data["heap_types"]["types"].insert(0, {"type": "app.Leaky", "count": 9999})
        await pilot.press("g")  # any action fetches the tables again at once
        await wait_for(pilot, lambda: _cell(app, "types", "builtins.dict", "dcount") == "+100",
                       what="growth")
        assert _cell(app, "sites", SITE, "dsize") == "+2.0 KiB"
        assert _cell(app, "sites", SITE, "dcount") == "+10"
        assert _cell(app, "types", "app.Leaky", "dcount") == "new"
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, HeapReport), what="diff report")
        diff = _ops(client, "snapshot.diff")[-1]
        assert diff == {"a": base_id, "b": state.snapshots[-1]["id"]}
        assert app.screen.kind == "diff"
        text = _report_text(app)
        for expected in ("baseline  " + base_id, "now       " + state.snapshots[-1]["id"],
                         "20 s apart · rss +4.5 MiB",
                         "Growth by type", "builtins.bytes", "+759.3 KiB",
                         "Growth by allocation site", "/srv/app/memtui/demo/service.py:48"):
            assert expected in text, expected
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HeapReport)
        # sizes come with the diff: the types table shows them now
        assert _cell(app, "types", "builtins.dict", "size") == "1.2 MiB"
        assert _cell(app, "types", "builtins.dict", "dsize") == "+143.3 KiB"
        assert "size, Δ size: diff at" in screen_text(app)

    run(app, body)


def test_diff_without_sites_says_how_to_get_them():
    client = FakeClient()
    client.state.data["snapshot_diff"]["sites"] = None
    app = _app(client)

    async def body(pilot):
        pane = await _open(pilot)
        await pilot.press("b")
        await wait_for(pilot, lambda: pane.baseline and pane.baseline.snapshot_id,
                       what="baseline")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, HeapReport), what="report")
        assert "both snapshots must be taken while tracing" in _report_text(app)

    run(app, body)


def test_gc_notifies_what_was_collected():
    client = FakeClient()
    app = _app(client)

    async def body(pilot):
        await _open(pilot)
        await pilot.press("g")
        await wait_for(pilot, lambda: _notes(app), what="gc")
        title, message, severity = _notes(app)[-1]
        assert title == "GC" and severity == "information"
        assert "gc.collect(2) in PID 14607: 0 unreachable objects in 4.7 ms" in message
        assert "(0 B freed)" in message
        assert _ops(client, "gc.collect") == [{"generation": 2}]

    run(app, body)


def test_leak_suspects_are_listed_ranked():
    client = FakeClient()
    app = _app(client)

    async def body(pilot):
        await _open(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, HeapReport), what="report")
        assert app.screen.kind == "suspects"
        text = _report_text(app)
        assert "Grew at every step across 3 snapshots (a run of 3 or more)" in text
        lines = [line.replace("│", " ") for line in text.splitlines()]
        first = next(line for line in lines if "builtins.bytes" in line)
        assert first.split()[:2] == ["1", "type"] and "+759.3 KiB" in first and "+1,995" in first
        second = next(line for line in lines if "service.py:48" in line)
        assert second.split()[:2] == ["2", "site"]

    run(app, body)


def test_leak_suspects_say_when_they_cannot_judge():
    client = FakeClient()
    report = client.state.data["suspects"]
    report.update(suspects=[], snapshots=report["snapshots"][:2])
    app = _app(client)

    async def body(pilot):
        await _open(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, HeapReport), what="report")
        text = _report_text(app)
        assert "Cannot judge leaks yet: 2 comparable snapshots, at least 3 needed" in text
        assert "No leak suspects" not in text

    run(app, body)


def test_referrers_of_the_selected_type():
    client = FakeClient()
    app = _app(client)

    async def body(pilot):
        await _open(pilot)
        await pilot.press("f")  # the sites table has the focus: f still means the types table's
        await wait_for(pilot, lambda: isinstance(app.screen, HeapReport), what="report")
        assert _ops(client, "heap.referrers")[-1] == {"type": "builtins.function"}
        await pilot.press("escape")
        types = _table(app, "types")
        types.focus()
        await pilot.press("down", "down", "down", "down")
        assert types.selected_key == "weakref.ReferenceType"
        await pilot.press("f")
        await wait_for(pilot, lambda: len(_ops(client, "heap.referrers")) == 2, what="asked")
        await wait_for(pilot, lambda: isinstance(app.screen, HeapReport), what="report")
        assert _ops(client, "heap.referrers")[-1] == {"type": "weakref.ReferenceType"}
        assert app.screen.kind == "referrers"
        text = _report_text(app)
        assert "weakref.ReferenceType: 1,110 instances, 3 sampled; 18,197 objects scanned" in text
        assert "1. weakref.ReferenceType at 0x7f3435b97b00" in text
        assert "← builtins.dict len=373  via [139861785653248]" in text
        assert "nothing else gc can see holds it" in text

    run(app, body)


def test_sorting_cycles_columns_and_keeps_the_selection():
    app = _app()

    async def body(pilot):
        await _open(pilot)
        sites = _table(app, "sites")
        assert app.screen.focused is sites
        await pilot.press("down")
        chosen = sites.selected_key
        assert chosen == "/usr/lib/python3.11/random.py:240" == _keys(sites)[1]
        await pilot.press("o")  # size → count
        assert sites.sort_by == "count"
        counts = [int(sites.row_cells(k)[2].plain.replace(",", "")) for k in _keys(sites)]
        assert counts == sorted(counts, reverse=True)
        assert sites.selected_key == chosen and _keys(sites)[0] == chosen  # most blocks
        assert "by count ↓ (o)" in screen_text(app)
        types = _table(app, "types")
        types.focus()
        await pilot.press("down")
        picked = types.selected_key
        key = types.columns[next(k for k in types.columns if k.value == "type")].key
        types.post_message(types.HeaderSelected(types, key, 0, types.columns[key].label))
        await pilot.pause()
        assert types.sort_by == "type" and types.selected_key == picked
        assert _keys(types) == sorted(_keys(types))  # names A→Z, by the whole name
        assert "by type ↑ (o)" in screen_text(app)

    run(app, body)


def test_the_pane_reads_well_at_80x24():
    app = _app()

    async def body(pilot):
        await _open(pilot)
        text = screen_text(app)
        assert "tracemalloc on" in text and "Allocation sites" in text and "Object types" in text
        assert "…ython3.11/threading.py:265" in text  # cut from the left: file:line stays
        assert "builtins.function" in text and "3,820" in text
        for line in text.splitlines():
            assert len(line) <= 80

    run(app, body, size=(80, 24))


def test_a_real_demo_service_shows_sites_once_tracing_starts(agent_env):
    from memtui.demo import DemoProcess

    with DemoProcess(["--interval", "0.2", "--exit-with-parent"], env=agent_env) as demo:
        app = MemtuiApp(AgentClient(pid=demo.pid), interval=0.25)

        async def body(pilot):
            await wait_for(pilot, lambda: app.last_sample is not None, timeout=15,
                           what="first sample")
            await pilot.press("2")
            pane = app.pane("heap")
            await wait_for(pilot, lambda: _table(app, "types").row_count, timeout=15,
                           what="types")
            assert "builtins.dict" in _keys(_table(app, "types"))
            if pane.tracing:  # the demo does not trace by default; stop it to start afresh
                await pilot.press("t")
                await wait_for(pilot, lambda: pane.tracing is False, timeout=15, what="stopped")
            await wait_for(pilot, lambda: app.query_one("#heap-trace-off").display, timeout=15,
                           what="the hint")
            await pilot.press("t")
            await wait_for(pilot, lambda: _table(app, "sites").row_count, timeout=20,
                           what="allocation sites")
            keys = _keys(_table(app, "sites"))
            assert all(":" in k and k.rsplit(":", 1)[1].isdigit() for k in keys)
            assert not [n for n in _notes(app) if n[2] == "error"], _notes(app)
            await pilot.press("t")  # leave the service as it was
            await wait_for(pilot, lambda: pane.tracing is False, timeout=15, what="stopped")

        run(app, body)


def test_a_growth_cell_that_widens_is_shown_whole():
    client = FakeClient()
    app = _app(client)

    async def body(pilot):
        pane = await _open(pilot)
        await pilot.press("b")
        await wait_for(pilot, lambda: pane.baseline and pane.baseline.snapshot_id,
                       what="baseline")
        client.state.data["heap_top"]["entries"][0].update(size=28120 + 2048, count=84)
        pane.fetch_figures(now=True)
        await wait_for(pilot, lambda: _cell(app, "sites", SITE, "dsize") == "+2.0 KiB",
                       what="growth")
        await pilot.pause()
        assert "+2.0 KiB" in screen_text(app)

    run(app, body)
