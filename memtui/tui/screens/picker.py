"""The process picker (`memtui` with no arguments): this user's agents first, then the Python
processes without one; Enter attaches the dashboard to the chosen agent."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from ... import discovery
from ...client import AgentClient, no_agent_message
from ...protocol import AgentError, sentence
from ...render import fmt_bytes, fmt_duration
from ..app import MemtuiApp
from ..widgets.keyed_table import KeyedTable, cell

SCAN_EVERY = 2.0  # seconds between the end of one scan and the start of the next
COLUMNS = [("pid", "pid"), ("env", "env"), ("rss", "rss"), ("python", "python"),
           ("uptime", "uptime"), ("command", "command")]


@dataclass(frozen=True)
class Choice:
    """One row of the picker: what Enter needs to know about it."""

    pid: int
    command: str
    socket: Optional[str] = None  # None: no agent
    error: Optional[str] = None  # the agent answered `memtui ps` with this

    @property
    def has_agent(self) -> bool:
        return self.socket is not None and self.error is None


@dataclass(frozen=True)
class Picked:
    """What the picker hands back: a connected client and who it talks to."""

    client: Any
    pid: int
    command: str


def choices(found: Mapping[str, Sequence[Mapping[str, Any]]]) -> Dict[str, Tuple[Choice, Tuple]]:
    """discovery.scan()'s result as picker rows: key -> (choice, cells). Agents sort first, each
    group by PID (the pid cell sorts by group, then PID)."""
    rows: Dict[str, Tuple[Choice, Tuple]] = {}
    for a in found.get("agents") or ():
        pid = int(a["pid"])
        choice = Choice(pid, _one_line(a.get("command")), str(a.get("socket") or ""),
                        a.get("error"))
        agent = Text(str(a["error"]), style="red") if a.get("error") else \
            Text(str(a.get("env") or "?"), style="bold green")
        rows["agent-%d" % pid] = (choice, (
            cell(pid, sort=pid), agent, cell(fmt_bytes(a.get("rss")), sort=a.get("rss")),
            str(a.get("python") or ""), cell(fmt_duration(a.get("uptime")),
                                             sort=a.get("uptime")),
            Text(choice.command, no_wrap=True, overflow="ellipsis")))
    for o in found.get("others") or ():
        pid = int(o["pid"])
        choice = Choice(pid, _one_line(o.get("command")))
        rows["other-%d" % pid] = (choice, (
            cell(pid, sort=(1 << 32) + pid), Text("no agent", style="dim"),
            cell(fmt_bytes(o.get("rss")), sort=o.get("rss")), "", "",
            Text(choice.command, style="dim", no_wrap=True, overflow="ellipsis")))
    return rows


def _one_line(text: Any) -> str:
    return " ".join(str(text or "?").split())


def connect_agent(choice: Choice) -> AgentClient:
    return AgentClient(pid=choice.pid, path=choice.socket or None).connect()


class PickerScreen(ModalScreen):
    """Lists discovery.scan() every SCAN_EVERY seconds; dismisses with a :class:`Picked`."""

    BINDINGS = [
        Binding("enter", "attach", "Attach", priority=True),  # before the table's own enter
        Binding("r", "rescan", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, scan: Callable[[], Mapping[str, Any]] = discovery.scan,
                 connect: Callable[[Choice], Any] = connect_agent,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.scan = scan
        self.connect = connect
        self.clock = clock
        self.choices: Dict[str, Choice] = {}
        self.scans = 0
        self.connecting: Optional[Choice] = None  # Enter again meanwhile does nothing
        self._scan_timer: Any = None

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-body"):
            yield Static("Pick a process: Enter opens the dashboard on it, r refreshes, q "
                         "quits. Those with a memtui agent come first; the others need one "
                         "before they can be watched.", id="picker-title")
            yield KeyedTable(id="picker-table")
            yield Static("Looking for processes…", id="picker-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#picker-table", KeyedTable)
        table.set_columns(COLUMNS)
        table.sort_by, table.sort_reverse = "pid", False
        table.focus()
        self.action_rescan()

    # scanning (off the UI thread; the next scan is armed when this one is done) -------------
    def action_rescan(self) -> None:
        if self._scan_timer is not None:
            self._scan_timer.stop()
            self._scan_timer = None
        self.run_worker(self.scan, name="scan", group="picker-scan", thread=True,
                        exclusive=True, exit_on_error=False)

    def _show(self, found: Mapping[str, Any]) -> None:
        rows = choices(found)
        self.choices = {key: choice for key, (choice, _) in rows.items()}
        self.query_one("#picker-table", KeyedTable).sync(
            {key: cells for key, (_, cells) in rows.items()})
        self.scans += 1
        agents = sum(1 for c in self.choices.values() if c.socket is not None)
        parts = ["%d agent%s" % (agents, "" if agents == 1 else "s"),
                 "%d Python process%s without one" % (len(self.choices) - agents,
                                                      "" if len(self.choices) - agents == 1
                                                      else "es")]
        cleaned: List[Any] = list(found.get("cleaned") or ())
        if cleaned:
            parts.append("removed %d stale socket%s" % (len(cleaned),
                                                        "" if len(cleaned) == 1 else "s"))
        parts.append("as of %s" % time.strftime("%H:%M:%S", time.localtime(self.clock())))
        self._status(" · ".join(parts))

    def _status(self, text: Any) -> None:
        self.query_one("#picker-status", Static).update(text)

    # choosing ------------------------------------------------------------------------------
    @property
    def selected(self) -> Optional[Choice]:
        key = self.query_one("#picker-table", KeyedTable).selected_key
        return self.choices.get(key) if key is not None else None

    @on(DataTable.RowSelected, "#picker-table")
    def _row_chosen(self, event: DataTable.RowSelected) -> None:  # a click on a row
        event.stop()
        self.action_attach()

    def action_attach(self) -> None:
        choice = self.selected
        if choice is None or self.connecting is not None:
            return
        if choice.error:
            self.notify(choice.error, title="PID %d" % choice.pid, severity="error", timeout=8)
            return
        if not choice.has_agent:
            self.notify(no_agent_message(choice.pid), title="No agent", severity="warning",
                        timeout=10)
            return
        self.connecting = choice
        self._status("Connecting to PID %d…" % choice.pid)
        self.run_worker(lambda: Picked(self.connect(choice), choice.pid, choice.command),
                        name="connect", group="picker-connect", thread=True,
                        exit_on_error=False)

    def action_quit(self) -> None:
        self.app.exit()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker, state = event.worker, event.state
        if worker.group == "picker-scan":
            if state == WorkerState.SUCCESS:
                self._show(worker.result)
            elif state == WorkerState.ERROR:
                self._status(Text("Could not list processes: %s" % _reason(worker.error),
                                  style="red"))
            if state in (WorkerState.SUCCESS, WorkerState.ERROR) and self.is_attached:
                self._scan_timer = self.set_timer(SCAN_EVERY, self.action_rescan)
        elif worker.group == "picker-connect":
            if state == WorkerState.SUCCESS:
                self.dismiss(worker.result)
            elif state == WorkerState.ERROR:
                self.connecting = None
                self._status("")
                self.notify(_reason(worker.error), title="Cannot attach", severity="error",
                            timeout=8)


def _reason(error: Any) -> str:
    if isinstance(error, (AgentError, OSError)):
        return sentence(error)
    return "%s: %s" % (type(error).__name__, error)


class PickerApp(MemtuiApp):
    """The dashboard opened on the picker: it attaches to whatever is chosen there."""

    def on_mount(self) -> None:
        self.push_screen(PickerScreen(), self._picked)

    def _picked(self, picked: Optional[Picked]) -> None:
        if picked is None:
            return
        self.command, self.target = picked.command, str(picked.pid)
        self.attach(picked.client)
