"""Profiles: every environment side by side (differing keys highlighted, env var overrides
marked, the highlighted value's provenance below), edited in place with the config library's
checks and safe write, and pushed to the attached agent after a dry run."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static
from textual.worker import Worker

from ...config import ConfigError, schema
from ...config import push as cpush
from ...config.diff import DiffRow
from ...config.profiles import key_for_env_var, masked, secret_path
from ...config.safe_write import show_path
from ..model import Sample
from ..screens.profile_edit import ProfileEditScreen, PushConfirmScreen, problem_lines, report_text
from ..profiles_view import (DEFAULT_MARK, ENV_MARK, KIND_STYLE, WHY, ProfilesView, about_text,
                             choose_directory, clip, clip_middle, edit_text, layer_label,
                             load_view, signature, value_text)
from ..widgets.keyed_table import KeyedTable, cell
from .base import Pane


class ProfilesPane(Pane):
    PANE_ID = "profiles"
    TITLE = "Profiles"
    KEY = "7"
    BINDINGS = [
        Binding("e", "edit", "Edit value"),
        Binding("u", "push", "Push to agent"),
        Binding("d", "toggle_differing", "Only differing"),
        Binding("escape", "clear_status", "Clear message", show=False),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.view: Optional[ProfilesView] = None
        self.only_differing = False
        self.agent_env: Optional[str] = None
        self._signature: Tuple[Any, ...] = ()
        self._push: Optional[Worker] = None  # the push (or its dry run) under way

    def compose(self) -> ComposeResult:
        yield Static(id="profiles-head")
        yield KeyedTable(id="profiles-table", cursor_type="cell", fixed_columns=1,
                         zebra_stripes=False)
        yield Static(id="profiles-where")
        yield Static(id="profiles-about")
        yield Static(id="profiles-status")

    def on_mount(self) -> None:
        table = self.query_one("#profiles-table", KeyedTable)
        table.sort_by, table.sort_reverse = "key", False
        self.query_one("#profiles-status").display = False

    def focus_default(self) -> None:
        if self.view is None:
            self.reload(self.sample.info if self.sample is not None else {})
        self.query_one("#profiles-table").focus()

    # data -----------------------------------------------------------------------------------
    def show(self, sample: Sample) -> None:
        env = sample.info.get("env")
        changed = env != self.agent_env
        self.agent_env = env if isinstance(env, str) else None
        directory, _why = choose_directory(self.dash.profiles_dir, sample.info)
        if self.view is None or signature(directory) != self._signature:
            self.reload(sample.info)
        elif changed:
            self.draw()

    def reload(self, info: Mapping[str, Any]) -> None:
        """Read the profiles again (a save, another program's edit, another agent)."""
        directory, why = choose_directory(self.dash.profiles_dir, info)
        self._signature = signature(directory)
        self.view = load_view(directory, why)
        self.draw()

    # drawing --------------------------------------------------------------------------------
    def draw(self) -> None:
        view = self.view
        if view is None:
            return
        table = self.query_one("#profiles-table", KeyedTable)
        head = self.query_one("#profiles-head", Static)
        head.update(self.head_text(view))
        head.set_class(not view.envs, "-empty")
        for part in ("#profiles-table", "#profiles-where", "#profiles-about"):
            self.query_one(part).display = bool(view.envs)
        if not view.envs:
            return
        columns = [("key", "key")] + [
            (env + (" ●" if env == self.agent_env else ""),
             "env:%s%s" % (env, "*" if env == self.agent_env else "")) for env in view.envs]
        rebuilt = tuple(k for _, k in columns) != table.column_keys
        table.set_columns(columns)
        self.draw_rows()
        if rebuilt:  # a new table starts on the first environment, not on the key
            table.move_cursor(column=1, animate=False)
        self.draw_detail()

    def head_text(self, view: ProfilesView) -> Text:
        text = Text()
        where = show_path(view.directory)
        if not view.store.names():
            text.append("No profiles in %s (%s)." % (where, WHY.get(view.why, view.why)),
                        style="yellow")
            text.append("\nPut ENV.toml files there (memtui config apply FILE -e ENV installs "
                        "one), or start the dashboard with --profiles DIR.", style="dim")
            return text
        ndiff = sum(1 for r in view.rows if r.differs)
        text.append(where + "/", style="bold")
        text.append(" (%s) " % view.why, style="dim")
        text.append("%d of %d keys differ" % (ndiff, len(view.rows)), style="yellow")
        if self.only_differing:
            text.append(" (only those shown)", style="dim")
        legend = ["● agent's env"] if self.agent_env else []
        legend.append("· default")
        if view.env_vars:
            legend.append("%s env var" % ENV_MARK)
        text.append("  " + "  ".join(legend), style="dim")
        for key, value, var in view.env_vars:
            text.append("\n%s %s=%s" % (ENV_MARK, var, value), style="bold magenta")
            text.append(" in this dashboard's environment overrides %s in every column (as "
                        "for memtui config and push)" % key, style="magenta")
        for line in view.errors:
            text.append("\n" + line, style="red")
        return text

    def widths(self, view: ProfilesView, rows: Sequence[DiffRow]) -> Tuple[int, int]:
        """(key width, value width) so that every column fits the table (0: no limit)."""
        total = self.content_size.width
        if total <= 0:
            return 0, 0
        n = len(view.envs)
        room = total - 2 * (n + 1) - 2  # each column's padding, the scrollbar
        longest_key = max([len(r.key) for r in rows] + [3])
        longest_value = max([len(value_text(r.key, v)) + 2 for r in rows for v in r.values]
                            + [len(e) + 2 for e in view.envs])
        key = max(12, min(longest_key, room - n * min(longest_value, 10)))
        value = max(6, min(longest_value, (room - key) // max(1, n)))
        return key, value

    def draw_rows(self) -> None:
        view = self.view
        if view is None or not view.envs:
            return
        order = {name: i for i, name in enumerate(schema.load_schema()["properties"])}
        rows = [r for r in view.rows if r.differs or not self.only_differing]
        key_width, value_width = self.widths(view, rows)
        shown: Dict[str, Tuple[Any, ...]] = {}
        ranked = sorted(rows, key=lambda r: (order.get(r.key.split(".")[0], len(order)), r.key))
        for i, row in enumerate(ranked):
            cells: List[Any] = [cell(clip_middle(row.key, key_width), i, justify="left",
                                     style="bold yellow" if row.differs else "")]
            for value, layer in zip(row.values, row.sources):
                text = value_text(row.key, value)
                mark = layer.kind if layer is not None else ""
                if mark == "env":
                    text = ENV_MARK + text
                width = value_width - (len(DEFAULT_MARK) if mark == "default" else 0)
                text = clip(text, width) + (DEFAULT_MARK if mark == "default" else "")
                style = ("bold magenta" if mark == "env" else "bold yellow" if row.differs
                         else "dim" if mark in ("default", "") else "")
                cells.append(Text(text, style=style, no_wrap=True))
            shown[row.key] = tuple(cells)
        self.query_one("#profiles-table", KeyedTable).sync(shown)

    def selected(self) -> Tuple[Optional[str], Optional[str]]:
        """(key, env) under the cursor; env None on the key column."""
        table = self.query_one("#profiles-table", KeyedTable)
        key = table.selected_key
        column = table.cursor_column
        if key is None or not (0 <= column < len(table.ordered_columns)):
            return key, None
        name = table.ordered_columns[column].key.value or ""
        return key, (name[4:].rstrip("*") if name.startswith("env:") else None)

    def draw_detail(self) -> None:
        where = self.query_one("#profiles-where", Static)
        about = self.query_one("#profiles-about", Static)
        view = self.view
        key, env = self.selected()
        row = view.row(key) if view is not None and key else None
        if view is None or row is None:
            where.update("")
            about.update("")
            return
        where.update(self.where_text(view, row, env))
        about.update(about_text(row.key))

    def where_text(self, view: ProfilesView, row: DiffRow, env: Optional[str]) -> Text:
        text = Text()
        if env is None:  # the key column: how the environments compare
            text.append(row.key, style="bold")
            text.append("  differs: " if row.differs else "  same in every env: ",
                        style="yellow" if row.differs else "dim")
            text.append(" · ".join("%s %s" % (e, value_text(row.key, v))
                                   for e, v in zip(view.envs, row.values)))
            text.append("\nenv var %s · ←/→ pick an env, e edits" % key_for_env_var(row.key),
                        style="dim")
            return text
        resolved = view.resolved[env]
        chain = resolved.chain(row.key)
        value = row.values[view.envs.index(env)]
        text.append("%s = " % row.key, style="bold")
        text.append(value_text(row.key, value), style="bold")
        text.append("  in %s" % env)
        if not chain:
            text.append("\nnot set by %s's files, env vars or the schema" % env, style="dim")
            return text
        text.append("\n◀ ", style="bold green")
        text.append(layer_label(chain[0], resolved), style=KIND_STYLE.get(chain[0].kind, ""))
        for layer in chain[1:]:
            text.append("  over ", style="dim")
            text.append("%s %s" % (layer_label(layer, resolved),
                                   value_text(row.key, masked(row.key, layer.value))),
                        style="dim strike")
        return text

    # events ---------------------------------------------------------------------------------
    def on_resize(self, event: Any) -> None:
        self.draw_rows()

    def on_data_table_cell_highlighted(self, event: DataTable.CellHighlighted) -> None:
        self.draw_detail()

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        self.action_edit()

    def say(self, text: Text) -> None:
        status = self.query_one("#profiles-status", Static)
        status.update(text)
        status.display = bool(text.plain)

    # actions --------------------------------------------------------------------------------
    def action_clear_status(self) -> None:
        self.say(Text(""))

    def action_toggle_differing(self) -> None:
        self.only_differing = not self.only_differing
        self.draw()

    def action_edit(self) -> None:
        view = self.view
        key, env = self.selected()
        if view is None or key is None:
            return
        if env is None:
            self.say(Text("Pick an environment's column (←/→) to edit %s there." % key,
                          style="yellow"))
            return
        resolved = view.resolved[env]
        chain = resolved.chain(key)
        from_files = next((layer for layer in chain if layer.kind != "env"), None)
        override = next((layer for layer in chain[:1] if layer.kind == "env"), None)
        targets = []
        for name, path, _data in view.store.chain(env):
            label = show_path(path)
            if name != env:
                users = [e for e in view.envs if any(n == name for n, _p, _d in
                                                     view.store.chain(e))]
                label += " (for %s)" % ", ".join(users)
            targets.append((name, label))
        about = about_text(key, "\n")
        screen = ProfileEditScreen(
            view.store, env, key, edit_text(key, from_files), targets, about,
            secret=secret_path(key),
            override="%s=%s" % (override.source, value_text(key, masked(key, override.value)))
            if override is not None else None)
        self.app.push_screen(screen, self._edited)

    def _edited(self, result: Any) -> None:
        if result is None:
            return
        where = show_path(result.path)
        if result.written:
            text = Text("Wrote %s%s." % (where, " (previous version in %s)" % show_path(
                result.backup) if result.backup else ""), style="green")
        else:
            text = Text("Nothing to change in %s." % where, style="dim")
        if result.remaining:
            text.append("\n%s still has %d problem%s it had before:" % (
                where, len(result.remaining), "s"[:len(result.remaining) != 1]), style="yellow")
            for p in result.remaining:
                text.append("\n" + str(p._replace(source=show_path(p.source))), style="yellow")
        self.say(text)
        self.reload(self.sample.info if self.sample is not None else {})

    def action_push(self) -> None:
        """Dry-run the push of the agent's environment, then confirm, then push for real."""
        view = self.view
        if view is None or (self._push is not None and self._push.is_running):
            return
        store = view.store
        self.say(Text("Checking %s and asking the agent what a push would change…"
                      % (self.agent_env or "the agent's environment"), style="dim"))

        def preview(client: Any) -> Any:
            try:
                return cpush.push(client, store, dry_run=True)
            except ConfigError as exc:  # refused before sending: said here, not as a failure
                return exc

        self._push = self.dash.run_agent_action("Push (dry run)", preview, self._previewed,
                                                failed=self._not_pushed)

    def _not_pushed(self, why: str) -> None:
        self.say(Text("Not pushed: %s" % why, style="bold red"))

    def _previewed(self, result: Any) -> None:
        if isinstance(result, ConfigError):
            self.say(Text.assemble((str(result), "bold red"), "\n",
                                   problem_lines(result) if result.problems else ""))
            return
        notes = ["Includes %s=%s from this dashboard's environment." % (var, value)
                 for _key, value, var in self.view.env_vars] if self.view else []
        self.say(Text(""))
        self.app.push_screen(PushConfirmScreen(result, notes),
                             lambda go: self._confirmed(result.plan, go))

    def _confirmed(self, plan: cpush.PushPlan, go: Optional[bool]) -> None:
        if not go:
            self.say(Text("Push cancelled; nothing sent.", style="dim"))
            return
        self._push = self.dash.run_agent_action(
            "Push", lambda client: cpush.apply_plan(client, plan), self._pushed,
            failed=self._not_pushed)

    def _pushed(self, result: cpush.PushResult) -> None:
        lines = cpush.report_lines(result)
        self.say(report_text(lines[-1:] + lines[:-1], "bold"))  # summary first: little room
        self.app.notify(lines[-1].text, title="Push %s" % result.plan.pushed_env,
                        severity="error" if result.errors else "information")

