"""Overview: RSS and traced-heap graphs over the recorded history, GC, open alerts and the
components holding the most memory — or, in the external view (no agent), the RSS graph over
the readings so far and what /proc tells: process figures, mappings by class, children."""
from __future__ import annotations

from typing import Any, Mapping

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from ...render import (MAPPING_COLUMNS, NARROW_MAPPING_COLUMNS, children_table,
                       external_process_table, fmt_bytes, fmt_duration, fmt_ms, mappings_table,
                       unavailable_text)
from ..model import Sample, component_bytes
from ..widgets.graph import Graph
from ..widgets.keyed_table import KeyedTable, cell
from .base import Pane

SEVERITY_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan",
                  "debug": "dim"}
TOP_COMPONENTS = 8
WIDE_MAPPINGS = 70  # the mappings box width from which every mappings column is shown


def gc_text(stats: Mapping[str, Any]) -> Text:
    gc = (stats.get("heap") or {}).get("gc") or {}
    pause = gc.get("pause_ms") or {}
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("GC ", style="bold")
    if not gc:
        return text.append("no figures", style="dim")
    coll = gc.get("collections") or ()
    text.append("runs %s" % "/".join(str(c) for c in coll))
    text.append("  freed %s" % sum(gc.get("collected") or ()))
    unc = sum(gc.get("uncollectable") or ())
    text.append("  uncollectable ")
    text.append(str(unc), style="bold red" if unc else "")
    text.append("  pause p95 %s max %s last %s" % (
        fmt_ms(pause.get("p95")), fmt_ms(max(pause.get("max") or (0,))),
        fmt_ms(pause.get("last"))))
    if not gc.get("enabled", True):
        text.append("  DISABLED", style="bold yellow")
    if gc.get("frozen"):
        text.append("  frozen %s" % gc["frozen"])
    return text


def alerts_text(sample: Sample) -> Text:
    alerts = sample.stats.get("alerts") or ()
    text = Text()
    if not alerts:
        text.append("No open alerts.", style="green")
        return text
    for alert in alerts:
        sev = str(alert.get("severity", "warning"))
        since = alert.get("since")
        age = sample.received - since if isinstance(since, (int, float)) else None
        text.append("● %s " % sev, style=SEVERITY_STYLE.get(sev, ""))
        text.append(str(alert.get("message", "")))
        if age is not None and age >= 0:
            text.append(" (%s)" % fmt_duration(age), style="dim")
        text.append("\n")
    text.rstrip()
    return text


class OverviewPane(Pane):
    PANE_ID = "overview"
    TITLE = "Overview"
    KEY = "1"
    NEEDS_AGENT = False  # the external view has figures for it too

    def compose(self) -> ComposeResult:
        with Horizontal(id="overview-graphs"):
            yield Graph("RSS", fmt_bytes, "green", id="graph-rss")
            yield Graph("traced heap", fmt_bytes, "magenta", id="graph-traced")
        yield Static(id="overview-gc")
        with Horizontal(id="overview-lower"):
            yield Static(id="overview-alerts")
            yield KeyedTable(id="overview-top")
        with Horizontal(id="overview-external"):  # shown instead in the external view
            yield Static(id="external-process")
            yield Static(id="external-maps")

    def on_mount(self) -> None:
        self.query_one("#overview-alerts").border_title = "Alerts"
        self.query_one("#external-process").border_title = "Process (from /proc)"
        self.query_one("#external-maps").border_title = "Mappings"
        top = self.query_one("#overview-top", KeyedTable)
        top.border_title = "Top components by memory"
        top.set_columns([("component", "name"), ("kind", "kind"), ("bytes", "bytes"),
                         ("% rss", "share")])
        top.sort_by = "bytes"

    def show(self, sample: Sample) -> None:
        if self.external:
            self._show_external(sample)
            return
        stats = sample.stats
        rss = self.query_one("#graph-rss", Graph)
        rss.series = sample.history.numbers("rss")
        peak = (stats.get("process") or {}).get("rss_peak")
        limit = (stats.get("memory") or {}).get("limit")
        rss.caption = "  ".join(x for x in (
            "peak %s" % fmt_bytes(peak) if peak else "",
            "limit %s" % fmt_bytes(limit) if limit else "") if x)
        traced = self.query_one("#graph-traced", Graph)
        tm = (stats.get("heap") or {}).get("tracemalloc") or {}
        traced.series = sample.history.numbers("traced")
        traced.caption = ("peak %s" % fmt_bytes(tm.get("peak")) if tm.get("tracing")
                          else "tracing off (Heap pane: t)")
        self.query_one("#overview-gc", Static).update(gc_text(stats))
        self.query_one("#overview-alerts", Static).update(alerts_text(sample))
        self._top(sample)

    def _top(self, sample: Sample) -> None:
        rss = (sample.stats.get("process") or {}).get("rss") or 0
        kinds = sample.kinds()
        sized = [(name, component_bytes(st)) for name, st in sample.components().items()]
        sized = sorted(((n, b) for n, b in sized if b is not None), key=lambda x: -x[1])
        rows = {}
        for name, nbytes in sized[:TOP_COMPONENTS]:
            share = nbytes / rss * 100.0 if rss else None
            rows[name] = (name, kinds.get(name, ""), cell(fmt_bytes(nbytes), nbytes),
                          cell("-" if share is None else "%.1f%%" % share, share))
        self.query_one("#overview-top", KeyedTable).sync(rows)

    def _show_external(self, sample: Sample) -> None:
        fig = sample.stats.get("external") or {}
        p = fig.get("process") or {}
        rss = self.query_one("#graph-rss", Graph)
        rss.series = sample.history.numbers("rss")
        rss.caption = "peak %s" % fmt_bytes(p.get("rss_peak")) if p.get("rss_peak") else ""
        process = self.query_one("#external-process", Static)
        parts = [external_process_table(fig, title=None)]
        unavailable = unavailable_text(fig)
        if unavailable is not None:
            parts.append(unavailable)
        process.update(Group(*parts))
        maps = self.query_one("#external-maps", Static)
        wide = maps.size.width >= WIDE_MAPPINGS
        parts = [mappings_table(fig, MAPPING_COLUMNS if wide else NARROW_MAPPING_COLUMNS,
                                title=None)]
        children = children_table(fig, limit=8) if wide else None  # else: a count in Process
        if children is not None:
            parts.append(children)
        maps.update(Group(*parts))
