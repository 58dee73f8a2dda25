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

from conftest import ROOT, memtui_cmd, wait_for

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


def popen_cli(agent_env, *args: str, **kw) -> subprocess.Popen:
    exe = os.path.join(os.path.dirname(sys.executable), "memtui")
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
    assert {"users", "search", "db", "workers", "request_log"} <= set(last)
    assert {last["users"]["kind"], last["db"]["kind"], last["workers"]["kind"]} == \
        {"cache", "pool", "workers"}
    assert last["workers"]["stats"]["completed"] > 0
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
