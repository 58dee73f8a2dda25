"""Heap: the top allocation sites (tracemalloc) and object types with their growth since a
baseline, and the heap actions — snapshot (with progress), baseline, diff, tracing, gc, leak
suspects, referrers of a type. heap.top and heap.types are slow ops: they are fetched here, every
few seconds while the pane is visible and never two at once, not by the feed."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.events import Resize
from textual.widgets import DataTable, ProgressBar, Static
from textual.worker import Worker

from ...protocol import UNAVAILABLE, RemoteError
from ...render import fmt_bytes, gc_text
from ..model import Sample
from ..screens.heap_views import (LABELS, SITE_KEYS, TYPE_KEYS, Baseline, HeapFigures,
                                  HeapReport, baseline_from, columns, count_text, diff_view,
                                  figures_from, referrers_view, site_rows, snapshot_line,
                                  suspects_view, type_rows)
from ..widgets.keyed_table import KeyedTable
from .base import Pane
from .events import clock_text

SITES_LIMIT = 100  # rows asked of heap.top and heap.types (their cost is the same for any limit)
TYPES_LIMIT = 100
DIFF_LIMIT = 50
REFRESH_EVERY = 5.0  # seconds between two fetches of the tables while the pane is visible
TRACE_OFF = ("tracemalloc is off — press t to start tracing (costs ~10× on allocation-heavy "
             "code)")
# Room the four number columns take (widest cells plus padding), the border and the scrollbar:
# what is left goes to the site or type name, cut from the left so file:line stays whole.
NUMBERS_WIDTH = 10 + 8 + 11 + 8 + 4 * 2 + 2 + 2 + 2
MIN_NAME = 16


def read_figures(client: Any) -> HeapFigures:
    """heap.types and heap.top from *client* (in a worker). Not tracing is not an error here:
    the pane shows how to start it instead."""
    types = client.heap_types(limit=TYPES_LIMIT)
    try:
        top = client.heap_top(limit=SITES_LIMIT)
    except RemoteError as exc:
        if exc.code != UNAVAILABLE:
            raise
        top = None
    return figures_from(types, top)


class HeapPane(Pane):
    PANE_ID = "heap"
    TITLE = "Heap"
    KEY = "2"
    BINDINGS = [
        Binding("s", "snapshot", "Snapshot",
                tooltip="Take a heap snapshot (progress shown)"),
        Binding("b", "baseline", "Baseline",
                tooltip="Growth columns count from now; takes the snapshot d diffs against"),
        Binding("d", "diff", "Diff",
                tooltip="Take a snapshot and diff it against the baseline's"),
        Binding("t", "trace", "Trace", tooltip="Start or stop tracemalloc"),
        Binding("g", "gc", "GC", tooltip="Force a full garbage collection"),
        Binding("l", "suspects", "Leaks", tooltip="Leak suspects across recent snapshots"),
        Binding("f", "referrers", "Referrers",
                tooltip="Who holds instances of the selected type"),
        Binding("o", "sort", "Sort", show=False,
                tooltip="Sort the focused table by its next column (or click a header)"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.figures: Optional[HeapFigures] = None
        self.baseline: Optional[Baseline] = None
        self.type_sizes: Dict[str, Tuple[int, int]] = {}  # type → (size, Δ size) from the diff
        self.sizes_at: Optional[float] = None
        self.last_snapshot: Optional[Mapping[str, Any]] = None
        self.tracing: Optional[bool] = None
        self.fetched_at: Optional[float] = None  # app clock, for the status line
        self._due = 0.0  # monotonic time of the next fetch
        self._fetch: Optional[Worker] = None
        self._fetch_again = False
        self._take: Optional[Worker] = None
        self._taking = ""
        self._agent: Any = None
        self._baseline_pending = False  # b pressed before the first figures came

    # layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="heap-status")
        with Horizontal(id="heap-progress"):
            yield Static(id="heap-progress-label")
            yield ProgressBar(id="heap-progress-bar", show_eta=False)
        yield Static(TRACE_OFF, id="heap-trace-off")
        yield KeyedTable(id="heap-sites")
        yield KeyedTable(id="heap-types")

    def on_mount(self) -> None:
        sites = self.query_one("#heap-sites", KeyedTable)
        sites.set_columns(columns(SITE_KEYS))
        sites.sort_by = "size"
        types = self.query_one("#heap-types", KeyedTable)
        types.set_columns(columns(TYPE_KEYS))
        types.sort_by = "count"
        self.query_one("#heap-trace-off").border_title = "Allocation sites"
        self.query_one("#heap-progress").display = False
        self.query_one("#heap-trace-off").display = False
        self._draw_tables()

    def on_connection(self, live: bool) -> None:
        if live:
            self._due = 0.0  # back: fetch with the first sample

    def focus_default(self) -> None:
        sites = self.query_one("#heap-sites", KeyedTable)
        (sites if sites.display else self.query_one("#heap-types", KeyedTable)).focus()

    # data in --------------------------------------------------------------------------------
    def show(self, sample: Sample) -> None:
        agent = (sample.pid, sample.info.get("started_at"))
        if agent != self._agent:  # another process, or the same one restarted: start over
            self._agent = agent
            self.figures, self.baseline, self.type_sizes, self.sizes_at = None, None, {}, None
            self._baseline_pending = False
            self.last_snapshot, self._due = None, 0.0
        tm = (sample.stats.get("heap") or {}).get("tracemalloc") or {}
        if "tracing" in tm:
            self.tracing = bool(tm.get("tracing"))
        self._draw_progress(sample.snapshot_status)
        self._draw_status(sample)
        self._draw_tables()
        self.fetch_figures()

    def fetch_figures(self, now: bool = False) -> None:
        """Fetch the tables if due (or *now*); never while a fetch or a snapshot is running."""
        if _running(self._fetch) or _running(self._take):
            self._fetch_again = self._fetch_again or now
            return
        if not now and time.monotonic() < self._due:
            return
        self._due = time.monotonic() + REFRESH_EVERY
        self._fetch_again = False
        self._fetch = self.dash.run_agent_action("Heap tables", read_figures, self._fetched)

    def _fetched(self, figures: HeapFigures) -> None:
        self.figures = figures
        self.fetched_at = self.dash.clock()
        if self._baseline_pending and self.baseline is not None:
            self._baseline_pending = False
            self.baseline = replace(baseline_from(figures, self.baseline.at),
                                    snapshot_id=self.baseline.snapshot_id)
        self._draw_tables()
        if self.sample is not None:
            self._draw_status(self.sample)
        if self._fetch_again:
            self.call_later(self.fetch_figures, True)

    # drawing --------------------------------------------------------------------------------
    def _name_width(self, table: KeyedTable) -> int:
        width = table.size.width or self.size.width or self.app.size.width
        return max(MIN_NAME, width - NUMBERS_WIDTH)

    def _draw_tables(self) -> None:
        sites = self.query_one("#heap-sites", KeyedTable)
        types = self.query_one("#heap-types", KeyedTable)
        off = self.tracing is False
        self.query_one("#heap-trace-off").display = off
        if off and sites.has_focus:
            types.focus()
        sites.display = not off
        fig = self.figures
        if fig is not None:
            sites.sync(site_rows(fig, self.baseline, self._name_width(sites)))
            types.sync(type_rows(fig, self.baseline, self.type_sizes, self._name_width(types)))
        title = "Allocation sites"
        if fig is not None and fig.sites is not None:
            title += " · %s sites, %s in %s blocks" % (
                count_text(fig.site_total), fmt_bytes(fig.traced_size),
                count_text(fig.traced_count))
        sites.border_title = title
        sites.border_subtitle = _sorted_by(sites)
        if self.baseline is not None and self.baseline.sites is None and not off:
            sites.border_subtitle = "Δ: the baseline has no sites, b sets a new one · " \
                + sites.border_subtitle
        title = "Object types (gc-tracked)"
        if fig is not None:
            title += " · %s objects, %s types" % (count_text(fig.objects),
                                                  count_text(fig.distinct))
        types.border_title = title
        if self.sizes_at is not None:
            sizes = "size, Δ size: diff at %s" % clock_text(self.sizes_at)
        else:
            sizes = "size comes with a snapshot diff (b, then d)"
        types.border_subtitle = "%s · %s" % (sizes, _sorted_by(types))

    def _draw_status(self, sample: Sample) -> None:
        tm = (sample.stats.get("heap") or {}).get("tracemalloc") or {}
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("tracemalloc ", style="bold")
        if self.tracing:
            text.append("on", style="bold green")
            text.append(" %s (peak %s)" % (fmt_bytes(tm.get("current")), fmt_bytes(tm.get("peak"))))
        elif self.tracing is False:
            text.append("off", style="yellow")
        else:
            text.append("?", style="dim")
        text.append("  baseline ", style="bold")
        if self.baseline is None:
            text.append("none (b sets one)", style="dim")
        else:
            text.append(clock_text(self.baseline.at))
            if self.baseline.snapshot_id is None:
                text.append(" (snapshot pending)" if self._taking == "baseline"
                            else " (no snapshot: b again)", style="yellow")
        if self.last_snapshot is not None:
            text.append("  snapshot ", style="bold")
            text.append("%s %s" % (clock_text(self.last_snapshot.get("taken_at")),
                                   fmt_bytes(self.last_snapshot.get("bytes"))))
        if self.fetched_at is not None:
            text.append("  updated %s" % clock_text(self.fetched_at), style="dim")
        self.query_one("#heap-status", Static).update(text)

    def _draw_progress(self, status: Optional[Mapping[str, Any]]) -> None:
        row = self.query_one("#heap-progress")
        if not _running(self._take):
            row.display = False
            return
        row.display = True
        label = Text("%s: " % self._taking.capitalize(), style="bold")
        bar = self.query_one("#heap-progress-bar", ProgressBar)
        if status and status.get("running"):
            done, total = status.get("done") or 0, status.get("total")
            label.append(str(status.get("phase") or "…"))
            if total:
                label.append(" %s / %s" % (count_text(done), count_text(total)))
            elif done:
                label.append(" %s" % count_text(done))
            bar.update(total=total or None, progress=done)
        else:
            label.append("starting…")
            bar.update(total=None, progress=0)
        self.query_one("#heap-progress-label", Static).update(label)

    def on_resize(self, event: Resize) -> None:
        self._draw_tables()

    # sorting --------------------------------------------------------------------------------
    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        table = event.data_table
        if isinstance(table, KeyedTable) and event.column_key.value:
            sort_table(table, event.column_key.value)
            self._draw_tables()
        event.stop()

    def action_sort(self) -> None:
        focused = self.screen.focused
        table = focused if isinstance(focused, KeyedTable) and self in focused.ancestors \
            else self.query_one("#heap-sites" if self.tracing else "#heap-types", KeyedTable)
        keys = table.column_keys
        at = keys.index(table.sort_by) if table.sort_by in keys else -1
        sort_table(table, keys[(at + 1) % len(keys)])
        self._draw_tables()

    # snapshots ------------------------------------------------------------------------------
    def _take_snapshot(self, what: str, then: Optional[Callable[[Any, Dict[str, Any]], Any]],
                       done: Callable[[Any], None]) -> bool:
        """Take a snapshot in a worker, with progress, then ``then(client, meta)``; *done* gets
        what that returns (the metadata without *then*)."""
        if _running(self._take):
            self.notify("A snapshot is being taken already; wait for it to finish.",
                        title="Heap", severity="warning")
            return False
        feed = self.dash.feed
        if feed is not None:
            feed.want_snapshot_status = True
            feed.poll_now()  # a slow refresh rate would hold the first progress back

        def call(client: Any) -> Any:
            try:
                meta = client.snapshot_take(reason="manual")
                return then(client, meta) if then is not None else meta
            finally:
                if feed is not None:
                    feed.want_snapshot_status = False

        def finish(result: Any) -> None:
            self._taking = ""
            self._draw_progress(None)
            done(result)

        self._taking = what
        self._take = self.dash.run_agent_action("Snapshot", call, finish)
        self._draw_progress(None)
        return True

    def _remember(self, meta: Mapping[str, Any]) -> None:
        self.last_snapshot = meta
        if self.sample is not None:
            self._draw_status(self.sample)

    def action_snapshot(self) -> None:
        self._take_snapshot("snapshot", None, self._snapshot_taken)

    def _snapshot_taken(self, meta: Mapping[str, Any]) -> None:
        self._remember(meta)
        self.notify(snapshot_line(meta), title="Snapshot saved", timeout=8)
        self.fetch_figures(now=True)

    def action_baseline(self) -> None:
        at = self.dash.clock()
        previous = self.baseline, self._baseline_pending
        if self.figures is not None:
            self.baseline = baseline_from(self.figures, at)
        else:  # the first figures, when they come, are the baseline
            self.baseline = Baseline(at=at, types={}, sites=None)
        self._baseline_pending = self.figures is None
        if not self._take_snapshot("baseline", None, self._baseline_taken):
            self.baseline, self._baseline_pending = previous
            return
        self.type_sizes, self.sizes_at = {}, None
        self._draw_tables()
        if self.sample is not None:
            self._draw_status(self.sample)

    def _baseline_taken(self, meta: Mapping[str, Any]) -> None:
        if self.baseline is not None:
            self.baseline = replace(self.baseline, snapshot_id=meta.get("id"))
        self._remember(meta)
        self.notify("Growth now counts from %s; d diffs against its snapshot."
                    % clock_text(self.baseline.at if self.baseline else None),
                    title="Baseline set")
        self.fetch_figures(now=True)

    def action_diff(self) -> None:
        base = self.baseline.snapshot_id if self.baseline is not None else None
        if base is None:
            self.notify("No baseline snapshot yet: press b to set one, then d to diff against it.",
                        title="Diff", severity="warning")
            return

        def then(client: Any, meta: Dict[str, Any]) -> Any:
            return meta, client.snapshot_diff(base, meta.get("id"), limit=DIFF_LIMIT)

        self._take_snapshot("diff", then, self._diffed)

    def _diffed(self, result: Tuple[Mapping[str, Any], Mapping[str, Any]]) -> None:
        meta, diff = result
        self._remember(meta)
        self.type_sizes = {str(r.get("type")): (int(r.get("size") or 0),
                                                int(r.get("size_delta") or 0))
                           for r in diff.get("types") or ()}
        self.sizes_at = meta.get("taken_at") or self.dash.clock()
        self._draw_tables()
        self.app.push_screen(HeapReport("Growth since the baseline", diff_view(diff), kind="diff"))
        self.fetch_figures(now=True)

    # other actions --------------------------------------------------------------------------
    def action_trace(self) -> None:
        if self.tracing:
            self.run_action("Stop tracing", lambda c: c.trace_stop(), self._traced)
        else:
            self.run_action("Start tracing", lambda c: c.trace_start(), self._traced)

    def _traced(self, result: Mapping[str, Any]) -> None:
        self.tracing = bool(result.get("tracing"))
        if self.baseline is not None and self.baseline.sites is not None:
            # tracemalloc starts counting afresh: the baseline's sites no longer compare
            self.baseline = replace(self.baseline, sites=None)
        if self.tracing:
            frames = result.get("nframes")
            self.notify("Allocation sites are recorded from now (%s frame%s); every allocation "
                        "costs ~10× more until t stops it." % (frames, "" if frames == 1 else "s"),
                        title="Tracing on")
        else:
            self.notify("Allocation sites are no longer recorded.", title="Tracing off")
        if self.figures is not None and not self.tracing:
            self.figures = replace(self.figures, sites=None)
        self._draw_tables()
        self.fetch_figures(now=True)

    def action_gc(self) -> None:
        self.run_action("Force GC", lambda c: c.gc_collect(), self._collected)

    def _collected(self, result: Mapping[str, Any]) -> None:
        pid = (self.sample.pid if self.sample else None) or getattr(self.dash.client, "pid", 0)
        self.notify(gc_text(int(pid or 0), result).plain, title="GC")
        self.fetch_figures(now=True)

    def action_suspects(self) -> None:
        self.run_action("Leak suspects", lambda c: c.snapshot_suspects(), lambda r:
                        self.app.push_screen(HeapReport("Leak suspects", suspects_view(r),
                                                        kind="suspects")))

    def action_referrers(self) -> None:
        name = self.query_one("#heap-types", KeyedTable).selected_key
        if not name:
            self.notify("Select a type in the types table first.", title="Referrers",
                        severity="warning")
            return
        self.run_action("Referrers of %s" % name, lambda c: c.heap_referrers(name), lambda r:
                        self.app.push_screen(HeapReport("Who holds %s" % name, referrers_view(r),
                                                        kind="referrers")))


def sort_table(table: KeyedTable, column: str) -> None:
    """Figures sort largest first, names A→Z first; asking for the same column again flips."""
    if column in ("site", "type") and table.sort_by != column:
        table.sort_by, table.sort_reverse = column, True  # sort_on flips it to ascending
    table.sort_on(column)


def _running(worker: Optional[Worker]) -> bool:
    return worker is not None and not worker.is_finished


def _sorted_by(table: KeyedTable) -> str:
    if not table.sort_by:
        return "o sorts"
    return "by %s %s (o)" % (LABELS.get(table.sort_by, table.sort_by),
                             "↓" if table.sort_reverse else "↑")
