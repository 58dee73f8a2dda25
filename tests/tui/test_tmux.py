"""Real-terminal smoke tests: the real `memtui` entry points run inside tmux, keys are sent with
send-keys and the screen is read back with capture-pane."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from conftest import ROOT, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

# What shows that a pane is open; other panes' wording may change, so each is one loose word.
HEAP_MARK = "tracemalloc"
EVENTS_MARK = "filter"
HELP_MARK = "memtui keys"


class Tmux:
    """One private tmux server (its own socket) running one command in a 120x40 window. The
    pane stays after the command ends; its exit status is written to a file."""

    def __init__(self, tmp_path, env) -> None:
        self.name = "memtui-test-%s" % uuid.uuid4().hex[:12]
        # COLUMNS / LINES (pytest-xdist workers have 80 x 24) would override the pane's size.
        self.env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        self.status_file = tmp_path / ("status-" + self.name)

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.name, "-f", "/dev/null", *args],
                              capture_output=True, text=True, env=self.env, timeout=30)

    def start(self, argv, width: int = 120, height: int = 40, redirect: str = "") -> None:
        line = "cd %s && %s %s; echo $? > %s; exec sleep 600" % (
            shlex.quote(str(ROOT)), " ".join(shlex.quote(a) for a in argv), redirect,
            shlex.quote(str(self.status_file)))
        out = self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), line)
        assert out.returncode == 0, out.stderr

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p").stdout

    def wait_screen(self, predicate, what: str, timeout: float = 20.0) -> str:
        seen = {}

        def check():
            seen["screen"] = self.screen()
            return predicate(seen["screen"])

        try:
            wait_for(check, timeout=timeout, interval=0.1, message=what)
        except AssertionError as exc:
            raise AssertionError("%s; the screen:\n%s" % (exc, seen.get("screen"))) from None
        return seen["screen"]

    def keys(self, *keys: str) -> None:
        for key in keys:
            assert self.tmux("send-keys", key).returncode == 0

    def status(self, timeout: float = 20.0) -> int:
        wait_for(lambda: self.status_file.exists() and self.status_file.read_text().strip(),
                 timeout=timeout, message="the command to exit")
        return int(self.status_file.read_text())

    def memtui_pid(self) -> int:
        """The memtui process: the pane's shell's child."""
        import psutil

        shell = int(self.tmux("display-message", "-p", "#{pane_pid}").stdout)
        children = wait_for(lambda: psutil.Process(shell).children(), message="memtui started")
        return children[0].pid

    def close(self) -> None:
        self.tmux("kill-server")
        socket = os.path.join(self.env.get("TMUX_TMPDIR") or "/tmp", "tmux-%d" % os.getuid(),
                              self.name)
        if os.path.exists(socket):  # a killed server can leave its socket behind
            os.unlink(socket)


@pytest.fixture
def tmux(tmp_path, agent_env):
    session = Tmux(tmp_path, agent_env)
    yield session
    session.close()


def memtui(*args: str):
    return [sys.executable, "-m", "memtui", *args]


def live_numbers(pid: int):
    """The header names PID and shows a measured rss (a number with a unit)."""
    return lambda screen: "PID %d" % pid in screen and re.search(r"rss \d+(\.\d+)? [KMG]i?B",
                                                                screen)


def test_attach_keys_and_quit(tmux, start_target):
    target = start_target()
    tmux.start(memtui("attach", str(target.pid), "--interval", "0.5"))
    tmux.wait_screen(live_numbers(target.pid), "live numbers for the target")
    tmux.keys("2")
    tmux.wait_screen(lambda s: HEAP_MARK in s, "the Heap pane")
    tmux.keys("6")
    tmux.wait_screen(lambda s: EVENTS_MARK in s and HEAP_MARK not in s, "the Events pane")
    tmux.keys("?")
    tmux.wait_screen(lambda s: HELP_MARK in s, "the help screen")
    tmux.keys("Escape")
    tmux.wait_screen(lambda s: HELP_MARK not in s, "the help screen closed")
    tmux.keys("p")
    tmux.wait_screen(lambda s: "PAUSED" in s, "the PAUSED mark")
    tmux.keys("q")
    assert tmux.status() == 0
    assert "Traceback" not in tmux.screen()


def test_target_killed_while_attached_shows_the_banner_and_retries(tmux, start_target):
    target = start_target()
    tmux.start(memtui("attach", str(target.pid), "--interval", "0.25"))
    tmux.wait_screen(live_numbers(target.pid), "live numbers for the target")
    target.proc.kill()
    target.proc.wait()
    screen = tmux.wait_screen(lambda s: "No process with PID %d." % target.pid in s
                              and "Retrying in" in s, "the banner")
    assert "Traceback" not in screen
    tmux.keys("q")
    assert tmux.status() == 0


def test_attach_to_no_such_pid_is_one_sentence_and_no_dashboard(tmux):
    if os.path.exists("/proc/999999"):
        pytest.skip("PID 999999 exists here")
    tmux.start(memtui("attach", "999999"))
    assert tmux.status() == 2
    lines = [ln for ln in tmux.screen().splitlines() if ln.strip()]
    assert lines == ["No process with PID 999999."]


def test_attach_with_stdout_redirected_is_one_sentence_not_a_screen(tmux, start_target,
                                                                    tmp_path):
    target = start_target()
    tmux.start(memtui("attach", str(target.pid)), redirect="> %s" % (tmp_path / "out"))
    assert tmux.status() == 2
    lines = [ln for ln in tmux.screen().splitlines() if ln.strip()]
    assert lines == ["The dashboard needs a terminal (stdin, stdout and stderr); in a pipe, use "
                     "`memtui attach %d --no-tui`." % target.pid]


def test_sigterm_closes_the_dashboard_with_128_plus_15(tmux, start_target):
    target = start_target()
    tmux.start(memtui("attach", str(target.pid)))
    tmux.wait_screen(live_numbers(target.pid), "live numbers for the target")
    os.kill(tmux.memtui_pid(), signal.SIGTERM)
    assert tmux.status() == 128 + signal.SIGTERM
    assert target.alive()


def test_terminal_hangup_ends_memtui_run_and_its_command(tmux):
    """Closing the terminal (here: the tmux server) sends SIGHUP (and SIGCONT): memtui passes
    it on to CMD and ends even if the dashboard cannot close on the dead terminal."""
    import psutil

    tmux.start(memtui("run", "--interval", "0.25", "--", sys.executable, "-c",
                      "import time; time.sleep(120)"))
    tmux.wait_screen(lambda s: re.search(r"rss \d", s) and "live" in s,
                     "the dashboard on the child")
    runner = psutil.Process(tmux.memtui_pid())
    (child,) = runner.children()
    tmux.close()
    gone, alive = psutil.wait_procs([runner, child], timeout=20)
    assert not alive, alive


def test_picker_lists_the_agent_and_quits(tmux, start_target):
    target = start_target('env="staging"')
    tmux.start(memtui())
    screen = tmux.wait_screen(lambda s: re.search(r"\b%d\s+staging\b" % target.pid, s),
                              "the target in the picker")
    assert "Attach" in screen
    tmux.keys("q")
    assert tmux.status() == 0


def test_run_shows_the_child_then_replays_its_output_and_exits_with_its_code(tmux,
                                                                             tmp_path):
    go = tmp_path / "go"
    script = ("import os, sys, time\n"  # the words are split so the command line lacks them
              "print('to' + ' stdout', flush=True)\n"
              "print('to' + ' stderr', file=sys.stderr, flush=True)\n"
              "while not os.path.exists(%r): time.sleep(0.05)\n"
              "print('last' + ' words')\n"
              "sys.exit(3)\n" % str(go))
    tmux.start(memtui("run", "--interval", "0.25", "--", sys.executable, "-c", script))
    screen = tmux.wait_screen(lambda s: re.search(r"rss \d", s) and "live" in s,
                              "the dashboard on the child")
    assert "to stdout" not in screen and "to stderr" not in screen  # not over the dashboard
    go.write_text("")
    tmux.wait_screen(lambda s: "exited with code 3." in s, "the banner after the child exited")
    tmux.keys("q")
    assert tmux.status() == 3
    lines = [ln for ln in tmux.screen().splitlines() if ln.strip()]
    # Held while the dashboard ran, written out after it (stdout and stderr are two pipes:
    # their relative order is only as read).
    assert sorted(lines) == ["last words", "to stderr", "to stdout"] \
        and lines[-1] == "last words"


def test_run_quit_while_the_child_runs_interrupts_it(tmux):
    tmux.start(memtui("run", "--", sys.executable, "-c",
                      "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
                      "    print('interrupted')\n    raise SystemExit(5)\n"))
    tmux.wait_screen(lambda s: re.search(r"rss \d", s) and "live" in s,
                     "the dashboard on the child")
    tmux.keys("q")
    assert tmux.status() == 5
    screen = tmux.screen()
    assert "memtui: sent SIGINT to PID" in screen and "interrupted" in screen


def test_demo_opens_the_dashboard_on_the_demo_service(tmux):
    import psutil

    tmux.start(memtui("demo"))
    # The header cuts the command to fit, so the service is recognised by the PID it shows.
    screen = tmux.wait_screen(lambda s: re.search(r"PID \d+", s) and re.search(r"rss \d", s),
                              "the demo in the dashboard", timeout=30)
    service = int(re.search(r"PID (\d+)", screen).group(1))
    assert "memtui.demo.service" in psutil.Process(service).cmdline()
    tmux.keys("q")
    assert tmux.status() == 0
    wait_for(lambda: not psutil.pid_exists(service)
             or psutil.Process(service).status() == psutil.STATUS_ZOMBIE,
             message="the demo service stopped")
