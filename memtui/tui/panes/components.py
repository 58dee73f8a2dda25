"""Caches, Pools and Workers: one table per family of components with each one's live figures and
the tuner's advice for it; enter opens a detail view with its graphs over the agent's history."""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, List, Mapping, NamedTuple, Optional, Tuple

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Resize
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState

from ...render import fmt_bytes, fmt_ms, fmt_pct, fmt_value
from ..model import EMPTY, Sample, component_bytes
from ..screens.component_detail import TIERS, ComponentDetail, number
from ..widgets.keyed_table import KeyedTable, cell
from .base import Pane
from .overview import SEVERITY_STYLE

WIDE = 110  # the pane width from which the wide column set is shown
HISTORY_LIMIT = 600  # component history rows asked for when a detail view opens
SEVERITY_RANK = {"critical": 4, "error": 3, "warning": 2, "info": 1}
NOUNS = {"cache": ("cache", "caches"), "pool": ("pool", "pools"),
         "workers": ("worker pool", "worker pools"),
         "batch": ("batch processor", "batch processors")}
# A batch processor's figures under the names the Workers table uses.
BATCH_FIELDS = {"active": "batches_inflight", "queued": "pending", "completed": "items",
                "failed": "errors"}


class Entry(NamedTuple):
    """One component as a table row sees it."""

    name: str
    kind: str
    stats: Mapping[str, Any]
    recs: Tuple[Mapping[str, Any], ...]
    error: Optional[str]

    def get(self, key: str) -> Any:
        if self.kind == "batch":
            key = BATCH_FIELDS.get(key, key)
        return self.stats.get(key)


class Column(NamedTuple):
    label: str
    key: str
    value: Callable[[Entry, bool], Any]  # (entry, wide) -> cell
    shown: str = "always"  # always | wide | narrow


def entries(sample: Sample, kinds: Tuple[str, ...]) -> Dict[str, Entry]:
    found = sample.stats.get("components") or EMPTY
    out = {}
    for name, item in found.items():
        if isinstance(item, Mapping) and item.get("kind") in kinds:
            out[name] = Entry(name, str(item.get("kind")), item.get("stats") or EMPTY,
                              tuple(sample.recommendations_for(name)), item.get("error"))
    return out


# cells ---------------------------------------------------------------------------------------
def count_cell(value: Any) -> Any:
    v = number(value)
    return cell("-" if v is None else "%d" % v, v)


def ms_cell(value: Any) -> Any:
    v = number(value)
    return cell(fmt_ms(v), v)


def bytes_cell(value: Any) -> Any:
    v = number(value)
    return cell(fmt_bytes(v), v)


def pct_cell(fraction: Any) -> Any:
    v = number(fraction)
    return cell(fmt_pct(None if v is None else v * 100.0), v)


def of_cell(part: Any, whole: Any) -> Any:
    """"3/4": *part* of at most *whole*, sorted by *part*."""
    p, w = number(part), number(whole)
    if p is None:
        return cell("-")
    return cell("%d" % p if w is None else "%d/%d" % (p, w), p)


def rate_cell(value: Any) -> Any:
    v = number(value)
    return cell("-" if v is None else "%.1f/s" % v, v)


def evictions_text(evictions: Any) -> Tuple[str, Optional[float]]:
    """("size 137 · expired 4", 141): the causes that happened and the total."""
    if isinstance(evictions, Mapping):
        counts = [(cause, number(n)) for cause, n in evictions.items()]
        happened = sorted(((cause, n) for cause, n in counts if n), key=lambda c: -c[1])
        total = sum(n for _, n in counts if n is not None)
        return (" · ".join("%s %d" % (cause, n) for cause, n in happened) or "0"), total
    n = number(evictions)
    return ("-" if n is None else "%d" % n), n


def evictions_cell(entry: Entry, wide: bool) -> Any:
    text, total = evictions_text(entry.stats.get("evictions"))
    return cell(text, total, justify="left")


def tier_bytes(stats: Mapping[str, Any], tier: str) -> Any:
    if tier == "hot":
        return stats.get("bytes")
    found = (stats.get("tiers") or EMPTY).get(tier)
    return found.get("bytes") if isinstance(found, Mapping) else None


def rec_arrow(rec: Mapping[str, Any]) -> str:
    now, then = number(rec.get("current")), number(rec.get("suggested"))
    if now is None or then is None or now == then:
        return "●"
    return "▲" if then > now else "▼"


def rec_text(rec: Mapping[str, Any], wide: bool = True) -> str:
    """"▲ max_entries 2000→4000" (narrow: "▲ max_entries 4000")."""
    setting = str(rec.get("setting", "?"))
    then = fmt_value(setting, rec.get("suggested"))
    if wide:
        then = "%s→%s" % (fmt_value(setting, rec.get("current")), then)
    return "%s %s %s" % (rec_arrow(rec), setting, then)


def tuner_cell(entry: Entry, wide: bool) -> Any:
    if not entry.recs:
        return cell("", None, justify="left")
    first = entry.recs[0]
    severity = str(first.get("severity", "info"))
    text = rec_text(first, wide) + ("  +%d" % (len(entry.recs) - 1) if len(entry.recs) > 1 else "")
    return cell(text, SEVERITY_RANK.get(severity, 0), style=SEVERITY_STYLE.get(severity, ""),
                justify="left")


def name_cell(entry: Entry, wide: bool) -> Any:
    if entry.error:
        return cell(entry.name + " !", entry.name, style="bold red", justify="left")
    return cell(entry.name, entry.name, justify="left")


def kind_cell(entry: Entry, wide: bool) -> Any:
    return cell(entry.kind, entry.kind, style="dim", justify="left")


def selected_text(entry: Entry) -> Text:
    """What the table cannot show of the selected row: an error, the bytes of each tier, a
    note, and the tuner's reasons."""
    text = Text(no_wrap=False)
    text.append(entry.name, style="bold")
    if entry.error:
        text.append("  stats() failed: %s" % entry.error, style="red")
    tiers = entry.stats.get("tiers")
    if isinstance(tiers, Mapping) and tiers:
        order = ["hot"] + [t for t in TIERS if t in tiers] + [t for t in tiers if t not in TIERS]
        text.append("  " + " · ".join("%s %s" % (t, fmt_bytes(number(tier_bytes(entry.stats, t))))
                                       for t in order))
    if entry.stats.get("note"):
        text.append("  %s" % entry.stats["note"], style="dim")
    for rec in entry.recs:
        severity = str(rec.get("severity", "info"))
        text.append("\n● %s " % severity, style=SEVERITY_STYLE.get(severity, ""))
        text.append(rec_text(rec), style="bold")
        if rec.get("reason"):
            text.append(": " + str(rec["reason"]))
    text.append("\nenter: graphs, every stat and the tuner's evidence", style="dim")
    return text


NAME = Column("name", "name", name_cell)
TUNER = Column("tuner", "tuner", tuner_cell)


def _stat(key: str, make: Callable[[Any], Any]) -> Callable[[Entry, bool], Any]:
    return lambda entry, wide: make(entry.get(key))


CACHE_COLUMNS = (
    NAME,
    Column("policy", "policy", lambda e, w: cell(e.stats.get("policy") or "-", justify="left"),
           "wide"),
    Column("entries", "entries", lambda e, w: of_cell(e.stats.get("entries"),
                                                      e.stats.get("max_entries")), "wide"),
    Column("hit rate", "hit_rate", _stat("hit_rate", pct_cell)),
    Column("evictions", "evictions", evictions_cell),
    Column("memory", "memory", lambda e, w: bytes_cell(component_bytes(e.stats)), "narrow"),
    Column("hot", "hot", lambda e, w: bytes_cell(tier_bytes(e.stats, "hot")), "wide"),
    Column("warm", "warm", lambda e, w: bytes_cell(tier_bytes(e.stats, "warm")), "wide"),
    Column("cold", "cold", lambda e, w: bytes_cell(tier_bytes(e.stats, "cold")), "wide"),
    Column("load p95", "load_p95", _stat("load_p95_ms", ms_cell), "wide"),
    TUNER,
)
POOL_COLUMNS = (
    NAME,
    Column("size", "size", lambda e, w: of_cell(e.stats.get("size"), e.stats.get("max_size"))),
    Column("in use", "in_use", _stat("in_use", count_cell)),
    Column("idle", "idle", _stat("idle", count_cell)),
    Column("waiters", "waiters", _stat("waiters", count_cell)),
    Column("wait p50", "wait_p50", _stat("wait_p50_ms", ms_cell), "wide"),
    Column("wait p95", "wait_p95", _stat("wait_p95_ms", ms_cell)),
    Column("timeouts", "timeouts", _stat("timeouts", count_cell), "wide"),
    Column("created", "created", _stat("created", count_cell), "wide"),
    Column("destroyed", "destroyed", _stat("destroyed", count_cell), "wide"),
    TUNER,
)
WORKER_COLUMNS = (
    NAME,
    Column("kind", "kind", kind_cell),
    Column("workers", "workers", lambda e, w: of_cell(e.get("workers"),
                                                      e.get("max_workers")), "wide"),
    Column("active", "active", _stat("active", count_cell)),
    Column("queued", "queued", _stat("queued", count_cell)),
    Column("lat p50", "latency_p50", _stat("latency_p50_ms", ms_cell), "wide"),
    Column("lat p95", "latency_p95", _stat("latency_p95_ms", ms_cell)),
    Column("rate", "throughput", _stat("throughput_per_s", rate_cell)),
    Column("done", "completed", _stat("completed", count_cell), "wide"),
    Column("failed", "failed", _stat("failed", count_cell), "wide"),
    TUNER,
)


def title_counts(found: Any, kinds: Tuple[str, ...]) -> List[str]:
    """["2 caches"], ["1 worker pool", "1 batch processor"]: each kind that has any."""
    counts = {kind: sum(1 for entry in found if entry.kind == kind) for kind in kinds}
    return ["%d %s" % (n, NOUNS.get(kind, (kind, kind))[n != 1])
            for kind, n in counts.items() if n]


class ComponentPane(Pane):
    WANTS_RECOMMENDATIONS = True
    """A table of the components of KINDS, one row each, columns from COLUMNS by width."""

    KINDS: ClassVar[Tuple[str, ...]] = ()
    COLUMNS: ClassVar[Tuple[Column, ...]] = ()
    NOUN: ClassVar[str] = ""  # for the empty message
    HINT: ClassVar[str] = ""  # how to get one registered
    BINDINGS = [
        Binding("enter", "details", "Details"),
        Binding("o", "sort", "Sort"),
        Binding("O", "reverse_sort", "Reverse sort", key_display="O"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wide = False
        self.detail: Optional[ComponentDetail] = None
        self._history_worker: Optional[Worker] = None

    def compose(self) -> ComposeResult:
        yield KeyedTable(classes="component-table")
        yield Static(classes="component-empty")
        yield Static(classes="component-selected")

    @property
    def table(self) -> KeyedTable:
        return self.query_one(KeyedTable)

    def on_mount(self) -> None:
        self.table.set_columns([(c.label, c.key) for c in self.columns()])
        self.table.sort_by, self.table.sort_reverse = "name", False

    def focus_default(self) -> None:
        self.table.focus()

    def columns(self) -> List[Column]:
        hide = "narrow" if self.wide else "wide"
        return [c for c in self.COLUMNS if c.shown != hide]

    # data in -------------------------------------------------------------------------------
    def show(self, sample: Sample) -> None:
        self._draw(sample)
        if self.detail is not None:
            self.detail.show(sample)
            self._fetch_history(sample)

    def _draw(self, sample: Sample) -> None:
        found = entries(sample, self.KINDS)
        columns = self.columns()
        table = self.table
        table.sync({name: tuple(c.value(entry, self.wide) for c in columns)
                    for name, entry in found.items()})
        table.display = bool(found)
        empty = self.query_one(".component-empty", Static)
        empty.display = not found
        if not found:
            empty.update(Text.assemble(("No %s in PID %s. " % (self.NOUN, sample.pid or "?"),
                                        "bold"), self.HINT))
        label = next((c.label for c in columns if c.key == table.sort_by), table.sort_by)
        table.border_title = " · ".join(title_counts(found.values(), self.KINDS))
        table.border_subtitle = "sorted by %s %s" % (label, "▼" if table.sort_reverse else "▲")
        self._draw_selected(found)

    def _draw_selected(self, found: Optional[Dict[str, Entry]] = None) -> None:
        if found is None:
            found = entries(self.sample, self.KINDS) if self.sample is not None else {}
        entry = found.get(self.table.selected_key or "")
        info = self.query_one(".component-selected", Static)
        info.display = entry is not None
        if entry is not None:
            info.update(selected_text(entry))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._draw_selected()

    def on_resize(self, event: Resize) -> None:
        if event.size.width <= 0:
            return  # a hidden tab
        wide = event.size.width >= WIDE
        if wide == self.wide:
            return
        self.wide = wide
        table = self.table
        selected = table.selected_key
        table.set_columns([(c.label, c.key) for c in self.columns()])
        if table.sort_by not in table.column_keys:
            table.sort_by, table.sort_reverse = "name", False
        if self.sample is not None:
            self._draw(self.sample)
        if selected is not None and table.row_cells(selected) is not None:
            table.move_cursor(row=table.get_row_index(selected), animate=False)

    # keys ----------------------------------------------------------------------------------
    def action_sort(self) -> None:
        """Sort by the next column: numbers largest first, names A to Z."""
        keys = self.table.column_keys
        here = keys.index(self.table.sort_by) if self.table.sort_by in keys else -1
        self._sort(keys[(here + 1) % len(keys)])

    def action_reverse_sort(self) -> None:
        self._sort(self.table.sort_by or "name", flip=True)

    def _sort(self, key: str, flip: bool = False) -> None:
        table = self.table
        if flip:
            reverse = not table.sort_reverse
        else:
            reverse = key not in ("name", "kind", "policy")
        # sort_on flips the direction when asked for the current column: ask for the opposite
        table.sort_by, table.sort_reverse = key, not reverse
        table.sort_on(key)
        if self.sample is not None:
            self._draw(self.sample)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_details()

    def action_details(self) -> None:
        """Open the selected component's detail view (its graphs come from the agent)."""
        name = self.table.selected_key
        sample = self.sample
        if name is None or sample is None:
            return
        found = entries(sample, self.KINDS).get(name)
        self.detail = ComponentDetail(name, found.kind if found else self.KINDS[0], sample)
        self.app.push_screen(self.detail, self._detail_closed)
        self._fetch_history(sample)

    def _detail_closed(self, result: Any = None) -> None:
        self.detail = None
        self.focus_default()

    def _fetch_history(self, sample: Sample) -> None:
        """Ask the agent for the component history recorded since the last ask — one request at a
        time, and only once the agent has recorded something new."""
        detail = self.detail
        if detail is None:
            return
        asking = self._history_worker
        # busy until its answer is handed over (a failed ask was reported by the app: ask again)
        if asking is not None and asking.state not in (WorkerState.ERROR, WorkerState.CANCELLED):
            return
        since = detail.series.last_seq
        if since is not None and sample.history.last_seq <= since:
            return

        def fetch(client: Any) -> Any:
            return client.history(since=since or 0, limit=HISTORY_LIMIT, components=True)

        def answered(reply: Any) -> None:
            self._history_worker = None
            detail.add_history(reply)

        self._history_worker = self.dash.run_agent_action("Component history", fetch, answered,
                                                          refresh=False)


class CachesPane(ComponentPane):
    PANE_ID = "caches"
    TITLE = "Caches"
    KEY = "3"
    KINDS = ("cache",)
    COLUMNS = CACHE_COLUMNS
    NOUN = "caches"
    HINT = "Create a memtui.Cache, or memtui.watch() an lru_cache function or a cachetools cache."


class PoolsPane(ComponentPane):
    PANE_ID = "pools"
    TITLE = "Pools"
    KEY = "4"
    KINDS = ("pool",)
    COLUMNS = POOL_COLUMNS
    NOUN = "pools"
    HINT = "Create a memtui.ResourcePool, or memtui.watch() a SQLAlchemy engine."


class WorkersPane(ComponentPane):
    """Worker pools and batch processors (a batch's active = batches in flight, queued =
    pending items, done = items, failed = errors)."""

    PANE_ID = "workers"
    TITLE = "Workers"
    KEY = "5"
    KINDS = ("workers", "batch")
    COLUMNS = WORKER_COLUMNS
    NOUN = "worker pools or batch processors"
    HINT = ("Create a memtui.WorkerPool, AsyncLimiter or BatchProcessor, or memtui.watch() an "
            "executor, a queue.Queue or an asyncio loop.")
