"""`?`: every key the dashboard answers, generated from the bindings so it cannot go stale."""
from __future__ import annotations

from typing import List, Tuple

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def help_table(groups: List[Tuple[str, List[Binding]]]) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 2), expand=True)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for title, bindings in groups:
        if not bindings:
            continue
        table.add_row(Text(title, style="bold underline"), "")
        for b in bindings:
            table.add_row(b.key_display or b.key.split(",")[0], b.tooltip or b.description)
        table.add_row("", "")
    table.add_row("ctrl+p", "Command palette: every action above, by name")
    return table


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, groups: List[Tuple[str, List[Binding]]]) -> None:
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(help_table(self.groups), id="help-table")

    def on_mount(self) -> None:
        self.query_one("#help-body").border_title = "memtui keys (esc closes)"
