"""One cache, pool or worker pool in detail: graphs over the agent's recorded history, the tuner's
recommendations for it with their reasons, and every stat it reports."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import Resize
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Static

from ...render import fmt_bytes, fmt_ms, fmt_pct, fmt_value
from ..model import EMPTY, Sample, component_bytes
from ..widgets.graph import Graph

CAPACITY = 600  # recorded samples kept per open view
THIRD_GRAPH_WIDTH = 100  # screen width from which a third graph fits
TIERS = ("warm", "cold")  # a cache's tiers below its hot one, in the order data moves down


def number(value: Any) -> Optional[float]:
    """*value* as a float when it is a number (bools and None are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _count(v: float) -> str:
    return "%d" % v


def _rate(v: float) -> str:
    return "%.1f/s" % v


class GraphSpec(NamedTuple):
    title: str
    value: Callable[[Mapping[str, Any]], Any]  # stats -> number or None
    fmt: Callable[[float], str]
    style: str
    caption: Callable[[Mapping[str, Any]], str] = lambda stats: ""


def _get(key: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda stats: stats.get(key)


def _hit_pct(stats: Mapping[str, Any]) -> Optional[float]:
    rate = number(stats.get("hit_rate"))
    return None if rate is None else rate * 100.0


def _most(key: str, fmt: Callable[[Any], str]) -> Callable[[Mapping[str, Any]], str]:
    def caption(stats: Mapping[str, Any]) -> str:
        return "" if number(stats.get(key)) is None else "max %s" % fmt(stats.get(key))
    return caption


def _cache_limit(stats: Mapping[str, Any]) -> str:
    # max_bytes bounds the hot tier alone; with tiers the graph's total is not bounded by it
    return "" if stats.get("tiers") else _most("max_bytes", fmt_bytes)(stats)


GRAPHS: Dict[str, Tuple[GraphSpec, ...]] = {
    "cache": (GraphSpec("hit rate", _hit_pct, fmt_pct, "green"),
              GraphSpec("memory", component_bytes, fmt_bytes, "magenta", _cache_limit),
              GraphSpec("entries", _get("entries"), _count, "cyan",
                        _most("max_entries", str))),
    "pool": (GraphSpec("in use", _get("in_use"), _count, "green", _most("max_size", str)),
             GraphSpec("waiters", _get("waiters"), _count, "yellow"),
             GraphSpec("wait p95", _get("wait_p95_ms"), fmt_ms, "magenta")),
    "workers": (GraphSpec("queued", _get("queued"), _count, "yellow",
                          _most("queue_size", str)),
                GraphSpec("latency p95", _get("latency_p95_ms"), fmt_ms, "magenta"),
                GraphSpec("throughput", _get("throughput_per_s"), _rate, "green")),
    "batch": (GraphSpec("pending", _get("pending"), _count, "yellow"),
              GraphSpec("latency p95", _get("latency_p95_ms"), fmt_ms, "magenta"),
              GraphSpec("batch p95", _get("batch_p95_ms"), fmt_ms, "green")),
}


class ComponentSeries:
    """One component's stats by the agent's sample seq: from its recorded history (when it
    keeps one) and from each poll's stats, which carry the latest recorded figures."""

    def __init__(self, name: str, capacity: int = CAPACITY) -> None:
        self.name = name
        self.capacity = capacity
        self.rows: Dict[int, Mapping[str, Any]] = {}
        self.last_seq: Optional[int] = None  # of the last history reply; None before one
        self.recorded = False  # the agent returned component history

    def add_history(self, reply: Mapping[str, Any]) -> None:
        if "components" in reply:
            self.recorded = True
        for row in reply.get("components") or ():
            item = (row.get("components") or EMPTY).get(self.name)
            if isinstance(item, Mapping) and isinstance(row.get("seq"), int):
                # a poll's stats already gave this seq's figures: the same ones, keep them
                self.rows.setdefault(row["seq"], item.get("stats") or EMPTY)
        if isinstance(reply.get("last_seq"), int):
            self.last_seq = reply["last_seq"]
        self._trim()

    def add_sample(self, sample: Sample) -> None:
        item = (sample.stats.get("components") or EMPTY).get(self.name)
        seq = sample.stats.get("seq")
        if isinstance(item, Mapping) and isinstance(seq, int) and not item.get("error"):
            self.rows[seq] = item.get("stats") or EMPTY
            self._trim()

    def _trim(self) -> None:
        for seq in sorted(self.rows)[:-self.capacity]:
            del self.rows[seq]

    def values(self, value: Callable[[Mapping[str, Any]], Any]) -> Tuple[float, ...]:
        found = (number(value(self.rows[seq])) for seq in sorted(self.rows))
        return tuple(v for v in found if v is not None)


# text ----------------------------------------------------------------------------------------
def _stat_text(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value  # notes and paths in full: there is room here
    if isinstance(value, Mapping):
        shown = ["%s %s" % (k, _stat_text(k, v)) for k, v in value.items()
                 if not isinstance(v, (Mapping, list, tuple))]
        return " · ".join(shown) or "-"
    return fmt_value(key, value)


def stats_renderable(stats: Mapping[str, Any], width: int) -> RenderableType:
    """Every stat as name/value pairs side by side (as many pairs as fit), tiers as a table."""
    scalars = [(k, v) for k, v in sorted(stats.items()) if k != "tiers"
               and not isinstance(v, (Mapping, list, tuple)) and not _long(v)]
    lines = [(k, v) for k, v in sorted(stats.items()) if k != "tiers" and (
        isinstance(v, (Mapping, list, tuple)) or _long(v))]
    pairs = max(1, min(3, width // 36))
    grid = Table.grid(padding=(0, 2), expand=False)
    for _ in range(pairs):
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(justify="right", no_wrap=True, overflow="ellipsis")
    rows = (len(scalars) + pairs - 1) // pairs
    for r in range(rows):
        cells: List[Any] = []
        for p in range(pairs):  # down the first column, then the next: reads like a list
            i = p * rows + r
            cells += ([Text(scalars[i][0]), Text(_stat_text(*scalars[i]))] if i < len(scalars)
                      else ["", ""])
        grid.add_row(*cells)
    parts: List[RenderableType] = [grid]
    for key, value in lines:
        parts.append(Text.assemble((key + "  ", "bold"), _stat_text(key, value)))
    tiers = stats.get("tiers")
    if isinstance(tiers, Mapping) and tiers:
        parts.append(tiers_table(tiers))
        for name, tier in tiers.items():
            for key, value in (tier.items() if isinstance(tier, Mapping) else ()):
                if isinstance(value, str):
                    parts.append(Text.assemble(("%s %s  " % (name, key), "bold"), value))
    return Group(*parts)


def _long(value: Any) -> bool:
    return isinstance(value, str) and len(value) > 24


def tiers_table(tiers: Mapping[str, Any]) -> Table:
    """Tier figures side by side (text such as a cold tier's file path goes below it)."""
    names = sorted((n for n, t in tiers.items() if isinstance(t, Mapping)),
                   key=lambda n: (TIERS.index(n) if n in TIERS else len(TIERS), n))
    table = Table(box=None, padding=(0, 2), title="tiers", title_justify="left",
                  title_style="bold", header_style="bold")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    keys: List[str] = []
    for name in names:
        keys += [k for k, v in tiers[name].items() if k not in keys and not isinstance(v, str)]
    for key in keys:
        table.add_row(Text(key), *(Text(_stat_text(key, tiers[n].get(key))) for n in names))
    return table


def recommendation_lines(rec: Mapping[str, Any]) -> Tuple[Text, Text]:
    """("● warning", "max_entries 2000 → 4000\nreason\nevidence: ...") for one recommendation."""
    from ..panes.overview import SEVERITY_STYLE  # noqa: PLC0415 - that package imports this one

    setting = str(rec.get("setting", "?"))
    severity = str(rec.get("severity", "info"))
    head = Text("● " + severity, style=SEVERITY_STYLE.get(severity, ""))
    body = Text()
    body.append("%s %s → %s" % (setting, _stat_text(setting, rec.get("current")),
                                _stat_text(setting, rec.get("suggested"))), style="bold")
    if rec.get("reason"):
        body.append("\n" + str(rec["reason"]))
    evidence = rec.get("evidence") or EMPTY
    if evidence:
        body.append("\nevidence: " + " · ".join(
            "%s %s" % (k, _stat_text(k, v)) for k, v in evidence.items()), style="dim")
    return head, body


def recommendations_renderable(name: str, recs: Tuple[Mapping[str, Any], ...]) -> RenderableType:
    if not recs:
        return Text("The tuner has no recommendation for %s." % name, style="dim")
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    for rec in recs:
        grid.add_row(*recommendation_lines(rec))
    return grid


# the screen ----------------------------------------------------------------------------------
class ComponentDetail(ModalScreen):
    """Shown over the pane that opened it; that pane hands it each poll's sample (:meth:`show`)
    and the agent's history replies (:meth:`add_history`)."""

    BINDINGS = [Binding("escape,enter", "dismiss", "Close")]

    def __init__(self, name: str, kind: str, sample: Sample) -> None:
        super().__init__()
        self.component = name
        self.kind = kind
        self.series = ComponentSeries(name)
        self.specs = GRAPHS.get(kind, ())
        self.sample = sample
        self.series.add_sample(sample)
        self._ready = False  # set once the widgets are there to draw on

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-body"):
            with Horizontal(id="detail-graphs"):
                for i, spec in enumerate(self.specs):
                    yield Graph(spec.title, spec.fmt, spec.style, id="detail-graph-%d" % i)
            yield Static(id="detail-source")
            yield Static(id="detail-recs")
            with VerticalScroll(id="detail-stats-scroll"):
                yield Static(id="detail-stats")

    def on_mount(self) -> None:
        body = self.query_one("#detail-body")
        body.border_title = escape("%s · %s" % (self.component, self.kind))
        body.border_subtitle = "esc closes"
        self.query_one("#detail-recs").border_title = "Tuner"
        self.query_one("#detail-stats-scroll").focus()
        self._ready = True
        self._draw()

    def on_unmount(self) -> None:
        self._ready = False  # a history reply may still arrive after the view closed

    def show(self, sample: Sample) -> None:
        self.sample = sample
        self.series.add_sample(sample)
        self._draw()

    def add_history(self, reply: Mapping[str, Any]) -> None:
        self.series.add_history(reply)
        self._draw()

    def on_resize(self, event: Resize) -> None:
        self._draw()

    def _entry(self) -> Optional[Mapping[str, Any]]:
        item = (self.sample.stats.get("components") or EMPTY).get(self.component)
        return item if isinstance(item, Mapping) else None

    def _draw(self) -> None:
        if not self._ready:
            return
        entry = self._entry()
        stats = (entry.get("stats") if entry else None) or EMPTY
        room = 3 if self.size.width >= THIRD_GRAPH_WIDTH else 2
        for i, spec in enumerate(self.specs):
            graph = self.query_one("#detail-graph-%d" % i, Graph)
            graph.series = self.series.values(spec.value)
            graph.caption = spec.caption(stats)
            # a figure this component never reports (an lru_cache's bytes) gets no graph
            reported = bool(graph.series) or not self.series.rows
            graph.display = reported and room > 0
            room -= reported
        self.query_one("#detail-source", Static).update(self._source_text(entry))
        self.query_one("#detail-recs", Static).update(recommendations_renderable(
            self.component, tuple(self.sample.recommendations_for(self.component))))
        stats_view: RenderableType
        if entry is None:
            stats_view = Text("%s is no longer registered with the agent." % self.component,
                              style="bold yellow")
        elif entry.get("error"):
            stats_view = Text("stats() failed: %s" % entry["error"], style="bold red")
        else:
            stats_view = stats_renderable(stats, max(1, self.size.width - 6))
        self.query_one("#detail-stats", Static).update(stats_view)

    def _source_text(self, entry: Optional[Mapping[str, Any]]) -> Text:
        n = len(self.series.rows)
        interval = number(self.sample.info.get("interval"))
        text = Text(style="dim", no_wrap=True, overflow="ellipsis")
        if self.series.recorded:
            text.append("%d samples recorded by the agent" % n)
            if interval and n > 1:
                text.append(", one every %gs" % interval)
        elif self.series.last_seq is None:
            text.append("asking the agent for its history…")
        else:
            text.append("the agent keeps no component history (agent option "
                        "component_history = 0): %d samples seen since this view opened" % n)
        if entry is not None and entry.get("errors"):
            text.append("  stats() failed %d times" % entry["errors"], style="red")
        return text
