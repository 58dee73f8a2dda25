"""The real `memtui` entry point against real target processes and agents."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import List

import pytest

from conftest import ROOT, TARGETS, memtui_cmd, wait_for

MiB = 1024 * 1024


def gone(pid: int) -> bool:
    """True once *pid* has exited (a zombie waiting for a reaper counts as exited)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def one_sentence(proc: subprocess.CompletedProcess) -> str:
    """Assert exit 2 with exactly one non-empty stderr line and no traceback; return the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def interruptible() -> None:
    """In the child: Ctrl-C back to its default. A test run started in the background by a
    shell without job control inherits SIGINT ignored, and Python then keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_cli(agent_env, *args: str, **kw) -> subprocess.Popen:
    exe = os.path.join(os.path.dirname(sys.executable), "memtui")
    kw.setdefault("preexec_fn", interruptible)
    return subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=agent_env, **kw)


def read_lines(proc: subprocess.Popen, n: int, timeout: float = 10.0) -> List[str]:
    import select

    assert proc.stdout is not None
    lines: List[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < n:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError("got %d of %d lines in %.0fs" % (len(lines), n, timeout))
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    return lines


# stats ---------------------------------------------------------------------------------------
def test_stats_json_moves_when_target_allocates(start_target, cli):
    target = start_target()
    before = json.loads(cli("stats", str(target.pid), "--json").stdout)
    assert before["pid"] == target.pid
    target.send("alloc 50")
    after = json.loads(cli("stats", str(target.pid), "--json").stdout)
    assert after["process"]["rss"] - before["process"]["rss"] > 40 * MiB


def test_stats_table_has_labels(start_target, cli):
    target = start_target()
    target.send("register 2")
    out = cli("stats", str(target.pid), env={"COLUMNS": "120"})
    assert out.returncode == 0, out.stderr
    for label in ("PID %d" % target.pid, "RSS", "USS", "PSS", "VMS", "swap", "threads", "fds",
                  "limit", "Heap", "gen 2", "collections", "tracemalloc off", "Components",
                  "c0", "c1", "calls"):
        assert label in out.stdout, label


def test_stats_follow_json_prints_a_line_per_poll(start_target, agent_env):
    target = start_target()
    proc = popen_cli(agent_env, "stats", str(target.pid), "--follow", "--json",
                     "--interval", "0.2")
    try:
        lines = read_lines(proc, 4)
        assert [json.loads(ln)["pid"] for ln in lines] == [target.pid] * 4
        assert json.loads(lines[-1])["uptime"] > json.loads(lines[0])["uptime"]
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C ends --follow normally
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()


def test_stats_follow_agent_killed_is_one_sentence(start_target, agent_env):
    target = start_target()
    proc = popen_cli(agent_env, "stats", str(target.pid), "--follow", "--json",
                     "--interval", "0.1")
    read_lines(proc, 1)
    target.proc.kill()
    out, err = proc.communicate(timeout=15)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(target.pid) in lines[0]


# errors --------------------------------------------------------------------------------------
def test_nonexistent_pid_is_one_sentence(cli):
    pid = 999999
    if os.path.exists("/proc/%d" % pid):
        pytest.skip("PID 999999 exists here")
    for args in (["stats", str(pid)], ["gc", str(pid)], ["trace", str(pid), "top"]):
        assert one_sentence(cli(*args)) == "No process with PID 999999."


def test_pid_without_agent_is_one_sentence(cli):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        line = one_sentence(cli("stats", str(sleeper.pid), "--json"))
        assert "has no memtui agent" in line
    finally:
        sleeper.kill()
        sleeper.wait()


# ps ------------------------------------------------------------------------------------------
def test_ps_lists_the_target(start_target, cli):
    target = start_target("env=\"staging\"")
    out = cli("ps", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {"agents", "others", "cleaned"}
    (row,) = [a for a in doc["agents"] if a["pid"] == target.pid]
    assert row["env"] == "staging" and row["rss"] > MiB and row["python"].count(".") == 2
    assert target.pid not in [o["pid"] for o in doc["others"]]
    table = cli("ps", env={"COLUMNS": "160"})
    assert str(target.pid) in table.stdout and "staging" in table.stdout
    # the JSON keeps the whole command line; the table names the program, not its path (which
    # would fill a narrow column). Wide, so that other tests' agents cannot squeeze the column.
    assert row["command"].startswith(sys.executable)
    (line,) = [ln for ln in cli("ps", env={"COLUMNS": "400"}).stdout.splitlines()
               if ln.split()[:1] == [str(target.pid)]]
    assert line.split()[1:3] == [os.path.basename(sys.executable),
                                 str(TARGETS / "service.py")], line


def test_ps_lists_python_without_agent(cli, agent_env):
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=agent_env)
    try:
        doc = json.loads(cli("ps", "--json").stdout)
        assert idle.pid in [o["pid"] for o in doc["others"]]
    finally:
        idle.kill()
        idle.wait()


def test_ps_cleans_stale_socket_of_dead_pid(start_target, cli):
    target = start_target()
    assert target.socket and os.path.exists(target.socket)
    target.proc.kill()
    target.proc.wait()
    assert os.path.exists(target.socket)  # SIGKILL: no atexit, the socket stays
    doc = json.loads(cli("ps", "--json").stdout)
    assert [c["pid"] for c in doc["cleaned"]] == [target.pid]
    assert not os.path.exists(target.socket)
    assert target.pid not in [a["pid"] for a in doc["agents"]]


def test_ps_cleans_socket_nobody_listens_on(cli, runtime_dir):
    import socket

    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
    path = os.path.join(runtime_dir, "%d.sock" % os.getpid())  # a live PID, but no listener
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()
    os.chmod(path, 0o600)
    out = cli("ps")
    assert out.returncode == 0, out.stderr
    assert "Removed 1 stale socket" in out.stdout
    assert not os.path.exists(path)


# gc / trace ----------------------------------------------------------------------------------
def test_gc(start_target, cli):
    target = start_target()
    doc = json.loads(cli("gc", str(target.pid), "--generation", "1", "--json").stdout)
    assert doc["generation"] == 1 and doc["collected"] >= 0 and doc["rss_before"] > 0
    text = cli("gc", str(target.pid))
    assert text.returncode == 0 and "unreachable objects" in text.stdout


def test_trace_start_top_stop(start_target, cli):
    target = start_target()
    pid = str(target.pid)
    started = json.loads(cli("trace", pid, "start", "--frames", "2", "--json").stdout)
    assert started["tracing"] is True and started["nframes"] == 2
    target.send("objs 20000")
    top = json.loads(cli("trace", pid, "top", "--limit", "5", "--json").stdout)
    assert 0 < len(top["entries"]) <= 5
    assert any(e["file"].endswith("service.py") and e["line"] for e in top["entries"])
    table = cli("trace", pid, "top", env={"COLUMNS": "200"})
    assert "service.py:" in table.stdout
    stats = json.loads(cli("stats", pid, "--json").stdout)
    assert stats["heap"]["tracemalloc"]["current"] > 0
    stopped = cli("trace", pid, "stop")
    assert "tracemalloc stopped in PID %s." % pid in stopped.stdout
    line = one_sentence(cli("trace", pid, "top"))
    assert "not tracing" in line


# run -----------------------------------------------------------------------------------------
def test_run_passes_exit_code(cli):
    out = cli("run", "--no-tui", "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert out.returncode == 3, out.stderr


def test_run_starts_the_agent_in_cmd(cli, tmp_path):
    script = tmp_path / "check.py"
    script.write_text(
        "import os, memtui\n"
        "from memtui.client import AgentClient\n"
        "agent = memtui.current()\n"
        "assert agent is not None and os.path.exists(agent.socket_path), agent\n"
        "with AgentClient(os.getpid()) as c:\n"
        "    assert c.info['env'] == 'ci' and c.info['tracing'] is True\n"
        "    print('agent ok', c.stats()['memory']['limit'])\n")
    out = cli("run", "--no-tui", "--env", "ci", "--trace", "--memory-limit", "64MiB", "--",
              sys.executable, str(script))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "agent ok %d" % (64 * MiB)


def test_run_forwards_sigterm(agent_env, tmp_path):
    proc = popen_cli(agent_env, "run", "--no-tui", "--", sys.executable, "-c",
                     "import os, time; print(os.getpid(), flush=True); time.sleep(30)")
    child = int(read_lines(proc, 1)[0])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 128 + signal.SIGTERM
    wait_for(lambda: gone(child), message="child gone")


def test_run_bad_option_is_usage_error(cli):
    line = one_sentence(cli("run", "--memory-limit", "lots", "--", sys.executable, "-c", "1"))
    assert "memory_limit" in line


def test_run_live_view_shows_the_child(cli):
    out = cli("run", "--interval", "0.2", "--", sys.executable, "-c",
              "import time; time.sleep(1.5)", env={"COLUMNS": "120"})
    assert out.returncode == 0, out.stderr
    assert "RSS" in out.stdout and "Heap" in out.stdout  # the final frame, stdout is not a tty


# demo / entry points -------------------------------------------------------------------------
def test_demo_headless_json(cli):
    out = cli("demo", "--no-tui", "--duration", "3", "--interval", "1", "--json", timeout=30)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert len(lines) >= 3
    last = lines[-1]["components"]
    assert {"users", "search", "db", "requests", "audit", "request_log"} <= set(last)
    assert {last["users"]["kind"], last["db"]["kind"], last["requests"]["kind"],
            last["audit"]["kind"]} == {"cache", "pool", "workers", "batch"}
    assert last["requests"]["stats"]["completed"] > 0
    assert last["request_log"]["stats"]["bytes"] > 0
    assert gone(lines[-1]["pid"])  # the service was stopped


def test_python_dash_m_memtui_help(agent_env):
    out = subprocess.run([sys.executable, "-m", "memtui", "--help"], capture_output=True,
                         text=True, env=agent_env, cwd=str(ROOT), timeout=30)
    assert out.returncode == 0, out.stderr
    for command in ("ps", "stats", "gc", "trace", "run", "demo"):
        assert command in out.stdout


def test_unknown_option_is_usage_error():
    out = memtui_cmd("stats", "--bogus")
    assert out.returncode == 2 and "Traceback" not in out.stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 0), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_demo_stops_its_service_when_interrupted(agent_env, sig, code):
    proc = popen_cli(agent_env, "demo", "--json", "--interval", "0.3")
    service = json.loads(read_lines(proc, 1)[0])["pid"]
    assert not gone(service)
    proc.send_signal(sig)
    assert proc.wait(15) == code
    wait_for(lambda: gone(service), message="demo service gone")


def test_demo_service_exits_with_its_parent(agent_env):
    proc = popen_cli(agent_env, "demo", "--json", "--interval", "0.3")
    service = json.loads(read_lines(proc, 1)[0])["pid"]
    proc.kill()  # no cleanup possible in memtui: the service notices on its own
    proc.wait()
    wait_for(lambda: gone(service), timeout=10,
             message="orphaned demo service gone")


# reviewer's defects ----------------------------------------------------------------------------
def memtui_exe() -> str:
    return os.path.join(os.path.dirname(sys.executable), "memtui")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a target as uid 65534")
def test_pid_of_another_user_is_one_sentence_naming_its_uid(nobody_target, cli):
    line = one_sentence(cli("stats", str(nobody_target.pid)))
    assert line.startswith("PID %d belongs to uid 65534; run memtui as that user (e.g. sudo -u "
                           % nobody_target.pid), line


def test_socket_option_reaches_an_agent_outside_every_runtime_dir(start_target, cli,
                                                                  runtime_dir):
    """An agent started with socket_path= is invisible to PID lookup; --socket finds it."""
    from pathlib import Path

    private = Path(os.path.dirname(runtime_dir)) / "priv"  # short: AF_UNIX paths are limited
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    path = str(private / "svc.sock")
    target = start_target('socket_path="%s"' % path)
    assert target.socket == path
    assert "has no memtui agent" in one_sentence(cli("stats", str(target.pid)))
    pid = str(target.pid)
    doc = json.loads(cli("stats", pid, "--socket", path, "--json").stdout)
    assert doc["pid"] == target.pid
    gc_out = cli("gc", pid, "--socket", path, "--json")
    assert gc_out.returncode == 0 and json.loads(gc_out.stdout)["generation"] == 2, gc_out.stderr
    started = cli("trace", pid, "start", "--socket", path)
    assert started.returncode == 0 and "tracemalloc started" in started.stdout, started.stderr
    # The server's identity is still checked: this socket is not served by our own PID.
    line = one_sentence(cli("stats", str(os.getpid()), "--socket", path))
    assert "served by PID %d, not PID %d" % (target.pid, os.getpid()) in line
    missing = one_sentence(cli("gc", pid, "--socket", str(private / "nope.sock")))
    assert missing == "No agent socket at %s." % (private / "nope.sock")


def test_no_agent_sentence_is_one_line_when_argv_has_newlines(cli, agent_env):
    idle = subprocess.Popen([sys.executable, "-c", "import time\nprint('x')\ntime.sleep(30)\n"],
                            env=agent_env, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: "sleep" in open("/proc/%d/cmdline" % idle.pid).read(),
                 message="the child's argv")
        out = cli("stats", str(idle.pid))
        line = one_sentence(out)
        assert out.stderr == line + "\n"
        assert "import time print('x') time.sleep(30)" in line
    finally:
        idle.kill()
        idle.wait()


def test_follow_json_piped_into_head_exits_0_quietly(start_target, agent_env):
    """`memtui stats PID --follow --json | head -1`: the reader goes away after one line."""
    target = start_target()
    proc = popen_cli(agent_env, "stats", str(target.pid), "--follow", "--json",
                     "--interval", "0.05")
    assert json.loads(read_lines(proc, 1)[0])["pid"] == target.pid
    proc.stdout.close()
    assert proc.wait(15) == 0
    assert proc.stderr.read().strip() == ""


@pytest.mark.parametrize("args", [["stats", "{pid}"], ["stats", "{pid}", "--json"],
                                  ["gc", "{pid}", "--json"], ["trace", "{pid}", "stop"],
                                  ["ps", "--json"]])
def test_output_into_a_closed_pipe_exits_0_quietly(start_target, agent_env, args):
    target = start_target()
    r, w = os.pipe()
    os.close(r)  # nobody will ever read: the first write fails with EPIPE
    try:
        out = subprocess.run([memtui_exe(), *[a.format(pid=target.pid) for a in args]],
                             stdout=w, stderr=subprocess.PIPE, text=True, env=agent_env,
                             timeout=60)
    finally:
        os.close(w)
    assert (out.returncode, out.stderr) == (0, "")


def test_live_view_into_a_closed_pipe_exits_0_quietly(start_target, agent_env):
    from memtui.client import AgentClient

    target = start_target()
    r, w = os.pipe()
    os.close(r)
    proc = subprocess.Popen([memtui_exe(), "stats", str(target.pid), "--follow",
                             "--interval", "0.05"], stdout=w, stderr=subprocess.PIPE, text=True,
                            env=agent_env, preexec_fn=interruptible)
    os.close(w)
    with AgentClient(pid=target.pid) as client:
        wait_for(lambda: client.stats(fresh=True)["agent"]["clients"] >= 2,
                 message="memtui connected")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: Live prints its final frame into the closed pipe
    assert proc.wait(15) == 0
    assert proc.stderr.read() == ""


def test_pid_must_be_positive_and_a_huge_pid_is_no_such_process(cli):
    for args in (["stats", "0"], ["gc", "0"], ["trace", "0", "top"], ["stats", "--", "-3"]):
        out = cli(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr)
        assert "Invalid value for 'pid'" in out.stderr, (args, out.stderr)
    for args in (["stats", "99999999999"], ["gc", "99999999999"], ["trace", "2147483648", "top"]):
        assert one_sentence(cli(*args)) == "No process with PID %s." % args[1]


class FakeAgent:
    """A scripted stand-in agent served by this test process over a real socket at
    RUNTIME_DIR/<our pid>.sock: answers `hello`, then *error* (code, message) to every other
    op; or, with *refuse*, sends one id-less permission_denied frame and hangs up."""

    def __init__(self, runtime_dir: str, error=None, refuse=None) -> None:
        import socket
        import threading

        os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(runtime_dir, "%d.sock" % os.getpid())
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self.sock.listen(8)
        self.error, self.refuse = error, refuse
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from memtui import protocol

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    if self.refuse:
                        conn.sendall(protocol.encode_frame({"id": None, "ok": False, "error": {
                            "code": "permission_denied", "message": self.refuse}}))
                        continue
                    while True:
                        req = protocol.read_frame(conn, protocol.MAX_REQUEST)
                        if req["op"] == "hello":
                            reply = {"id": req["id"], "ok": True,
                                     "result": {"pid": os.getpid(), "agent_version": "fake"}}
                        else:
                            code, message = self.error
                            reply = {"id": req["id"], "ok": False,
                                     "error": {"code": code, "message": message}}
                        conn.sendall(protocol.encode_frame(reply))
                except OSError:
                    continue

    def close(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        os.unlink(self.path)
        self.thread.join(5)


@pytest.mark.parametrize("args, error, expected", [
    (["gc"], ("rate_limited", "gc.collect is rate-limited; retry in 1.3s."),
     "The agent answered: gc.collect is rate-limited; retry in 1.3s."),
    (["trace", "start"], ("rate_limited", "trace.start is rate-limited; retry in 0.4s"),
     "The agent answered: trace.start is rate-limited; retry in 0.4s."),
])
def test_agent_errors_keep_op_names_as_they_are(cli, runtime_dir, args, error, expected):
    fake = FakeAgent(runtime_dir, error=error)
    try:
        argv = [args[0], str(os.getpid()), *args[1:]]
        assert one_sentence(cli(*argv)) == expected
    finally:
        fake.close()


def test_agent_refusal_is_one_sentence_with_one_full_stop(cli, runtime_dir):
    fake = FakeAgent(runtime_dir, refuse="this agent serves uid 1000 and root only, not uid 0.")
    try:
        assert one_sentence(cli("stats", str(os.getpid()))) == \
            "The agent refused us: this agent serves uid 1000 and root only, not uid 0."
    finally:
        fake.close()


def test_real_rate_limit_reads_as_one_sentence(start_target, cli):
    target = start_target("mutations_burst=1", "mutations_per_s=0.01")
    assert cli("gc", str(target.pid)).returncode == 0
    line = one_sentence(cli("gc", str(target.pid)))
    assert line.startswith("The agent answered: gc.collect is rate-limited; retry in "), line
    assert line.endswith("s.") and not line.endswith(".."), line


def refused_runtime_dir(tmp_path) -> str:
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o755)
    return str(loose)


def test_no_agent_sentence_names_a_refused_runtime_dir(start_target, cli, tmp_path):
    loose = refused_runtime_dir(tmp_path)
    target = start_target(env={"MEMTUI_RUNTIME_DIR": loose})
    assert target.socket is None  # the agent refused the directory too
    line = one_sentence(cli("stats", str(target.pid)))
    assert line.startswith("PID %d (" % target.pid), line
    assert line.endswith("has no reachable memtui agent: its runtime directory is refused (%s has "
                         "mode 755, which lets other users in; it must be 0700)." % loose), line


def test_run_view_names_a_refused_runtime_dir(cli, tmp_path):
    loose = refused_runtime_dir(tmp_path)
    out = cli("run", "--interval", "0.2", "--", sys.executable, "-c",
              "import time; time.sleep(1.5)", env={"MEMTUI_RUNTIME_DIR": loose, "COLUMNS": "400"})
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "has no reachable memtui agent: its runtime directory is refused (%s has mode 755" \
        % loose in text, out.stdout
