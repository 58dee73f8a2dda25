"""The memtui dashboard: ``MemtuiApp(client)`` attaches to one agent and shows it live.

The client is injected (an AgentClient, or a fake in tests). A Feed thread polls it and posts
immutable samples; the visible pane renders the latest one. Actions (snapshot, gc, push ...) run
on a second connection in thread workers, and their errors surface in one place."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from ..attach.external import how_to_get_agent, missing_text
from ..config.errors import ConfigError
from ..protocol import AgentError, sentence
from .feed import Feed, clamp_interval
from .messages import ConnectionChanged, SampleReady
from .model import Connection, Sample
from .panes.base import NoAgentLine, Pane
from .panes.components import CachesPane, PoolsPane, WorkersPane
from .panes.events import EventsPane
from .panes.heap import HeapPane
from .panes.overview import OverviewPane
from .panes.profiles import ProfilesPane
from .widgets.header import StatusHeader, header_lines

PANES: Tuple[Type[Pane], ...] = (OverviewPane, HeapPane, CachesPane, PoolsPane, WorkersPane,
                                 EventsPane, ProfilesPane)
STYLES = Path(__file__).parent / "styles"
RATES = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class ConnectionBanner(Static):
    """Shown while the agent is unreachable: what happened and when we try again."""


class ExternalBanner(Static):
    """Shown all along the external view (a process without an agent): what is missing from
    it and how to get an agent."""


class MemtuiApp(App):
    """The dashboard. *client* needs AgentClient's methods (connect, stats, history, events ...)."""

    # Absolute, so that a subclass elsewhere (the picker's) finds them too.
    CSS_PATH = [str(STYLES / name) for name in ("app.tcss", "heap.tcss", "components.tcss",
                                                "profiles.tcss", "picker.tcss")]
    TITLE = "memtui"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("p", "toggle_pause", "Pause"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("r", "refresh_now", "Refresh", show=False),
        Binding("plus,equals_sign", "faster", "Faster", show=False, key_display="+"),
        Binding("minus", "slower", "Slower", show=False, key_display="-"),
    ] + [Binding(pane.KEY, "show_pane('%s')" % pane.PANE_ID, pane.TITLE, show=False)
         for pane in PANES]

    def __init__(self, client: Any = None, *, profiles: Optional[str] = None,
                 interval: float = 1.0, clock: Callable[[], float] = time.time,
                 command: Optional[str] = None, target: str = "",
                 output: Any = None) -> None:
        super().__init__()
        self.client = client
        self.profiles_dir = profiles
        self.clock = clock
        self.interval = clamp_interval(interval)
        self.command = command
        self.target = target
        self.output = output  # a running child's captured output (memtui run), if any
        self.paused = False
        self.last_sample: Optional[Sample] = None
        self.connection = Connection("connecting", since=clock())
        self.feed: Optional[Feed] = None
        self._action_client: Any = None
        self._action_done: Dict[Worker, Tuple[Optional[Callable[[Any], None]],
                                              Optional[Callable[[str], None]]]] = {}
        self.first_sample_at: Optional[float] = None  # monotonic, for the attach benchmark
        self.external: Optional[str] = None  # the external view's banner while it is shown

    # layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield ConnectionBanner(id="banner")
        yield ExternalBanner(id="external-banner")
        with TabbedContent(id="tabs"):
            for pane in PANES:
                with TabPane("%s %s" % (pane.KEY, pane.TITLE), id="tab-" + pane.PANE_ID):
                    yield pane(id=pane.PANE_ID)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#banner").display = False
        self.query_one("#external-banner").display = False
        self._draw_header()
        if self.client is not None:
            self.attach(self.client)

    def on_unmount(self) -> None:
        if self.feed is not None:
            # Do not wait out a poll stuck on a stopped target: the thread is a daemon.
            self.feed.stop(timeout=0.2)
        for client in (self._action_client,):
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing on the way out
                    pass

    # attaching ------------------------------------------------------------------------------
    def attach(self, client: Any) -> None:
        """Start showing *client*'s agent (also used by the picker after a choice)."""
        if self.feed is not None:
            self.feed.stop()
        self.client = client
        self._action_client = None
        self.last_sample = None
        self.feed = Feed(client, lambda s: self.post_message(SampleReady(s)),
                         lambda c: self.post_message(ConnectionChanged(c)),
                         interval=self.interval, clock=self.clock)
        self.feed.set_paused(self.paused)
        pane = self.active_pane
        self.feed.want_recommendations = bool(pane and pane.WANTS_RECOMMENDATIONS)
        self.feed.start()

    # data in --------------------------------------------------------------------------------
    def on_sample_ready(self, message: SampleReady) -> None:
        if not self.query("#header"):  # closing down: the dashboard's widgets are gone
            return
        if self.first_sample_at is None:
            self.first_sample_at = time.monotonic()
        self.last_sample = message.sample
        self._set_external(message.sample)
        self._draw_header()
        pane = self.active_pane
        if pane is not None:
            self._show(pane, message.sample)
        shown = getattr(self.screen, "show", None)  # a detail view over the panes
        if callable(shown):
            shown(message.sample)

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        self.connection = message.connection
        if not self.query("#banner"):  # closing down: the dashboard's widgets are gone
            return
        live = message.connection.state == "live"
        banner = self.query_one("#banner", ConnectionBanner)
        banner.display = not live and bool(message.connection.message)
        banner.set_class(message.connection.state == "connecting", "-waiting")
        if banner.display:
            banner.update(Text("%s  Retrying in %gs (attempt %d); q quits."
                               % (message.connection.message, message.connection.retry_in,
                                  message.connection.attempts)))
        self.query_one("#tabs").set_class(not live, "-stale")
        for pane in self.query(Pane):
            pane.on_connection(live)
        self._draw_header()

    def _set_external(self, sample: Sample) -> None:
        """Enter or leave the external view as the client is (or stops being) an
        ExternalClient: the banner, and the agent-only panes' one line."""
        info = sample.info
        text = line = None
        if info.get("mode") == "external":
            pid = sample.pid or 0
            python = (info.get("python") or {}).get("version")
            text = missing_text(pid, python)
            line = "No agent in PID %d — %s." % (pid, how_to_get_agent(pid, python))
        if text == self.external:
            return
        self.external = text
        banner = self.query_one("#external-banner", ExternalBanner)
        banner.display = text is not None
        banner.update(text or "")
        for pane in self.query(Pane):
            pane.set_external(line)

    @staticmethod
    def _show(pane: Pane, sample: Sample) -> None:
        if not (pane.external and pane.NEEDS_AGENT):  # else it shows only its NoAgentLine
            pane.show(sample)

    def _draw_header(self) -> None:
        command = self.command
        if command is None and self.last_sample is not None:
            argv = self.last_sample.info.get("argv") or ()
            command = " ".join(str(a) for a in argv)
        self.query_one(StatusHeader).update(header_lines(
            self.last_sample, self.connection, self.interval, self.paused, command or "",
            self.target))

    # panes ----------------------------------------------------------------------------------
    @property
    def active_pane(self) -> Optional[Pane]:
        active = self.query_one("#tabs", TabbedContent).active
        if not active:
            return None
        return self.query_one("#" + active[len("tab-"):], Pane)

    def pane(self, pane_id: str) -> Pane:
        return self.query_one("#" + pane_id, Pane)

    @on(TabbedContent.TabActivated)
    def _tab_opened(self, event: TabbedContent.TabActivated) -> None:
        pane = self.active_pane
        if self.feed is not None and pane is not None:
            wanted = pane.WANTS_RECOMMENDATIONS
            if wanted and not self.feed.want_recommendations:
                self.feed.want_recommendations = True
                self.feed.poll_now()  # show them now, not at the next tick
            self.feed.want_recommendations = wanted
        if pane is not None and self.last_sample is not None:
            self._show(pane, self.last_sample)

    def action_show_pane(self, pane_id: str) -> None:
        self.query_one("#tabs", TabbedContent).active = "tab-" + pane_id
        pane = self.pane(pane_id)
        line = pane.query(NoAgentLine)
        if line:  # the external view: the pane's keys answer from its line
            line.first().focus()
        else:
            pane.focus_default()

    # global actions -------------------------------------------------------------------------
    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if self.feed is not None:
            self.feed.set_paused(self.paused)
        self._draw_header()

    def action_refresh_now(self) -> None:
        if self.feed is not None:
            self.feed.poll_now()

    def _set_rate(self, step: int) -> None:
        here = min(range(len(RATES)), key=lambda i: abs(RATES[i] - self.interval))
        self.interval = RATES[max(0, min(len(RATES) - 1, here + step))]
        if self.feed is not None:
            self.feed.set_interval(self.interval)
        self._draw_header()

    def action_faster(self) -> None:
        self._set_rate(-1)

    def action_slower(self) -> None:
        self._set_rate(+1)

    def action_help(self) -> None:
        from .screens.help import HelpScreen  # noqa: PLC0415

        self.push_screen(HelpScreen(self.binding_groups()))

    def binding_groups(self) -> List[Tuple[str, List[Binding]]]:
        """Every key the dashboard answers, by where it works: for help and the palette."""
        groups: List[Tuple[str, List[Binding]]] = [("Everywhere", [
            b for b in _bindings(MemtuiApp.BINDINGS)])]
        for pane in PANES:
            groups.append((pane.TITLE, list(_bindings(pane.BINDINGS))))
        return groups

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for pane in PANES:
            yield SystemCommand("Show %s" % pane.TITLE, "Switch to the %s pane (key %s)"
                                % (pane.TITLE, pane.KEY),
                                lambda p=pane.PANE_ID: self.action_show_pane(p))
            for binding in _bindings(pane.BINDINGS):
                yield SystemCommand("%s: %s" % (pane.TITLE, binding.description),
                                    "Key %s" % (binding.key_display or binding.key),
                                    lambda p=pane.PANE_ID, b=binding: self._palette_run(p, b))
        for binding in _bindings(MemtuiApp.BINDINGS):
            if binding.action in ("quit", "help") or binding.action.startswith("show_pane"):
                continue
            yield SystemCommand(binding.description, "Key %s" % (binding.key_display or
                                                                  binding.key),
                                lambda b=binding: self.call_later(self.run_action, b.action))

    def _palette_run(self, pane_id: str, binding: Binding) -> None:
        self.action_show_pane(pane_id)
        self.call_later(self.run_action, binding.action, self.pane(pane_id))

    # agent actions --------------------------------------------------------------------------
    def run_agent_action(self, title: str, call: Callable[[Any], Any],
                         done: Optional[Callable[[Any], None]] = None,
                         refresh: bool = True,
                         failed: Optional[Callable[[str], None]] = None) -> Worker:
        """``call(client)`` in a thread worker on a second connection to the agent; with
        *refresh* (for actions that change something) the feed polls right after. An error
        becomes one sentence: given to *failed* if there is one, else a notification."""
        worker = self.run_worker(lambda: self._with_action_client(call, refresh), name=title,
                                 group="agent-action", thread=True, exit_on_error=False)
        self._action_done[worker] = (done, failed)
        return worker

    def _with_action_client(self, call: Callable[[Any], Any], refresh: bool) -> Any:
        if self.client is None:
            raise AgentError("Not attached to any process.")
        client = self._action_client
        if client is None or not client.connected:
            clone = getattr(self.client, "clone", None)
            client = clone() if clone is not None else self.client
            if not client.connected:
                client.connect()
            self._action_client = client
        try:
            return call(client)
        finally:
            if refresh and self.feed is not None:
                self.feed.poll_now()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "agent-action" or worker not in self._action_done:
            return
        if event.state == WorkerState.SUCCESS:
            done, _ = self._action_done.pop(worker)
            if done is not None:
                done(worker.result)
        elif event.state == WorkerState.ERROR:
            _, failed = self._action_done.pop(worker)
            error = worker.error
            text = sentence(error) if isinstance(error, (AgentError, ConfigError, OSError, ValueError)) \
                else "%s: %s" % (type(error).__name__, error)
            if failed is not None:
                failed(text)
            else:
                self.notify(text, title=worker.name, severity="error", timeout=8)
        elif event.state == WorkerState.CANCELLED:
            self._action_done.pop(worker, None)


def _bindings(bindings: Iterable[Any]) -> Iterable[Binding]:
    for b in bindings:
        binding = b if isinstance(b, Binding) else Binding(*b)
        if binding.description:
            yield binding
