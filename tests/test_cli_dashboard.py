"""The dashboard's entry points outside a terminal (the real `memtui` in pipes), and the pieces
`memtui run` builds its dashboard from: the client that finds CMD's agent, and CMD's captured
output. In a real terminal they are driven by tests/tui/test_tmux.py."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import wait_for
from memtui.cli.dashboard import ChildAgentClient
from memtui.protocol import AgentError, AgentGone
from memtui.tui.run_output import STDERR, STDOUT, ChildOutput
from test_cli import one_sentence


# memtui alone ---------------------------------------------------------------------------------
def test_memtui_alone_in_a_pipe_prints_the_process_list(start_target, cli):
    target = start_target('env="staging"')
    out = cli(env={"COLUMNS": "160"})
    assert out.returncode == 0, out.stderr
    assert "Agents" in out.stdout and str(target.pid) in out.stdout
    assert "staging" in out.stdout and "\x1b[" not in out.stdout  # text, not a TUI


def test_help_names_the_dashboard_commands(cli):
    out = cli("--help", env={"COLUMNS": "120"})
    assert out.returncode == 0, out.stderr
    for command in ("attach", "run", "demo", "ps"):
        assert command in out.stdout
    assert "pick a process" in out.stdout


# attach ---------------------------------------------------------------------------------------
def test_attach_problems_are_one_sentence_before_any_dashboard(cli, start_target, tmp_path):
    if not os.path.exists("/proc/999999"):
        assert one_sentence(cli("attach", "999999")) == "No process with PID 999999."
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        # no agent is no longer an error: attach falls back to the external view
        out = cli("attach", str(sleeper.pid), "--no-tui")
        assert out.returncode == 0 and "not a Python process; showing the external view" in \
            out.stdout
    finally:
        sleeper.kill()
        sleeper.wait()
    target = start_target()
    missing = tmp_path / "nope"
    assert one_sentence(cli("attach", str(target.pid), "--profiles", str(missing))) == \
        "No profiles directory %s." % missing
    out = cli("attach", "0")
    assert out.returncode == 2 and "Invalid value for 'pid'" in out.stderr


def test_attach_without_a_terminal_says_what_to_use_instead(cli, start_target):
    target = start_target()
    out = cli("attach", str(target.pid))
    line = one_sentence(out)
    assert line == ("The dashboard needs a terminal (stdin, stdout and stderr); in a pipe, "
                    "use `memtui attach %d --no-tui`." % target.pid)
    assert out.stdout == ""


# run: finding CMD's agent ---------------------------------------------------------------------
def test_child_client_follows_the_agent_of_a_descendant_from_start_to_exit(agent_env,
                                                                            tmp_path):
    def step(name):
        return str(tmp_path / name)

    # The agent is in a grandchild (sh -> python), started and stopped when the test says.
    script = tmp_path / "inner.py"
    script.write_text(
        "import os, time, memtui\n"
        "def wait(name):\n"
        "    while not os.path.exists(name): time.sleep(0.02)\n"
        "wait(%r)\n"
        "memtui.start()\n"
        "open(%r, 'w').close()\n"
        "wait(%r)\n"
        "memtui.stop()\n"
        "open(%r, 'w').close()\n"
        "wait(%r)\n" % (step("go"), step("started"), step("stop"), step("stopped"),
                         step("end")))
    proc = subprocess.Popen(["sh", "-c", '"$0" "$1"; exit 4', sys.executable, str(script)],
                            env=agent_env)

    def connected():
        try:
            return client.connect()
        except AgentError:
            return None

    try:
        client = ChildAgentClient(proc, wait_s=60)
        with pytest.raises(AgentError) as waiting:
            client.connect()
        assert str(waiting.value) == "Waiting for the agent to start in PID %d." % proc.pid
        open(step("go"), "w").close()
        wait_for(lambda: os.path.exists(step("started")), message="the agent started")
        wait_for(connected, message="connected to the grandchild's agent")
        grandchild = client.server_pid
        assert grandchild != proc.pid and grandchild in client.pids
        assert client.stats()["pid"] == grandchild
        clone = client.clone().connect()  # the dashboard's second connection, for actions
        assert clone.server_pid == grandchild
        clone.close()
        client.close()
        open(step("stop"), "w").close()
        wait_for(lambda: os.path.exists(step("stopped")), message="the agent stopped")
        with pytest.raises(AgentError) as lost:
            client.connect()
        assert str(lost.value) == ("The agent in PID %d has gone; looking for it again."
                                   % grandchild)
        open(step("end"), "w").close()
        proc.wait(20)
        with pytest.raises(AgentGone) as gone:
            client.connect()
        assert str(gone.value) == "PID %d exited with code 4." % proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_child_client_says_when_no_agent_has_come(agent_env):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=agent_env)
    try:
        client = ChildAgentClient(proc, wait_s=0)
        with pytest.raises(AgentError) as exc:
            client.connect()
        assert str(exc.value) == ("No memtui agent has appeared in PID %d or its children; "
                                  "still looking." % proc.pid)
        proc.kill()
        proc.wait()
        with pytest.raises(AgentGone) as gone:
            client.connect()
        assert str(gone.value) == "PID %d was killed by SIGKILL." % proc.pid
    finally:
        proc.kill()
        proc.wait()


# run: CMD's output while the dashboard has the screen -----------------------------------------
def _child_writing(output: ChildOutput, code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                            stdout=output.stdout, stderr=output.stderr)
    output.started()
    return proc


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_child_output_is_held_in_order_then_replayed_and_passed_through(tmp_path):
    go = tmp_path / "go"
    output = ChildOutput()
    proc = _child_writing(output, (
        "import os, sys, time\n"
        "for i in range(3):\n"
        "    print('out', i, flush=True)\n"
        "    print('err', i, file=sys.stderr, flush=True)\n"
        "sys.stdout.write('no newline yet')\n"
        "sys.stdout.flush()\n"
        "while not os.path.exists(%r): time.sleep(0.02)\n"
        "print(' - later')\n" % str(go)))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        wait_for(lambda: len(output.recent_lines()) == 6, message="six complete lines")
        lines = output.recent_lines()
        # Each stream in its own order; between the two, in the order they were read.
        assert [text for stream, text in lines if stream == STDOUT] == ["out 0", "out 1",
                                                                        "out 2"]
        assert [text for stream, text in lines if stream == STDERR] == ["err 0", "err 1",
                                                                        "err 2"]
        assert output.recent_lines(2) == lines[-2:]
        wait_for(lambda: output.captured == len(b"out 0\nerr 0\n") * 3 + len(b"no newline yet"),
                 message="the partial line captured")
        output.release(out_w, err_w)
        go.write_text("")
        assert proc.wait(20) == 0
        output.close()
    finally:
        os.close(out_w)
        os.close(err_w)
    assert _read_all(out_r) == b"out 0\nout 1\nout 2\nno newline yet - later\n"
    assert _read_all(err_r) == b"err 0\nerr 1\nerr 2\n"
    os.close(out_r)
    os.close(err_r)
    assert output.recent_lines(1) == [(STDOUT, "no newline yet - later")]


def test_child_output_is_not_lost_when_never_released(tmp_path):
    output = ChildOutput()
    proc = _child_writing(output, "print('hello')")
    assert proc.wait(20) == 0
    r, w = os.pipe()
    saved = os.dup(1)
    os.dup2(w, 1)  # close() writes what nobody released to our stdout
    try:
        output.close()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(w)
    assert _read_all(r) == b"hello\n"
    os.close(r)
