"""Events: alerts, pressure actions, snapshots and config changes, newest first, filterable by
text and by lowest severity."""
from __future__ import annotations

import time
from typing import Any, Mapping

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Static

from ..model import Sample
from ..widgets.keyed_table import KeyedTable, cell
from .base import Pane
from .overview import SEVERITY_STYLE

LEVELS = ("debug", "info", "warning", "error", "critical")
FIXED_COLUMNS = 8 + 8 + 8 + 8 + 4  # time, severity, kind, cell padding, scrollbar


def matches(event: Mapping[str, Any], text: str, lowest: str) -> bool:
    sev = str(event.get("severity", "info"))
    if LEVELS.index(sev) < LEVELS.index(lowest) if sev in LEVELS else False:
        return False
    if not text:
        return True
    hay = " ".join(str(event.get(k, "")) for k in ("kind", "severity", "message")).lower()
    return all(word in hay for word in text.lower().split())


def clock_text(t: Any) -> str:
    if not isinstance(t, (int, float)):
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(t))


class EventsPane(Pane):
    PANE_ID = "events"
    TITLE = "Events"
    KEY = "6"
    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "severity", "Severity"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lowest = "debug"

    def compose(self) -> ComposeResult:
        with Horizontal(id="events-filter-bar"):
            yield Input(placeholder="filter: words in kind, severity or message (/)",
                        id="events-filter", compact=True)
            yield Static(id="events-severity")
        yield KeyedTable(id="events-table")
        yield Static(id="events-detail")

    def on_mount(self) -> None:
        table = self.query_one("#events-table", KeyedTable)
        table.set_columns([("time", "time"), ("severity", "severity"), ("kind", "kind"),
                           ("message", "message")])
        table.sort_by = "time"  # by sequence number: the newest first
        self._draw_severity()

    def focus_default(self) -> None:
        self.query_one("#events-table").focus()

    def show(self, sample: Sample) -> None:
        text = self.query_one("#events-filter", Input).value
        table = self.query_one("#events-table", KeyedTable)
        # Messages are cut to the room left, so the table never scrolls sideways.
        room = max(20, table.size.width - FIXED_COLUMNS)
        rows = {}
        for event in sample.events:
            if not matches(event, text, self.lowest):
                continue
            sev = str(event.get("severity", "info"))
            seq = event.get("seq")
            message = str(event.get("message", ""))
            if len(message) > room:
                message = message[:room - 1] + "…"
            rows[str(seq)] = (cell(clock_text(event.get("t")), seq, justify="left"),
                              Text(sev, style=SEVERITY_STYLE.get(sev, "")),
                              str(event.get("kind", "")), Text(message))
        table.sync(rows)
        table.border_title = "%d of %d events" % (len(rows), len(sample.events))

    def _draw_severity(self) -> None:
        self.query_one("#events-severity", Static).update(
            Text.assemble("severity ≥ ", (self.lowest, SEVERITY_STYLE.get(self.lowest, "bold"))))

    def on_data_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        self._draw_detail(event.row_key.value if event.row_key is not None else None)

    def _draw_detail(self, key: Any) -> None:
        """The highlighted event whole: its message, then the data the agent attached."""
        found = next((e for e in (self.sample.events if self.sample else ())
                      if str(e.get("seq")) == key), None)
        detail = self.query_one("#events-detail", Static)
        if found is None:
            detail.update("")
            return
        text = Text(str(found.get("message", "")))
        data = found.get("data") or {}
        facts = ["%s=%s" % (k, v) for k, v in data.items()
                 if not isinstance(v, Mapping) and v not in (None, "")]
        if facts:
            text.append("\n" + "  ".join(facts), style="dim")
        detail.update(text)

    def on_resize(self) -> None:
        if self.sample is not None:
            self.show(self.sample)

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.sample is not None:
            self.show(self.sample)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.focus_default()

    def action_filter(self) -> None:
        self.query_one("#events-filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#events-filter", Input).value = ""
        self.focus_default()

    def action_severity(self) -> None:
        self.lowest = LEVELS[(LEVELS.index(self.lowest) + 1) % len(LEVELS)]
        self._draw_severity()
        if self.sample is not None:
            self.show(self.sample)
