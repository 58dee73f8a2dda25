"""The process picker against real processes: agents listed first, the list follows processes
as they come and go, Enter attaches the dashboard, a process without an agent gets one sentence
on how to give it one."""
from __future__ import annotations

import subprocess
import sys

import pytest

from memtui import discovery
from memtui.tui.app import MemtuiApp
from memtui.tui.screens.picker import PickerApp, PickerScreen, choices
from memtui.tui.widgets.keyed_table import KeyedTable

from .pilot import run, screen_text, wait_for


@pytest.fixture
def local_agents(monkeypatch, agent_env):
    """This test process looks in the same private runtime directory as the targets."""
    monkeypatch.setenv("MEMTUI_RUNTIME_DIR", agent_env["MEMTUI_RUNTIME_DIR"])


@pytest.fixture
def idle_python(agent_env):
    """A Python process without an agent."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env=agent_env)
    yield proc
    proc.kill()
    proc.wait()


def _table(app):
    return app.screen.query_one("#picker-table", KeyedTable)


def _has_row(app, key):
    return isinstance(app.screen, PickerScreen) and _table(app).row_cells(key) is not None


async def _select(pilot, key):
    await wait_for(pilot, lambda: _has_row(pilot.app, key), timeout=15, what="row " + key)
    table = _table(pilot.app)
    table.move_cursor(row=table.get_row_index(key), animate=False)
    await pilot.pause()
    assert pilot.app.screen.selected.pid == int(key.split("-")[1])


def _notes(app):
    return [n.message for n in app._notifications]  # noqa: SLF001 - what the toasts say


def test_rows_put_agents_first_with_env_and_mark_the_others(local_agents, start_target,
                                                           idle_python):
    target = start_target('env="staging"')
    found = discovery.scan()
    rows = choices(found)
    agent_choice, agent_cells = rows["agent-%d" % target.pid]
    other_choice, other_cells = rows["other-%d" % idle_python.pid]
    assert agent_choice.has_agent and "service.py" in agent_choice.command
    assert not other_choice.has_agent and other_choice.socket is None
    assert str(agent_cells[1]) == "staging" and str(other_cells[1]) == "no agent"
    assert agent_cells[2].sort_value > 0  # rss, sorted by bytes
    # The pid column sorts every agent before every other process.
    agent_sorts = [cells[0].sort_value for key, (_, cells) in rows.items()
                   if key.startswith("agent-")]
    other_sorts = [cells[0].sort_value for key, (_, cells) in rows.items()
                   if key.startswith("other-")]
    assert max(agent_sorts) < min(other_sorts)


def test_enter_attaches_the_dashboard_to_the_chosen_agent(local_agents, start_target,
                                                          idle_python):
    target = start_target()
    app = PickerApp(None, interval=0.25)

    async def body(pilot):
        await _select(pilot, "agent-%d" % target.pid)
        table = _table(app)
        assert table.get_row_index("agent-%d" % target.pid) < \
            table.get_row_index("other-%d" % idle_python.pid)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.last_sample is not None, timeout=15,
                       what="a sample from the chosen agent")
        assert app.last_sample.pid == target.pid
        assert not isinstance(app.screen, PickerScreen)
        assert app.target == str(target.pid) and "service.py" in app.command
        assert "PID %d" % target.pid in screen_text(app)

    run(app, body)


def test_enter_on_a_process_without_agent_says_how_to_get_one(local_agents, idle_python):
    app = PickerApp(None)

    async def body(pilot):
        await _select(pilot, "other-%d" % idle_python.pid)
        await pilot.press("enter")
        await wait_for(pilot, lambda: _notes(app), what="a notification")
        (note,) = _notes(app)
        assert note.startswith("PID %d (" % idle_python.pid)
        assert "has no memtui agent" in note and "memtui.start()" in note \
            and "memtui run" in note
        assert isinstance(app.screen, PickerScreen) and app.client is None

    run(app, body)


def test_the_list_follows_processes_as_they_start_and_exit(local_agents, start_target):
    app = PickerApp(None)

    async def body(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen)
                       and app.screen.scans >= 1, what="the first scan")
        target = start_target()
        key = "agent-%d" % target.pid
        await wait_for(pilot, lambda: _has_row(app, key), timeout=15, what="the new agent")
        target.stop()
        await wait_for(pilot, lambda: not _has_row(app, key), timeout=15,
                       what="the agent's row gone")
        assert "agent" in str(app.screen.query_one("#picker-status").render())

    run(app, body)


def test_an_agent_gone_before_enter_is_one_notification_and_the_picker_stays(
        local_agents, start_target):
    target = start_target()
    found = discovery.scan()  # a real scan, kept: the next one would no longer list it
    app = MemtuiApp(None)
    picked = []

    async def body(pilot):
        await app.push_screen(PickerScreen(scan=lambda: found), picked.append)
        await _select(pilot, "agent-%d" % target.pid)
        target.stop()
        await pilot.press("enter")
        await wait_for(pilot, lambda: _notes(app), what="a notification")
        assert _notes(app) == ["No process with PID %d." % target.pid]
        assert isinstance(app.screen, PickerScreen) and picked == []

    run(app, body)


def test_q_on_the_picker_quits(local_agents):
    app = PickerApp(None)

    async def body(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen), what="the picker")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")

    run(app, body)
    assert app.return_code == 0
