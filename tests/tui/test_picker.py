"""The process picker against real processes: agents listed first, the list follows processes
as they come and go, Enter attaches the dashboard: to an agent; to a dormant one after waking it;
to a process without one after asking whether to inject it (else the external view)."""
from __future__ import annotations

import os
import select
import subprocess
import sys

import pytest

from memtui import discovery
from memtui.attach import plan
from memtui.client import AgentClient, find_socket, process_name
from memtui.tui.app import MemtuiApp
from memtui.tui.screens.picker import InjectScreen, PickerApp, PickerScreen, choices
from memtui.discovery import scan as picker_scan
from memtui.tui.widgets.keyed_table import KeyedTable

from .pilot import run, screen_text, wait_for


@pytest.fixture
def local_agents(monkeypatch, agent_env):
    """This test process looks in the same private runtime directory as the targets."""
    monkeypatch.setenv("MEMTUI_RUNTIME_DIR", agent_env["MEMTUI_RUNTIME_DIR"])


# A plain CPython target: the pyenv build when there is one (not this venv's interpreter).
PYTHON = next((p for p in ("/root/.pyenv/versions/3.11.7/bin/python",) if os.path.exists(p)),
              sys.executable)
LOOP = "import time\nprint('READY', flush=True)\nwhile True:\n    time.sleep(0.1)\n"
DORMANT = ("import memtui, time\nmemtui.install()\nprint('READY', flush=True)\n"
           "while True:\n    time.sleep(0.1)\n")


@pytest.fixture
def start_python(agent_env):
    """start_python(code, plain=False, env=None) -> Popen, once it printed READY. *plain*: no
    PYTHONPATH, so memtui is not importable there (injection brings its own path)."""
    started = []

    def start(code, plain=False, env=None):
        full = dict(agent_env)
        if plain:
            full.pop("PYTHONPATH", None)
        full.update(env or {})
        proc = subprocess.Popen([PYTHON, "-c", code], env=full, stdout=subprocess.PIPE,
                                text=True)
        started.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready and proc.stdout.readline().strip() == "READY", "the target did not start"
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            proc.stdout.close()


@pytest.fixture
def idle_python(agent_env):
    """A Python process without an agent."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env=agent_env)
    try:
        yield proc
    finally:
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
    # the command is cut at 120 characters, and the checkout's path is part of it
    assert agent_choice.has_agent and agent_choice.command == process_name(target.pid)
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
        assert app.target == str(target.pid) and app.command == process_name(target.pid)
        assert "PID %d" % target.pid in screen_text(app)

    run(app, body)


def _wait_dashboard(pilot, pid, what):
    app = pilot.app
    return wait_for(pilot, lambda: app.last_sample is not None and app.last_sample.pid == pid
                    and app.connection.state == "live", timeout=20, what=what)


async def _enter_to_question(pilot, pid):
    await _select(pilot, "other-%d" % pid)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, InjectScreen), timeout=15,
                   what="the question before injecting")
    await pilot.pause()
    question = pilot.app.screen.question
    assert question.startswith("Inject the memtui agent into PID %d (Python 3.11, " % pid)
    assert question.endswith("? It starts the agent on a new thread of that process.")
    text = " ".join(screen_text(pilot.app).split())
    assert "Inject the memtui agent into PID %d" % pid in text, text
    assert "i Inject" in text and "e External view" in text and "Esc Cancel" in text


def test_enter_then_i_injects_the_agent_and_shows_its_dashboard(local_agents, start_python):
    target = start_python(LOOP, plain=True)
    app = PickerApp(None, interval=0.25)

    async def body(pilot):
        await _enter_to_question(pilot, target.pid)
        await pilot.press("i")
        await _wait_dashboard(pilot, target.pid, "the injected agent's first sample")
        assert isinstance(app.client, AgentClient) and app.external is None
        assert app.last_sample.info.get("mode") != "external"
        assert app.target == str(target.pid) and app.command == process_name(target.pid)
        assert "PID %d" % target.pid in screen_text(app)
        assert any("agent started by injection" in n for n in _notes(app))
        assert find_socket(target.pid)  # the agent lives on in the target

    run(app, body)
    assert target.poll() is None


def test_enter_then_e_shows_the_external_view(local_agents, start_python):
    target = start_python(LOOP, plain=True)
    app = PickerApp(None, interval=0.25)

    async def body(pilot):
        await _enter_to_question(pilot, target.pid)
        await pilot.press("e")
        await _wait_dashboard(pilot, target.pid, "the external view's first sample")
        assert app.client.info["mode"] == "external" and app.external
        assert "PID %d" % target.pid in screen_text(app)
        assert find_socket(target.pid) is None  # nothing was started in it

    run(app, body)


def test_escape_on_the_question_leaves_the_process_untouched(local_agents, start_python,
                                                            agent_env):
    target = start_python(LOOP, plain=True)
    app = PickerApp(None)

    async def body(pilot):
        for _ in range(2):  # the picker stays usable: Enter asks again
            await _enter_to_question(pilot, target.pid)
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen)
                           and app.screen.connecting is None, what="back on the picker")
        assert app.client is None and target.poll() is None
        assert find_socket(target.pid) is None
        runtime = agent_env["MEMTUI_RUNTIME_DIR"]  # nothing there for it (or nothing at all)
        assert not [name for name in (os.listdir(runtime) if os.path.isdir(runtime) else ())
                    if str(target.pid) in name]
        assert plan(target.pid).way == "external"

    run(app, body)


def test_a_dormant_agent_is_marked_and_enter_wakes_it(local_agents, start_python):
    target = start_python(DORMANT)
    app = PickerApp(None, interval=0.25)
    key = "other-%d" % target.pid

    async def body(pilot):
        await _select(pilot, key)
        state = _table(app).row_cells(key)[1]
        assert str(state) == "dormant" and "yellow" in str(state.style)
        assert "1 dormant" in str(app.screen.query_one("#picker-status").render())
        assert find_socket(target.pid) is None  # the scan only looked
        await pilot.press("enter")
        await _wait_dashboard(pilot, target.pid, "the woken agent's first sample")
        assert not any(isinstance(s, InjectScreen) for s in app.screen_stack)
        assert isinstance(app.client, AgentClient) and app.external is None
        assert any("woke its dormant agent" in n for n in _notes(app))

    run(app, body)


def test_a_process_that_cannot_be_injected_goes_to_the_external_view(local_agents,
                                                                     start_python):
    target = start_python(LOOP, plain=True, env={"MEMTUI_DISABLE": "1"})
    app = PickerApp(None, interval=0.25)

    async def body(pilot):
        await _select(pilot, "other-%d" % target.pid)
        await pilot.press("enter")
        await _wait_dashboard(pilot, target.pid, "the external view's first sample")
        assert not any(isinstance(s, InjectScreen) for s in app.screen_stack)
        assert app.client.info["mode"] == "external" and app.external
        (note,) = [n for n in _notes(app) if "MEMTUI_DISABLE" in n]
        assert note == ("PID %d cannot be given an agent by injection: it has MEMTUI_DISABLE=1 "
                        "set, which turns memtui off; showing the external view." % target.pid)
        assert find_socket(target.pid) is None

    run(app, body)


def test_a_process_gone_before_enter_is_one_notification_and_the_picker_stays(
        local_agents, start_python):
    target = start_python(LOOP, plain=True)
    found = picker_scan()
    app = MemtuiApp(None)
    picked = []

    async def body(pilot):
        await app.push_screen(PickerScreen(scan=lambda: found), picked.append)
        await _select(pilot, "other-%d" % target.pid)
        target.kill()
        target.wait()
        await pilot.press("enter")
        await wait_for(pilot, lambda: _notes(app), what="a notification")
        assert _notes(app) == ["No process with PID %d." % target.pid]
        assert isinstance(app.screen, PickerScreen) and app.screen.connecting is None
        assert picked == []

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
