"""What every pane shares: it is handed the latest sample when visible, and reaches the agent
only through the app's action runner (a second connection, errors reported in one place)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

from textual.containers import Container
from textual.widgets import Static

from ..model import Sample

if TYPE_CHECKING:
    from ..app import MemtuiApp


class NoAgentLine(Static, can_focus=True):
    """What an agent-only pane shows in the external view: no agent, and how to get one.
    Focusable, so that the pane's keys still answer (with the same sentence) from it."""


class Pane(Container):
    """One tab of the dashboard. Subclasses set PANE_ID, TITLE and KEY, and implement show()."""

    PANE_ID: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    KEY: ClassVar[str] = ""  # the digit that switches to this pane
    # The tuner's recommendations cost the target a pass over its history: the feed asks for
    # them only while a pane that shows them is open.
    WANTS_RECOMMENDATIONS: ClassVar[bool] = False
    # Whether everything it shows comes from an agent: in the external view (a process without
    # one) such a pane shows only a NoAgentLine, and is not handed samples.
    NEEDS_AGENT: ClassVar[bool] = True

    @property
    def dash(self) -> "MemtuiApp":
        return self.app  # type: ignore[return-value]

    @property
    def sample(self) -> Optional[Sample]:
        return self.dash.last_sample

    def show(self, sample: Sample) -> None:
        """Render *sample*. Called for the visible pane on every poll and when it is opened."""

    def on_connection(self, live: bool) -> None:
        """The agent went away (live=False) or came back."""

    def set_external(self, line: Optional[str]) -> None:
        """Enter the external view (*line*: why the pane is empty and how to get an agent) or
        leave it (None). An agent-only pane shows only the line meanwhile."""
        self.set_class(line is not None, "-external")
        if not self.NEEDS_AGENT:
            return
        found = self.query(NoAgentLine)
        if line is None:
            found.remove()
        elif found:
            found.first().update(line)
        else:  # docked over the whole pane (app.tcss): the pane's own widgets get no room
            self.mount(NoAgentLine(line))

    @property
    def external(self) -> bool:
        return self.has_class("-external")

    def focus_default(self) -> None:
        """Put the focus where this pane's keys work (its main table, say)."""
        for widget in self.query("*"):
            if widget.can_focus:
                widget.focus()
                return

    def run_action(self, title: str, call: Callable[[Any], Any],
                   done: Optional[Callable[[Any], None]] = None, refresh: bool = True) -> Any:
        """Run ``call(client)`` off the UI thread; *done(result)* back on it; errors notified.
        Pass refresh=False for reads, so the feed does not poll again because of them.
        Returns the Worker."""
        return self.dash.run_agent_action(title, call, done, refresh)
