"""The Profiles pane: environments side by side, env var markers, provenance, edits checked and
written by the config library, pushes through memtui.config.push — with the recorded fake agent
on a copy of the shipped profiles, and once against a real target."""
from __future__ import annotations

import os
import shutil

import pytest
from textual.widgets import Button, Input, Select, Static

from conftest import ROOT
from memtui.client import AgentClient
from memtui.config import ProfileStore, edit, schema
from memtui.config import push as cpush
from memtui.config.diff import compare
from memtui.tui.app import MemtuiApp
from memtui.tui.panes.profiles import ProfilesPane, choose_directory
from memtui.tui.screens.profile_edit import ProfileEditScreen, PushConfirmScreen
from memtui.tui.widgets.keyed_table import KeyedTable

from .fake_client import FakeClient
from .pilot import FROZEN, run, wait_for


@pytest.fixture(autouse=True)
def no_memtui_env(monkeypatch):
    """The developer's own MEMTUI__* settings must not show up in the table."""
    for name in [n for n in os.environ if n.startswith("MEMTUI__")] + ["MEMTUI_ENV",
                                                                       "MEMTUI_PROFILES"]:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pdir(tmp_path):
    target = tmp_path / "profiles"
    shutil.copytree(ROOT / "profiles", target)
    return target


def _app(pdir, client=None):
    return MemtuiApp(client or FakeClient(), profiles=str(pdir), clock=lambda: FROZEN)


async def _open(pilot) -> ProfilesPane:
    app = pilot.app
    await wait_for(pilot, lambda: app.last_sample is not None, what="first sample")
    await pilot.press("7")
    pane = app.pane("profiles")
    await wait_for(pilot, lambda: pane.view is not None and pane.view.envs, what="profiles")
    await pilot.pause()
    return pane


def _table(pane) -> KeyedTable:
    return pane.query_one("#profiles-table", KeyedTable)


def _plain(pane, widget_id: str) -> str:
    return str(pane.query_one(widget_id, Static).render())


async def _goto(pilot, pane, key: str, env: str) -> None:
    table = _table(pane)
    column = [c.key.value for c in table.ordered_columns].index(
        next(k for k in table.column_keys if k.rstrip("*") == "env:" + env))
    table.move_cursor(row=table.get_row_index(key), column=column, animate=False)
    await pilot.pause()
    assert pane.selected() == (key, env)


def _cells(pane, key: str):
    return [c.plain for c in _table(pane).row_cells(key)[1:]]


# -- the table ------------------------------------------------------------------------------------
def test_every_env_side_by_side_with_differing_keys_highlighted(pdir):
    store = ProfileStore(str(pdir))
    rows = [r for r in compare([store.resolve(e) for e in store.envs()]) if r.set_somewhere()]
    differing = {r.key for r in rows if r.differs}

    async def body(pilot):
        pane = await _open(pilot)
        table = _table(pane)
        assert [str(c.label) for c in table.ordered_columns] == ["key", "dev ●", "prod", "test"]
        assert table.row_count == len(rows)
        assert _cells(pane, "workers.max_workers") == ["4", "64", "16"]
        assert _cells(pane, "profiler.interval") == ["500ms", "5s", "1s"]
        for key in ("workers.max_workers", "pool.scale_up_threshold"):
            styles = {str(c.style) for c in table.row_cells(key)}
            assert ("bold yellow" in styles) == (key in differing), (key, styles)
        assert _cells(pane, "cache.tiers.warm.max_bytes") == ["—", "512MiB", "—"]
        assert _cells(pane, "cache.compression")[0].endswith(" ·")  # dev: the schema default
        assert "%d of %d keys differ" % (len(differing), len(rows)) in _plain(pane,
                                                                             "#profiles-head")
        await pilot.press("d")
        assert set(table._cells) == differing
        await pilot.press("d")
        assert table.row_count == len(rows)

    run(_app(pdir), body)


def test_an_env_var_override_is_marked_in_every_column_and_explained(pdir, monkeypatch):
    monkeypatch.setenv("MEMTUI__ALERTS__WARNING_PCT", "70")

    async def body(pilot):
        pane = await _open(pilot)
        assert _cells(pane, "alerts.warning_pct") == ["$70", "$70", "$70"]
        assert all(str(c.style) == "bold magenta"
                   for c in _table(pane).row_cells("alerts.warning_pct")[1:])
        assert _cells(pane, "alerts.critical_pct") == ["95", "95", "95"]  # no marker
        head = _plain(pane, "#profiles-head")
        assert "$ MEMTUI__ALERTS__WARNING_PCT=70" in head
        assert "this dashboard's environment" in head
        await _goto(pilot, pane, "alerts.warning_pct", "prod")
        where = _plain(pane, "#profiles-where")
        assert "◀ MEMTUI__ALERTS__WARNING_PCT (this dashboard's environment)" in where
        assert "prod.toml 85" in where and "base.toml 80" in where

    run(_app(pdir), body)


def test_provenance_and_schema_facts_follow_the_cursor(pdir):
    async def body(pilot):
        pane = await _open(pilot)
        await _goto(pilot, pane, "profiler.retention", "test")
        where = _plain(pane, "#profiles-where")
        assert "profiler.retention = 20  in test" in where
        assert "◀ %s" % (pdir / "base.toml") in where  # set by the file test extends
        about = _plain(pane, "#profiles-about")
        assert schema.lookup("profiler.retention").spec["description"] in about
        await _goto(pilot, pane, "workers.max_workers", "dev")
        where = _plain(pane, "#profiles-where")
        assert "◀ %s" % (pdir / "dev.toml") in where and "over schema default" in where
        await pilot.press("left")  # the key column: how the envs compare
        assert "differs: dev 4 · prod 64 · test 16" in _plain(pane, "#profiles-where")

    run(_app(pdir), body)


# -- editing --------------------------------------------------------------------------------------
def test_a_valid_edit_writes_the_file_in_place_and_the_table_follows(pdir):
    before = (pdir / "dev.toml").read_text()

    async def body(pilot):
        pane = await _open(pilot)
        await _goto(pilot, pane, "workers.queue_size", "dev")
        await pilot.press("e")
        screen = await wait_for(pilot, lambda: isinstance(pilot.app.screen, ProfileEditScreen)
                                and pilot.app.screen, what="edit dialog")
        box = screen.query_one("#edit-value", Input)
        assert box.value == "200"  # the file's value
        await pilot.press("backspace", "backspace", "backspace", "5", "0", "0")
        assert "workers.queue_size: 200 → 500" in str(screen.query_one("#edit-preview").render())
        assert not screen.query_one("#edit-save", Button).disabled
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, ProfileEditScreen),
                       what="dialog closed")
        await wait_for(pilot, lambda: _cells(pane, "workers.queue_size")[0] == "500",
                       what="table reloaded")
        status = _plain(pane, "#profiles-status")
        assert "Wrote %s (previous version in %s.bak)." % (pdir / "dev.toml",
                                                           pdir / "dev.toml") in status

    run(_app(pdir), body)
    after = (pdir / "dev.toml").read_text()
    assert (pdir / "dev.toml.bak").read_text() == before
    # only the value's bytes changed: its comment and every other line are as they were
    assert after == before.replace("queue_size = 200 ", "queue_size = 500 ")
    assert "# a small queue: backpressure shows up in development" in after


@pytest.mark.parametrize("key,typed,message", [
    ("pool.max_size", "abc", "dev.toml::$.pool.max_size: expected an integer, got 'abc'"),
    ("pool.min_size", "9", "dev.toml::$.pool.min_size: min_size 9 is above max_size 4"),
])
def test_an_invalid_edit_shows_the_error_inline_and_writes_nothing(pdir, key, typed, message):
    files = {p.name: p.read_bytes() for p in pdir.iterdir()}

    async def body(pilot):
        pane = await _open(pilot)
        await _goto(pilot, pane, key, "dev")
        await pilot.press("enter")
        screen = await wait_for(pilot, lambda: isinstance(pilot.app.screen, ProfileEditScreen)
                                and pilot.app.screen, what="edit dialog")
        screen.query_one("#edit-value", Input).value = ""
        await pilot.press(*typed)
        await pilot.pause()
        error = str(screen.query_one("#edit-error").render())
        assert message in error, error
        assert screen.query_one("#edit-save", Button).disabled
        await pilot.press("ctrl+s")
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert pilot.app.screen is screen  # still open: nothing was saved
        await pilot.press("escape")
        assert not isinstance(pilot.app.screen, ProfileEditScreen)

    run(_app(pdir), body)
    assert {p.name: p.read_bytes() for p in pdir.iterdir()} == files  # no .bak either


def test_an_edit_can_go_to_the_base_file_every_env_extends(pdir):
    async def body(pilot):
        pane = await _open(pilot)
        await _goto(pilot, pane, "profiler.retention", "prod")
        await pilot.press("e")
        screen = await wait_for(pilot, lambda: isinstance(pilot.app.screen, ProfileEditScreen)
                                and pilot.app.screen, what="edit dialog")
        screen.query_one("#edit-target", Select).value = "base"
        screen.query_one("#edit-value", Input).value = "30"
        await pilot.pause()
        assert screen.target == "base"
        assert "in prod: 20 → 30" in str(screen.query_one("#edit-preview").render())
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: _cells(pane, "profiler.retention") == ["30"] * 3,
                       what="every env reading the new base value")

    before = (pdir / "prod.toml").read_bytes()
    run(_app(pdir), body)
    assert (pdir / "prod.toml").read_bytes() == before
    assert "retention = 30 " in (pdir / "base.toml").read_text()


def test_secrets_stay_masked_in_the_table_the_detail_and_the_edit_box(pdir):
    with open(pdir / "dev.toml", "a") as fh:
        fh.write('db_password = "hunter2"\n')  # under [custom], the file's last table

    async def body(pilot):
        pane = await _open(pilot)
        assert _cells(pane, "custom.db_password")[0] == schema.MASK
        await _goto(pilot, pane, "custom.db_password", "dev")
        assert "hunter2" not in _plain(pane, "#profiles-where")
        await pilot.press("e")
        screen = await wait_for(pilot, lambda: isinstance(pilot.app.screen, ProfileEditScreen)
                                and pilot.app.screen, what="edit dialog")
        box = screen.query_one("#edit-value", Input)
        assert box.value == "" and box.password
        await pilot.press(*"s3cret")
        preview = str(screen.query_one("#edit-preview").render())
        assert "custom.db_password: (secret changed)" in preview and "s3cret" not in preview

    run(_app(pdir), body)


def test_a_profile_that_cannot_be_read_is_named_and_the_others_still_show(pdir):
    (pdir / "test.toml").write_text('extends = "base"\n[pool\n')

    async def body(pilot):
        pane = await _open(pilot)
        assert [str(c.label) for c in _table(pane).ordered_columns] == ["key", "dev ●", "prod"]
        head = _plain(pane, "#profiles-head")
        assert "test: %s::$: not valid TOML" % (pdir / "test.toml") in head

    run(_app(pdir), body)


def test_a_change_made_elsewhere_shows_up(pdir):
    async def body(pilot):
        pane = await _open(pilot)
        edit.set_values(ProfileStore(str(pdir)), "test", ["workers.max_workers=12"])
        await pilot.press("r")  # the next poll
        await wait_for(pilot, lambda: _cells(pane, "workers.max_workers")[2] == "12",
                       what="the new value")

    run(_app(pdir), body)


# -- pushing --------------------------------------------------------------------------------------
def test_push_previews_then_sends_the_agents_env_with_config_apply(pdir):
    client = FakeClient()
    expected = cpush.plan_push(FakeClient(client.state).connect(), ProfileStore(str(pdir)))
    client.state.calls.clear()

    async def body(pilot):
        pane = await _open(pilot)
        await pilot.press("u")
        screen = await wait_for(pilot, lambda: isinstance(pilot.app.screen, PushConfirmScreen)
                                and pilot.app.screen, what="confirm dialog")
        shown = "\n".join(str(s.render()) for s in screen.query(Static))
        assert "users max_entries → 2000" in shown and "dry run, nothing applied" in shown
        applies = [a for op, a in client.state.calls if op == "config.apply"]
        assert [a["dry_run"] for a in applies] == [True] and client.state.applied == []
        await pilot.press("y")
        await wait_for(pilot, lambda: client.state.applied, what="the push")
        await wait_for(pilot, lambda: "Changed" in _plain(pane, "#profiles-status"),
                       what="the report")
        assert "users max_entries → 2000" in _plain(pane, "#profiles-status")

    run(_app(pdir, client), body)
    assert client.state.applied == [{"settings": expected.settings, "options": expected.options,
                                     "env": "dev"}]


def test_cancelling_a_push_sends_nothing(pdir):
    client = FakeClient()

    async def body(pilot):
        pane = await _open(pilot)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, PushConfirmScreen),
                       what="confirm dialog")
        await pilot.press("escape")
        await pilot.pause()
        assert "nothing sent" in _plain(pane, "#profiles-status")

    run(_app(pdir, client), body)
    assert client.state.applied == []


def test_an_invalid_profile_is_not_pushed_and_the_pane_says_why(pdir):
    client = FakeClient()
    (pdir / "dev.toml").write_text('extends = "base"\nenvironment = "dev"\n'
                                   '[pool]\nmin_size = 9\nmax_size = 2\n')

    async def body(pilot):
        pane = await _open(pilot)
        await pilot.press("u")
        await wait_for(pilot, lambda: "Not pushed" in _plain(pane, "#profiles-status"),
                       what="the refusal")
        status = _plain(pane, "#profiles-status")
        assert "Not pushed: dev is invalid." in status
        assert "dev.toml::$.pool.min_size: min_size 9 is above max_size 2" in status

    run(_app(pdir, client), body)
    assert "config.apply" not in client.ops()


def test_push_from_the_pane_retunes_a_real_agent(pdir, start_target):
    t = start_target("interval=0.2", "env=dev")
    assert t.send('cache users {"max_entries": 5000}') == "ok users"
    assert t.send("fill users 3000") == "ok 3000"

    async def body(pilot):
        pane = await _open(pilot)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, PushConfirmScreen),
                       what="confirm dialog")
        await pilot.press("y")
        await wait_for(pilot, lambda: "Changed" in _plain(pane, "#profiles-status"),
                       what="the report")
        assert "users max_entries → 2000" in _plain(pane, "#profiles-status")

    run(_app(pdir, AgentClient(pid=t.pid)), body)
    assert t.send("len users") == "ok 2000"


# -- where the profiles come from -----------------------------------------------------------------
def test_no_profiles_is_a_message_not_an_error(tmp_path):
    async def body(pilot):
        app = pilot.app
        await wait_for(pilot, lambda: app.last_sample is not None, what="first sample")
        await pilot.press("7")
        pane = app.pane("profiles")
        await wait_for(pilot, lambda: pane.view is not None, what="the pane")
        assert "No profiles in %s" % (tmp_path / "none") in _plain(pane, "#profiles-head")
        assert not pane.query_one("#profiles-table").display
        await pilot.press("e")

    run(_app(tmp_path / "none"), body)


def test_the_directory_is_the_dashboards_else_the_agents_else_the_default(tmp_path):
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    info = {"profile": str(agent_dir / "prod.toml")}
    assert choose_directory(str(tmp_path / "mine"), info, {}) == (
        str(tmp_path / "mine"), "given")
    assert choose_directory(None, info, {})[0] == str(agent_dir)
    gone = {"profile": "/nowhere/here/prod.toml"}  # another machine's path
    assert choose_directory(None, gone, {"MEMTUI_PROFILES": str(tmp_path)}) == (
        str(tmp_path), "$MEMTUI_PROFILES")
    assert choose_directory(None, {}, {}) == (os.path.abspath("profiles"), "./profiles")


def test_a_push_to_a_vanished_agent_says_so_in_the_pane(pdir):
    """Review finding: the "Checking …" line stayed for good when the dry run failed."""
    client = FakeClient()

    async def body(pilot):
        pane = await _open(pilot)
        client.kill()
        await pilot.press("u")
        await wait_for(pilot, lambda: "Not pushed" in _plain(pane, "#profiles-status"),
                       what="the failure in the pane")
        assert "Checking" not in _plain(pane, "#profiles-status")
        assert "14607" in _plain(pane, "#profiles-status")
        assert client.state.applied == []

    run(_app(pdir, client), body)
