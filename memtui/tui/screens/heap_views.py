"""What the Heap pane shows, as pure functions of the agent's replies: the sites and types rows
with their growth since a baseline, and the reports — a diff against the baseline, leak suspects,
the referrer chains of a type — with the modal screen that shows one.

Every string from the heap (type names, reprs, paths) goes into a Text, never parsed as markup."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ...render import fmt_bytes
from ..widgets.keyed_table import cell

GROWTH_STYLE = ("green", "dim", "red")  # shrank, unchanged, grew

# How a referrer chain ended (heap.referrers "ends"), in words.
ENDS = {
    "module": "held by a module global",
    "class": "held by a class attribute",
    "frame": "held by a frame",
    "unreachable": "nothing else gc can see holds it (garbage, or a running function's local)",
    "depth": "the chain goes on past the search depth",
    "budget": "the search ran out of time here",
}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def count_text(n: Any) -> str:
    return "{:,}".format(n) if is_number(n) else "-"


def delta_text(n: Any, size: bool = True) -> Text:
    """"+1.2 KiB" in red, "-3" in green, "0" dimmed; "-" when not a number."""
    if not is_number(n):
        return Text("-", style="dim")
    body = fmt_bytes(n) if size else "{:,}".format(n)
    return Text(("+" if n > 0 else "") + body,
                style=GROWTH_STYLE[(n > 0) - (n < 0) + 1])


def _table(*columns: str, left: Sequence[str] = ()) -> Table:
    """Names take what the figures leave and fold (a path's end must stay readable)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for col in columns:
        if col in left:
            table.add_column(col, overflow="fold")
        else:
            table.add_column(col, justify="right", no_wrap=True)
    return table


def _more(shown: int, total: Any, what: str) -> Optional[Text]:
    if is_number(total) and total > shown:
        return Text("… and %s more %s" % (count_text(total - shown), what), style="dim")
    return None


# -- the tables ----------------------------------------------------------------------------------
LABELS = {"site": "site", "type": "type", "size": "size", "count": "count", "dsize": "Δ size",
          "dcount": "Δ count"}
SITE_KEYS = ("site", "size", "count", "dsize", "dcount")
TYPE_KEYS = ("type", "count", "dcount", "size", "dsize")


def columns(keys: Tuple[str, ...]) -> List[Tuple[Any, str]]:
    """(label, key) for KeyedTable.set_columns; figures' labels sit right, over their numbers."""
    return [(LABELS[k] if k in ("site", "type") else Text(LABELS[k], justify="right"), k)
            for k in keys]


@dataclass(frozen=True)
class HeapFigures:
    """One fetch: heap.types and, while tracing, heap.top (``sites`` None when not tracing)."""

    types: Tuple[Tuple[str, int], ...]
    objects: Optional[int]
    distinct: Optional[int]
    sites: Optional[Tuple[Tuple[str, int, int], ...]]  # ("file:line", size, count)
    site_total: Optional[int] = None  # how many sites tracemalloc has
    traced_size: Optional[int] = None
    traced_count: Optional[int] = None


@dataclass(frozen=True)
class Baseline:
    """The figures growth is measured from, and the snapshot a diff starts from."""

    at: float
    types: Mapping[str, int]
    sites: Optional[Mapping[str, Tuple[int, int]]]  # None: not tracing then (or restarted since)
    snapshot_id: Optional[str] = None


def figures_from(types: Mapping[str, Any], top: Optional[Mapping[str, Any]]) -> HeapFigures:
    """A heap.types reply and a heap.top one (None: not tracing) as the tables' figures."""
    sites = None
    if top is not None:
        sites = tuple(("%s:%s" % (e.get("file", "?"), e.get("line", "?")),
                       int(e.get("size") or 0), int(e.get("count") or 0))
                      for e in top.get("entries") or ())
    return HeapFigures(
        types=tuple((str(t.get("type")), int(t.get("count") or 0))
                    for t in types.get("types") or ()),
        objects=types.get("objects"), distinct=types.get("distinct"), sites=sites,
        site_total=top.get("sites") if top else None,
        traced_size=top.get("total_size") if top else None,
        traced_count=top.get("total_count") if top else None)


def baseline_from(figures: HeapFigures, at: float) -> Baseline:
    sites = None if figures.sites is None else {k: (size, n) for k, size, n in figures.sites}
    return Baseline(at=at, types=dict(figures.types), sites=sites)


def elide_left(text: str, width: int) -> str:
    """*text* cut from the left to *width* characters: the end of a path or a name matters most."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def growth(now: int, before: Optional[int], size: bool, known: bool) -> Text:
    """A sortable growth cell: "-" without a baseline, "new" when the baseline lacks the row
    (it was below the rows asked for then, or did not exist)."""
    if not known:
        return cell("-", None, style="dim")
    if before is None:
        return cell("new", now, style="yellow")
    if now == before:
        return cell("0", 0, style="dim")  # "0 B" in every unchanged row is noise
    out = delta_text(now - before, size=size)
    return cell(out.plain, now - before, style=str(out.style))


def name_cell(name: str, width: int) -> Text:
    """The row's name cut to *width*, sorting by the whole name."""
    return cell(elide_left(name, width), sort=name, justify="left")


def site_rows(figures: HeapFigures, baseline: Optional[Baseline],
              width: int) -> Dict[str, Tuple[Any, ...]]:
    before = baseline.sites if baseline is not None else None
    rows = {}
    for key, size, count in figures.sites or ():
        was = (before or {}).get(key)
        rows[key] = (name_cell(key, width), cell(fmt_bytes(size), size),
                     cell("{:,}".format(count), count),
                     growth(size, was[0] if was else None, True, before is not None),
                     growth(count, was[1] if was else None, False, before is not None))
    return rows


def type_rows(figures: HeapFigures, baseline: Optional[Baseline],
              sizes: Mapping[str, Tuple[int, int]], width: int) -> Dict[str, Tuple[Any, ...]]:
    """Counts are live; size and Δ size come from the last diff (*sizes*: type → (size, Δ))."""
    unknown = cell("-", None, style="dim")
    rows = {}
    for name, count in figures.types:
        size = sizes.get(name)
        rows[name] = (name_cell(name, width), cell("{:,}".format(count), count),
                      growth(count, baseline.types.get(name) if baseline else None, False,
                             baseline is not None),
                      cell(fmt_bytes(size[0]), size[0]) if size else unknown,
                      growth(size[0], size[0] - size[1], True, True) if size else unknown)
    return rows


def snapshot_line(meta: Mapping[str, Any]) -> str:
    """The id; "6.8 KiB, 45,841 objects in 1.82 s" (and whether the census was cut); where."""
    elapsed = meta.get("elapsed_s")
    path = str(meta.get("path") or "")
    return "%s\n%s, %s objects in %s%s\nsaved in %s" % (
        meta.get("id"), fmt_bytes(meta.get("bytes")), count_text(meta.get("objects")),
        "%.2f s" % elapsed if isinstance(elapsed, (int, float)) else "?",
        " (census stopped at its time budget)" if meta.get("complete") is False else "",
        os.path.dirname(path) or "?")


# -- diff ----------------------------------------------------------------------------------------

def _growth(label: str, title: str, rows: List[Mapping[str, Any]],
            name: Callable[[Mapping[str, Any]], str], total: Any,
            what: str) -> List[RenderableType]:
    """A titled table of count, Δ count, size, Δ size per row, and a note of rows left out."""
    table = _table(label, "count", "Δ count", "size", "Δ size", left=(label,))
    for row in rows:
        table.add_row(Text(name(row)), count_text(row.get("count")),
                      delta_text(row.get("count_delta"), size=False),
                      fmt_bytes(row.get("size")), delta_text(row.get("size_delta")))
    out: List[RenderableType] = [Text(title, style="bold underline"), table]
    more = _more(len(rows), total, what)
    if more is not None:
        out.append(more)
    return out

def diff_view(diff: Mapping[str, Any]) -> RenderableType:
    """snapshot.diff's reply: growth by type, and by site when both snapshots were traced."""
    seconds = diff.get("seconds")
    head = Text()
    head.append("baseline  ", style="dim")
    head.append(str(diff.get("a") or "?"), style="bold")
    head.append("\nnow       ", style="dim")
    head.append(str(diff.get("b") or "?"), style="bold")
    apart = "%.0f s apart" % seconds if is_number(seconds) else "time apart unknown"
    head.append("\n%s · rss " % apart)
    head.append_text(delta_text(diff.get("rss_delta")))
    parts: List[RenderableType] = [head, Text("")]
    types = list(diff.get("types") or ())
    if types:
        parts += _growth("type", "Growth by type", types, lambda r: str(r.get("type", "?")),
                         diff.get("types_total"), "types")
    else:
        parts.append(Text("No type changed between the two snapshots.", style="dim"))
    parts.append(Text(""))
    sites = diff.get("sites")
    if sites:
        parts += _growth("site", "Growth by allocation site", sites,
                         lambda r: "%s:%s" % (r.get("file", "?"), r.get("line", "?")),
                         diff.get("sites_total"), "sites")
    elif sites is None:
        parts.append(Text("No allocation sites: both snapshots must be taken while tracing "
                          "(t starts it; then b sets a new baseline).", style="dim"))
    else:
        parts.append(Text("No allocation site changed.", style="dim"))
    return Group(*parts)


# -- leak suspects -------------------------------------------------------------------------------
def comparable(report: Mapping[str, Any]) -> int:
    """How many snapshots the agent could compare: its own figure when it gives one, else the
    complete censuses since the last one cut short by its budget (those are not compared)."""
    given = report.get("comparable")
    if isinstance(given, int) and not isinstance(given, bool):
        return given
    incomplete = set(str(i) for i in report.get("incomplete") or ())
    n = 0
    for ident in reversed(list(report.get("snapshots") or ())):
        if str(ident) in incomplete:
            break
        n += 1
    return n


def _plural(n: int, word: str) -> str:
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def suspects_view(report: Mapping[str, Any]) -> RenderableType:
    """snapshot.suspects' reply: the ranked suspects, "clean", or why it cannot judge yet."""
    found = list(report.get("suspects") or ())
    ids = list(report.get("snapshots") or ())
    minimum = report.get("min_snapshots")
    minimum = minimum if isinstance(minimum, int) else 3
    usable = comparable(report)
    parts: List[RenderableType] = []
    if found:
        parts.append(Text("Grew at every step across %s (a run of %d or more), most bytes first:"
                          % (_plural(len(ids), "snapshot"), minimum), style="bold"))
        table = _table("#", "kind", "what", "steps", "Δ count", "Δ size", left=("what",))
        for i, s in enumerate(found, 1):
            table.add_row(str(i), Text(str(s.get("kind", "?"))), Text(str(s.get("name", "?"))),
                          count_text(s.get("steps")), delta_text(s.get("count_delta"), size=False),
                          delta_text(s.get("size_delta")))
        parts.append(table)
    elif usable >= minimum:
        parts.append(Text("No leak suspects: nothing grew at every step across %s."
                          % _plural(usable, "snapshot"), style="green"))
    else:
        parts.append(Text("Cannot judge leaks yet: %s, at least %d needed. Take more with s, a "
                          "few seconds apart or more." % (
                              _plural(usable, "comparable snapshot"), minimum), style="yellow"))
    incomplete = list(report.get("incomplete") or ())
    if incomplete:
        parts.append(Text("Not compared by type (census stopped at its time budget): %s"
                          % ", ".join(str(i) for i in incomplete), style="yellow"))
    for skip in report.get("skipped") or ():
        if isinstance(skip, Mapping):
            parts.append(Text("Skipped, unreadable: %s (%s)" % (skip.get("id"), skip.get("error")),
                              style="yellow"))
    return Group(*parts)


# -- referrers -----------------------------------------------------------------------------------
def referrers_view(result: Mapping[str, Any]) -> RenderableType:
    """heap.referrers' reply: for each sampled instance, who holds it, link by link outwards."""
    name = str(result.get("type", "?"))
    found = result.get("instances")
    chains = list(result.get("chains") or ())
    ends = list(result.get("ends") or ())
    elapsed = result.get("elapsed_s")
    head = Text()
    head.append(name, style="bold")
    head.append(": %s instances, %s sampled; %s objects scanned%s" % (
        count_text(found), count_text(result.get("sampled")), count_text(result.get("scanned")),
        " in %.2f s" % elapsed if is_number(elapsed) else ""))
    if result.get("complete") is False:
        head.append("\nThe search stopped at its time budget: chains may be cut short.",
                    style="yellow")
    parts: List[RenderableType] = [head, Text("")]
    if not chains:
        parts.append(Text("No instances of %s were found to follow." % name if not found else
                          "No chain could be followed within the time budget.", style="dim"))
    for i, links in enumerate(chains, 1):
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(overflow="fold")
        for j, link in enumerate(links):
            what = Text(str(link.get("repr") or link.get("type") or "?"))
            if j == 0:
                what.stylize("bold")
                grid.add_row(Text("%d." % i, style="bold"), what)
                continue
            line = Text()
            line.append("← ", style="dim")
            line.append_text(what)
            via = link.get("via")
            if via is not None:
                line.append("  via ", style="dim")
                line.append(str(via), style="cyan")
            grid.add_row("", line)
        end = ends[i - 1] if i - 1 < len(ends) else None
        if end is not None:
            grid.add_row("", Text(ENDS.get(str(end), str(end)), style="green" if end in (
                "module", "class", "frame") else "yellow"))
        parts += [grid, Text("")]
    return Group(*parts)


# -- the screen ----------------------------------------------------------------------------------
class HeapReport(ModalScreen):
    """One report, scrollable; esc or q closes it."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, title: str, body: RenderableType, *, kind: str = "") -> None:
        super().__init__()
        self.report_title = title
        self.body = body
        self.kind = kind  # "diff", "suspects" or "referrers": for tests and styling

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="heap-report"):
            yield Static(self.body, id="heap-report-body")

    def on_mount(self) -> None:
        frame = self.query_one("#heap-report")
        frame.border_title = self.report_title
        frame.border_subtitle = "esc closes"
        frame.focus()

