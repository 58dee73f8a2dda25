"""Caches, Pools and Workers panes: rows and cells from the agent's recorded replies, updates by
row key that keep the selection, the detail view with its graphs and the tuner's advice, and the
demo service's caches through a real agent."""
from __future__ import annotations

import asyncio
import io
from typing import Any, Callable, Dict, List

from rich.console import Console

from memtui.client import AgentClient
from memtui.demo import DemoProcess
from memtui.tui.app import MemtuiApp
from memtui.tui.panes.components import ComponentPane
from memtui.tui.screens.component_detail import ComponentDetail
from memtui.tui.widgets.graph import Graph
from memtui.tui.widgets.keyed_table import KeyedTable
from .fake_client import ComponentHistoryClient, FakeClient, record_sample

CLOCK = 1795299350.0


def run(main: Callable[[], Any]) -> None:
    asyncio.run(main())


async def until(pilot: Any, condition: Callable[[], Any], what: str, tries: int = 400) -> None:
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.025)
    raise AssertionError("never happened: " + what)


async def open_pane(app: MemtuiApp, pilot: Any, key: str) -> ComponentPane:
    await until(pilot, lambda: app.last_sample is not None, "first sample")
    await pilot.press(key)
    pane = app.active_pane
    assert isinstance(pane, ComponentPane)
    await until(pilot, lambda: table_of(pane).row_count > 0, "rows in %s" % pane.PANE_ID)
    return pane


def shown(widget: Any, width: int = 200) -> str:
    """The text a Static shows, as plain text."""
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def table_of(pane: ComponentPane) -> KeyedTable:
    return pane.query_one(KeyedTable)


def cells(pane: ComponentPane, name: str) -> Dict[str, str]:
    """Column key -> the text shown in *name*'s row."""
    table = table_of(pane)
    row = table.row_cells(name)
    assert row is not None, "no row %r" % name
    return {key: getattr(c, "plain", str(c)) for key, c in zip(table.column_keys, row)}


async def select(pilot: Any, pane: ComponentPane, name: str) -> None:
    table = table_of(pane)
    table.focus()
    for _ in range(table.row_count):
        if table.selected_key == name:
            return
        await pilot.press("down")
    assert table.selected_key == name


def history_asks(client: FakeClient) -> List[int]:
    """The `since` of each history request that asked for component stats."""
    return [args["since"] for op, args in list(client.state.calls)
            if op == "history" and args.get("components")]


def test_caches_table_wide() -> None:
    async def main() -> None:
        app = MemtuiApp(FakeClient(), clock=lambda: CLOCK)
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await open_pane(app, pilot, "3")
            table = table_of(pane)
            await until(pilot, lambda: "warm" in table.column_keys, "wide columns")
            assert set(table.rows) == {"search", "sessions", "templates", "users"}
            users = cells(pane, "users")
            assert users["hit_rate"] == "76.4%"
            assert users["evictions"] == "0"
            assert users["hot"] == "278.9 KiB" and users["warm"] == "-"
            assert users["entries"] == "496/2000"
            assert users["tuner"] == "▲ max_entries 2000→4000"
            search = cells(pane, "search")
            assert search["evictions"] == "size 382"
            assert (search["hot"], search["warm"], search["cold"]) == ("511.8 KiB", "12.6 KiB",
                                                                       "0 B")
            assert search["tuner"] == ""
            assert cells(pane, "sessions")["evictions"] == "expired 537"
            templates = cells(pane, "templates")  # an lru_cache adapter: no bytes, no timings
            assert (templates["hot"], templates["load_p95"]) == ("-", "-")
            assert templates["evictions"] == "size 417"
            assert "request_log" not in table.rows  # a custom component: Overview shows it
            assert table.border_title == "4 caches"
    run(main)


def test_caches_table_narrow_shows_memory_and_selected_details() -> None:
    async def main() -> None:
        app = MemtuiApp(FakeClient(), clock=lambda: CLOCK)
        async with app.run_test(size=(80, 24)) as pilot:
            pane = await open_pane(app, pilot, "3")
            table = table_of(pane)
            assert table.column_keys == ("name", "hit_rate", "evictions", "memory", "tuner")
            assert cells(pane, "search")["memory"] == "524.4 KiB"  # hot and warm tiers
            assert cells(pane, "templates")["memory"] == "-"
            assert cells(pane, "users")["tuner"] == "▲ max_entries 4000"
            await select(pilot, pane, "search")
            info = shown(pane.query_one(".component-selected"))
            assert "hot 511.8 KiB · warm 12.6 KiB · cold 0 B" in info
            await select(pilot, pane, "users")
            info = shown(pane.query_one(".component-selected"))
            assert "the working set does not fit" in info
    run(main)


def test_pools_and_workers_tables() -> None:
    async def main() -> None:
        app = MemtuiApp(FakeClient(), clock=lambda: CLOCK)
        async with app.run_test(size=(120, 40)) as pilot:
            pools = await open_pane(app, pilot, "4")
            assert set(table_of(pools).rows) == {"db"}
            db = cells(pools, "db")
            assert (db["size"], db["in_use"], db["idle"], db["waiters"]) == ("4/4", "1", "3", "0")
            assert db["wait_p95"] == "0 µs"
            assert db["tuner"] == "▲ max_size 4→6"
            workers = await open_pane(app, pilot, "5")
            assert set(table_of(workers).rows) == {"requests", "audit"}
            requests = cells(workers, "requests")
            assert (requests["kind"], requests["active"], requests["queued"]) == \
                ("workers", "1", "0")
            assert requests["latency_p95"] == "36.9 ms"
            assert requests["throughput"] == "44.3/s"
            assert requests["workers"] == "4/4"
            assert requests["tuner"] == "▲ max_workers 4→8"
            audit = cells(workers, "audit")  # a batch processor, in its own terms
            assert (audit["kind"], audit["active"], audit["queued"]) == ("batch", "0", "13")
            assert audit["latency_p95"] == "504.4 ms"
            assert (audit["completed"], audit["throughput"], audit["workers"]) == \
                ("2085", "-", "-")
            assert table_of(workers).border_title == "1 worker pool · 1 batch processor"
    run(main)


def test_changed_stats_update_cells_and_keep_the_selection() -> None:
    async def main() -> None:
        client = FakeClient()
        app = MemtuiApp(client, interval=0.25, clock=lambda: CLOCK)
        async with app.run_test(size=(80, 24)) as pilot:
            pane = await open_pane(app, pilot, "3")
            table = table_of(pane)
            await pilot.press("o")  # by hit rate, highest first
            assert (table.sort_by, table.sort_reverse) == ("hit_rate", True)
            assert [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(4)] == \
                ["search", "templates", "users", "sessions"]
            await select(pilot, pane, "users")
            assert table.cursor_row == 2

            def change(comps: Dict[str, Any]) -> None:
                comps["users"]["stats"]["hit_rate"] = 0.95
                comps["users"]["stats"]["evictions"]["size"] = 137
                comps["users"]["stats"]["evictions"]["expired"] = 4
                comps["search"]["stats"]["hit_rate"] = 0.10

            record_sample(client.state, change)
            await until(pilot, lambda: cells(pane, "users")["hit_rate"] == "95.0%", "new rate")
            assert cells(pane, "users")["evictions"] == "size 137 · expired 4"
            assert cells(pane, "search")["hit_rate"] == "10.0%"
            assert table.selected_key == "users"
            assert table.cursor_row == 0  # re-sorted, and the cursor went with the row
            await pilot.press("O")
            assert table.sort_reverse is False and table.selected_key == "users"
            assert table.cursor_row == 3
    run(main)


def test_a_component_that_goes_away_loses_its_row() -> None:
    async def main() -> None:
        client = FakeClient()
        app = MemtuiApp(client, interval=0.25, clock=lambda: CLOCK)
        async with app.run_test(size=(80, 24)) as pilot:
            pane = await open_pane(app, pilot, "3")
            await select(pilot, pane, "users")
            record_sample(client.state, lambda comps: comps.pop("templates"))
            table = table_of(pane)
            await until(pilot, lambda: "templates" not in table.rows, "templates row removed")
            assert set(table.rows) == {"search", "sessions", "users"}
            assert table.selected_key == "users"
            assert table.border_title == "3 caches"
            record_sample(client.state, lambda comps: [comps.pop(n) for n in list(comps)
                                                       if comps[n]["kind"] == "cache"])
            await until(pilot, lambda: not table.rows, "every cache gone")
            empty = pane.query_one(".component-empty")
            assert empty.display and "No caches in PID 14607" in shown(empty)
    run(main)


def test_a_failing_component_is_marked() -> None:
    async def main() -> None:
        client = FakeClient()
        app = MemtuiApp(client, interval=0.25, clock=lambda: CLOCK)
        async with app.run_test(size=(80, 24)) as pilot:
            pane = await open_pane(app, pilot, "4")

            def fail(comps: Dict[str, Any]) -> None:
                comps["db"] = {"kind": "pool", "stats": {}, "error": "RuntimeError: boom",
                               "errors": 1}

            record_sample(client.state, fail)
            await until(pilot, lambda: cells(pane, "db")["name"] == "db !", "error mark")
            assert cells(pane, "db")["in_use"] == "-"
            assert "stats() failed: RuntimeError: boom" in shown(pane.query_one(".component-selected"))
    run(main)


def test_detail_view_graphs_history_and_recommendation() -> None:
    async def main() -> None:
        client = ComponentHistoryClient()
        app = MemtuiApp(client, interval=0.25, clock=lambda: CLOCK)
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await open_pane(app, pilot, "3")
            await select(pilot, pane, "users")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ComponentDetail), "detail open")
            detail = app.screen
            assert isinstance(detail, ComponentDetail) and detail.component == "users"
            await until(pilot, lambda: len(detail.series.rows) == 58, "recorded history")
            hit, memory, entries = detail.query(Graph)
            assert (hit.title, memory.title, entries.title) == ("hit rate", "memory", "entries")
            recorded = client.state.data["component_history"]["components"]
            rates = [r["components"]["users"]["stats"]["hit_rate"] for r in recorded]
            assert rates[0] is None  # no lookups yet: a gap, not a zero
            assert len(hit.series) == 57 and len(memory.series) == 58
            assert round(hit.series[-1], 1) == 76.4  # the latest poll's figure
            assert memory.series[-1] == 285586
            assert "58 samples recorded by the agent" in shown(detail.query_one("#detail-source"))
            text = " ".join(shown(detail.query_one("#detail-recs")).split())
            assert "max_entries 2000 → 4000" in text
            assert "the working set does not fit" in text
            assert "evictions_size 310" in text
            stats = shown(detail.query_one("#detail-stats"))
            assert "listener_errors" in stats and "32.0 MiB" in stats

            record_sample(client.state,
                          lambda comps: comps["users"]["stats"].update(hit_rate=0.5))
            await until(pilot, lambda: len(hit.series) == 58, "a new recorded sample")
            assert hit.series[-1] == 50.0
            await until(pilot, lambda: history_asks(client)[-1:] == [58], "asked since 58")
            seq = app.last_sample.seq
            await until(pilot, lambda: app.last_sample.seq >= seq + 3, "three more polls")
            # one ask when the view opened, one per newly recorded sample: polls alone never ask
            assert history_asks(client) == [0, 58]
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, ComponentDetail), "closed")
            assert pane.detail is None
    run(main)


def test_detail_without_agent_component_history_grows_from_polls() -> None:
    async def main() -> None:
        client = FakeClient()  # an agent run with component_history = 0
        app = MemtuiApp(client, interval=0.25, clock=lambda: CLOCK)
        async with app.run_test(size=(80, 24)) as pilot:
            pane = await open_pane(app, pilot, "5")
            await select(pilot, pane, "audit")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ComponentDetail), "detail open")
            detail = app.screen
            assert isinstance(detail, ComponentDetail) and detail.kind == "batch"
            await until(pilot, lambda: detail.series.last_seq == 58, "history answered")
            assert "keeps no component history" in shown(detail.query_one("#detail-source"))
            record_sample(client.state, lambda c: c["audit"]["stats"].update(pending=40))
            pending = detail.query(Graph).first()
            assert pending.title == "pending"
            await until(pilot, lambda: pending.series == (13.0, 40.0), "a second point")
            assert "The tuner has no recommendation for audit." in shown(detail.query_one("#detail-recs"))
    run(main)


def test_keys_are_listed_for_help_and_palette() -> None:
    app = MemtuiApp(None)
    groups = dict(app.binding_groups())
    for title in ("Caches", "Pools", "Workers"):
        descriptions = {b.description for b in groups[title]}
        assert {"Details", "Sort", "Reverse sort"} <= descriptions


def test_demo_caches_through_a_real_agent() -> None:
    async def main() -> None:
        with DemoProcess(["--interval", "0.2", "--exit-with-parent"]) as demo:
            client = AgentClient(pid=demo.pid)
            app = MemtuiApp(client, interval=0.25)
            async with app.run_test(size=(120, 40)) as pilot:
                pane = await open_pane(app, pilot, "3")
                table = table_of(pane)
                await until(pilot, lambda: {"users", "sessions", "search", "templates"}
                            <= set(table.rows), "the demo's caches")
                assert cells(pane, "templates")["hot"] == "-"  # the lru_cache adapter
                await until(pilot, lambda: cells(pane, "users")["hit_rate"].endswith("%"),
                            "the users cache's first lookups")
                await select(pilot, pane, "search")
                await pilot.press("enter")
                await until(pilot, lambda: isinstance(app.screen, ComponentDetail), "detail")
                detail = app.screen
                assert isinstance(detail, ComponentDetail)
                await until(pilot, lambda: detail.series.recorded
                            and len(detail.query(Graph).first().series) >= 2,
                            "the agent's recorded hit rates")
                await pilot.press("escape")
            client.close()
    run(main)
