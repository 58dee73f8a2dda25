"""The process picker (`memtui` with no arguments): this user's agents first, then the Python
processes without one. Enter attaches the dashboard: to the chosen agent; to a dormant agent
(``memtui.install()``) after waking it by signal; to a CPython process without one after asking
whether to inject the agent (else, or when it cannot be injected, the external view)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from ... import attach as attaching
from ... import discovery
from ...client import AgentClient
from ...protocol import AgentError, sentence
from ...render import fmt_bytes, fmt_duration, short_command
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
    dormant: bool = False  # memtui.install() left an agent that a signal wakes

    @property
    def has_agent(self) -> bool:
        return self.socket is not None and self.error is None


@dataclass(frozen=True)
class Picked:
    """What the picker hands back: a connected client and who it talks to."""

    client: Any  # an AgentClient, or an ExternalClient for the external view
    pid: int
    command: str
    way: str = "agent"  # one of memtui.attach.WAYS
    message: str = ""  # memtui.attach's sentence on how it got in ("" for a plain connect)


def choices(found: Mapping[str, Sequence[Mapping[str, Any]]]) -> Dict[str, Tuple[Choice, Tuple]]:
    """A scan's result as picker rows: key -> (choice, cells). Agents sort first, each group by
    PID (the pid cell sorts by group, then PID)."""
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
            Text(short_command(choice.command), no_wrap=True, overflow="ellipsis")))
    for o in found.get("others") or ():
        pid = int(o["pid"])
        choice = Choice(pid, _one_line(o.get("command")), dormant=bool(o.get("dormant")))
        state = Text("dormant", style="yellow") if choice.dormant else \
            Text("no agent", style="dim")
        rows["other-%d" % pid] = (choice, (
            cell(pid, sort=(1 << 32) + pid), state,
            cell(fmt_bytes(o.get("rss")), sort=o.get("rss")), "", "",
            Text(short_command(choice.command), style="" if choice.dormant else "dim",
                 no_wrap=True, overflow="ellipsis")))
    return rows


def _one_line(text: Any) -> str:
    return " ".join(str(text or "?").split())


def connect_agent(choice: Choice) -> AgentClient:
    return AgentClient(pid=choice.pid, path=choice.socket or None).connect()


class InjectScreen(ModalScreen):
    """Asks before memtui injects its agent into a process: dismisses with "inject",
    "external" or None (cancelled)."""

    BINDINGS = [
        Binding("i", "choose('inject')", "Inject"),
        Binding("e", "choose('external')", "External view"),
        Binding("escape", "choose('')", "Cancel"),
    ]
    AUTO_FOCUS = None  # no default button: Enter twice must not inject by accident

    def __init__(self, plan: attaching.Plan, command: str) -> None:
        super().__init__()
        self.plan = plan
        self.command = command

    @property
    def question(self) -> str:
        command = short_command(self.command, 60)
        return ("Inject the memtui agent into PID %d (Python %s, %s)? It starts the agent on a "
                "new thread of that process." % (self.plan.pid, self.plan.python or "?",
                                                  command))

    def compose(self) -> ComposeResult:
        with Vertical(id="inject-dialog"):
            yield Static(self.question, id="inject-question")
            yield Static("Without it, the external view shows what can be seen from outside "
                         "(memory, threads, mappings), but no heap, GC or components.",
                         id="inject-note")
            with Horizontal(id="inject-buttons"):
                yield Button("i Inject", id="inject", variant="warning")
                yield Button("e External view", id="external")
                yield Button("Esc Cancel", id="cancel")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_choose("" if event.button.id == "cancel" else str(event.button.id))

    def action_choose(self, what: str) -> None:
        self.dismiss(what or None)


class PickerScreen(ModalScreen):
    """Lists a scan every SCAN_EVERY seconds; dismisses with a :class:`Picked`."""

    BINDINGS = [
        Binding("enter", "attach", "Attach", priority=True),  # before the table's own enter
        Binding("r", "rescan", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, scan: Callable[[], Mapping[str, Any]] = discovery.scan,
                 connect: Callable[[Choice], Any] = connect_agent,
                 clock: Callable[[], float] = time.time,
                 plan: Callable[[int], attaching.Plan] = attaching.plan,
                 attach: Callable[..., attaching.Attached] = attaching.attach) -> None:
        super().__init__()
        self.scan = scan
        self.connect = connect
        self.clock = clock
        self.plan = plan
        self.attach = attach
        self.choices: Dict[str, Choice] = {}
        self.scans = 0
        self.connecting: Optional[Choice] = None  # Enter again meanwhile does nothing
        self._scan_timer: Any = None
        self._summary: Any = ""  # the status line between two attempts

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-body"):
            yield Static("Pick a process: Enter opens the dashboard on it, r refreshes, q "
                         "quits. Those with a memtui agent come first; for the others Enter "
                         "wakes a dormant agent, offers to inject one, or shows the process "
                         "from outside.", id="picker-title")
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
        dormant = sum(1 for c in self.choices.values() if c.dormant)
        others = len(self.choices) - agents - dormant
        parts = ["%d agent%s" % (agents, "" if agents == 1 else "s")]
        if dormant:
            parts.append("%d dormant" % dormant)
        parts.append("%d Python process%s without one" % (others, "" if others == 1 else "es"))
        cleaned: List[Any] = [c for c in found.get("cleaned") or () if c.get("kind") == "socket"]
        if cleaned:
            parts.append("removed %d stale socket%s" % (len(cleaned),
                                                        "" if len(cleaned) == 1 else "s"))
        parts.append("as of %s" % time.strftime("%H:%M:%S", time.localtime(self.clock())))
        self._summary = " · ".join(parts)
        if self.connecting is None:  # else the status says what Enter is doing
            self._status(self._summary)

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
        self.connecting = choice
        if choice.has_agent:
            self._take(choice, "Connecting to PID %d…" % choice.pid,
                       lambda: Picked(self.connect(choice), choice.pid, choice.command))
            return
        # No agent listed: memtui.attach looks (it reads /proc, and connects to a socket that
        # may have appeared since the scan) before anything is done to the process.
        self._status("Looking at PID %d…" % choice.pid)
        self.run_worker(lambda: self.plan(choice.pid), name="plan", group="picker-plan",
                        thread=True, exit_on_error=False)

    def _planned(self, choice: Choice, plan: attaching.Plan) -> None:
        """What Enter on a process without a listed agent does, once memtui.attach has
        looked."""
        if plan.way == "signal":
            self._take_way(choice, False, "Waking the dormant agent of PID %d…" % choice.pid)
        elif plan.way == "agent":  # it started one since the scan
            self._take_way(choice, False, "Connecting to PID %d…" % choice.pid)
        elif plan.can_inject:
            self._status("PID %d: inject the agent, or the external view?" % choice.pid)
            self.app.push_screen(InjectScreen(plan, choice.command),
                                 lambda answer: self._answered(choice, answer))
        else:
            self.notify("PID %d cannot be given an agent by injection: %s; showing the "
                        "external view." % (choice.pid, plan.inject_problem or plan.reason),
                        title="External view", severity="warning", timeout=10)
            self._take_way(choice, False, "Opening the external view of PID %d…" % choice.pid)

    def _answered(self, choice: Choice, answer: Optional[str]) -> None:
        if answer == "inject":
            self._take_way(choice, True, "Injecting the memtui agent into PID %d…" % choice.pid)
        elif answer == "external":
            self._take_way(choice, False, "Opening the external view of PID %d…" % choice.pid)
        else:  # cancelled: nothing was done to the process
            self._done()

    def _take_way(self, choice: Choice, inject: bool, doing: str) -> None:
        def run() -> Picked:
            got = self.attach(choice.pid, inject=inject)
            return Picked(got.client, choice.pid, choice.command, got.way, got.message)

        self._take(choice, doing, run)

    def _take(self, choice: Choice, doing: str, call: Callable[[], Picked]) -> None:
        self._status(doing)
        self.run_worker(call, name="connect", group="picker-connect", thread=True,
                        exit_on_error=False)

    def _done(self, error: Optional[BaseException] = None) -> None:
        self.connecting = None
        self._status(self._summary)
        if error is not None:
            self.notify(_reason(error), title="Cannot attach", severity="error", timeout=8)

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
        elif worker.group == "picker-plan":
            if state == WorkerState.SUCCESS and self.connecting is not None:
                self._planned(self.connecting, worker.result)
            elif state == WorkerState.ERROR:
                self._done(worker.error)
        elif worker.group == "picker-connect":
            if state == WorkerState.SUCCESS:
                picked: Picked = worker.result
                if picked.way in ("signal", "inject") and picked.message:
                    self.notify(picked.message, title="Agent started", timeout=6)
                self.dismiss(picked)
            elif state == WorkerState.ERROR:
                self._done(worker.error)


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
