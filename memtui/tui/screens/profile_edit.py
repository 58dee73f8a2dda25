"""The Profiles pane's two dialogs: edit one value (checked by the config library on every
keystroke, written with its safe write) and confirm a push after its dry run."""
from __future__ import annotations

import os
import tomllib
from typing import Any, List, Optional, Sequence, Tuple

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static
from textual.worker import Worker, WorkerState

from ...config import ConfigError, ProfileStore, edit, schema
from ...config import push as cpush
from ...config.diff import MISSING, render_value
from ...config.profiles import masked
from ...config.safe_write import show_path
from ..profiles_view import problem_strings

REPORT_STYLE = {"change": "", "restart": "yellow", "next_start": "yellow", "refused": "bold red",
                "not_set": "yellow"}


def problem_lines(exc: ConfigError) -> Text:
    return Text("\n".join(problem_strings(exc)), style="red")


def shown(key: str, value: Any) -> str:
    return "(unset)" if value is MISSING else render_value(masked(key, value))


def change_line(what: str, before: str, after: str) -> str:
    """``key: old → new``, or ``key: (secret changed)`` when both show as the mask."""
    if before == after and schema.MASK in before:
        return "%s: (secret changed)" % what
    return "%s: %s → %s" % (what, before, after)


class ProfileEditScreen(ModalScreen[Optional[edit.EditResult]]):
    """Edit *key* of *env*: the value is checked as typed (the same checks ``memtui config set``
    makes: schema type, units, ranges, cross-field rules, every env extending the file) and Save
    stays disabled while it is invalid. Dismissed with the EditResult once written."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"),
                Binding("ctrl+s", "save", "Save", key_display="^s")]

    def __init__(self, store: ProfileStore, env: str, key: str, text: str,
                 targets: Sequence[Tuple[str, str]], about: Text, secret: bool = False,
                 override: Optional[str] = None) -> None:
        super().__init__()
        self.store = store
        self.env = env
        self.key = key
        self.initial = text
        self.targets = list(targets)  # (profile name, label): the env's file first
        self.target = env
        self.about = about
        self.secret = secret
        self.override = override  # "MEMTUI__X=value" when an env var beats the file
        self.valid = False
        self.saving: Optional[Worker] = None

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-box"):
            yield Static(self.about, id="edit-about")
            if len(self.targets) > 1:
                with Horizontal(classes="edit-row"):
                    yield Static("write to", classes="edit-label")
                    yield Select([(label, name) for name, label in self.targets],
                                 value=self.env, allow_blank=False, compact=True,
                                 id="edit-target")
            with Horizontal(classes="edit-row"):
                yield Static("value", classes="edit-label")
                yield Input(self.initial, id="edit-value", password=self.secret, compact=True,
                            placeholder="a new secret value" if self.secret else "value")
            yield Static(id="edit-error")
            yield Static(id="edit-preview")
            if self.override:
                yield Static(Text("%s in this dashboard's environment overrides the file: "
                                  "the table keeps showing it." % self.override,
                                  style="magenta"), id="edit-override")
            with Horizontal(id="edit-buttons"):
                yield Button("Save (^s)", id="edit-save", variant="primary", disabled=True)
                yield Button("Cancel (esc)", id="edit-cancel")

    def on_mount(self) -> None:
        self.query_one("#edit-box").border_title = "Edit %s in %s" % (self.key, self.env)
        self.query_one("#edit-value", Input).focus()
        self.check()

    # checking -------------------------------------------------------------------------------
    def check(self) -> None:
        """Dry-run the edit with the config library; show its problems or what it changes."""
        text = self.query_one("#edit-value", Input).value
        error = self.query_one("#edit-error", Static)
        preview = self.query_one("#edit-preview", Static)
        try:
            result = edit.set_values(self.store, self.target, ["%s=%s" % (self.key, text)],
                                     dry_run=True)
        except ConfigError as exc:
            self.valid = False
            error.update(problem_lines(exc))
            error.display = True
            preview.update("")
        else:
            error.display = False
            changes = result.changes
            self.valid = bool(changes)
            where = show_path(result.path)
            if changes:
                own = "" if self.target == self.env else " in %s" % os.path.basename(where)
                lines = [change_line(k + own, shown(k, a), shown(k, b)) for k, a, b in changes]
                lines += self.in_env(result.after)
                lines.append("Saving writes %s (a .bak keeps the previous version)." % where)
                preview.update(Text("\n".join(lines), style="green"))
            else:
                preview.update(Text("Same as %s: nothing to save." % where, style="dim"))
        self.query_one("#edit-save", Button).disabled = not self.valid or self.saving is not None

    def in_env(self, after: str) -> List[str]:
        """Writing a file this env extends: what the env's own value does (its file may set it)."""
        if self.target == self.env:
            return []
        try:
            old = self.store.resolve(self.env, environ={})
            new = self.store.with_content(self.target, tomllib.loads(after)).resolve(
                self.env, environ={})
        except (ConfigError, tomllib.TOMLDecodeError):
            return []
        before, now = old.get(self.key, MISSING), new.get(self.key, MISSING)
        if before == now:
            layer = old.source(self.key)
            return ["%s keeps %s%s." % (self.env, shown(self.key, before),
                                        ": %s sets it" % show_path(layer.source)
                                        if layer is not None and layer.kind == "file" else "")]
        return [change_line("in %s" % self.env, shown(self.key, before), shown(self.key, now))]

    def on_input_changed(self, event: Input.Changed) -> None:
        self.check()

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.target = event.value
            self.check()

    # saving ---------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "edit-save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        self.check()  # the file may have changed since the last keystroke
        if not self.valid or self.saving is not None:
            return
        assignment = "%s=%s" % (self.key, self.query_one("#edit-value", Input).value)
        target = self.target
        self.saving = self.run_worker(
            lambda: edit.set_values(self.store, target, [assignment]), name="Save",
            group="profile-save", thread=True, exit_on_error=False)
        self.query_one("#edit-save", Button).disabled = True

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.saving:
            return
        if event.state == WorkerState.SUCCESS:
            self.dismiss(event.worker.result)
        elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self.saving = None
            exc = event.worker.error
            error = self.query_one("#edit-error", Static)
            error.update(problem_lines(exc) if isinstance(exc, ConfigError)
                         else Text("%s: %s" % (type(exc).__name__, exc), style="red"))
            error.display = True
            self.query_one("#edit-save", Button).disabled = not self.valid

    def action_cancel(self) -> None:
        if self.saving is None:
            self.dismiss(None)


class PushConfirmScreen(ModalScreen[bool]):
    """What a push would change (its dry run), and Push or Cancel."""

    BINDINGS = [Binding("escape,n", "cancel", "Cancel"), Binding("y", "push", "Push")]

    def __init__(self, preview: cpush.PushResult, notes: Sequence[str] = ()) -> None:
        super().__init__()
        self.preview = preview
        self.notes = list(notes)

    def compose(self) -> ComposeResult:
        plan = self.preview.plan
        with Vertical(id="push-box"):
            yield Static(Text("%s (%s) → PID %s, which runs %s%s" % (
                plan.pushed_env, ", ".join(show_path(f) for f in plan.files), plan.pid,
                plan.agent_env or "an unnamed environment",
                " (switches it)" if plan.forced else ""), style="bold"), id="push-head")
            with VerticalScroll(id="push-lines"):
                yield Static(report_text(cpush.report_lines(self.preview)))
            for note in self.notes:
                yield Static(Text(note, style="magenta"), classes="push-note")
            with Horizontal(id="push-buttons"):
                yield Button("Push (y)", id="push-go", variant="warning")
                yield Button("Cancel (esc)", id="push-cancel")

    def on_mount(self) -> None:
        self.query_one("#push-box").border_title = "Push %s to the agent? Its dry run says:" % (
            self.preview.plan.pushed_env)
        self.query_one("#push-go", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "push-go")

    def action_push(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


def report_text(lines: Sequence[cpush.ReportLine], summary_style: str = "dim") -> Text:
    """Push report lines styled as the CLI prints them (the summary as *summary_style*)."""
    text = Text()
    for i, line in enumerate(lines):
        if i:
            text.append("\n")
        text.append(line.text, style=summary_style if line.kind == "summary"
                    else REPORT_STYLE.get(line.kind, ""))
    return text
