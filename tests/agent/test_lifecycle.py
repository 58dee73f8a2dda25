"""The agent's life in a real host process: dormant install, disable switch, exit, kill, fork,
socket placement and modes."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys

import pytest

from conftest import wait_for
from memtui.client import AgentClient
from memtui.protocol import AgentGone, NoAgent, NoSuchProcess


def _threads(pid: int) -> int:
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line")


def _mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_install_is_dormant_until_the_signal(start_target, runtime_dir):
    t = start_target("mode=install", expect="INSTALLED True")
    sock = os.path.join(runtime_dir, "%d.sock" % t.pid)
    assert _threads(t.pid) == 1, "a dormant agent must not start threads"
    assert not os.path.exists(sock)
    os.kill(t.pid, signal.SIGUSR2)
    wait_for(lambda: os.path.exists(sock), message="socket after SIGUSR2")
    with AgentClient(pid=t.pid) as c:
        assert c.info["pid"] == t.pid
        events = c.events()["events"]
    assert any("activated by signal" in e["message"] for e in events)
    os.kill(t.pid, signal.SIGUSR2)  # a second signal is a no-op, not a second agent or a death
    assert t.send("ping") == "pong"


def test_install_refuses_to_steal_a_handled_signal(agent_env):
    code = ("import signal, warnings, memtui\n"
            "signal.signal(signal.SIGUSR2, lambda *a: None)\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    ok = memtui.install()\n"
            "print(ok, w[0].message if w else '')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=agent_env, check=True).stdout
    assert out.startswith("False") and "already has a handler" in out


@pytest.mark.parametrize("mode", ["start", "install"])
def test_memtui_disable_makes_entry_points_no_ops(start_target, runtime_dir, mode):
    expect = "READY" if mode == "start" else "INSTALLED False"
    t = start_target("mode=%s" % mode, env={"MEMTUI_DISABLE": "1"}, expect=expect)
    assert t.socket is None
    assert _threads(t.pid) == 1
    assert not os.path.exists(runtime_dir) or not os.listdir(runtime_dir)
    if mode == "install":
        os.kill(t.pid, signal.SIGUSR2)  # default action would kill it if install() had done anything
        # SIG_DFL for SIGUSR2 terminates: a disabled install must leave the app's handlers alone
        wait_for(lambda: not t.alive(), message="default SIGUSR2 action")


def test_host_exit_with_client_connected_removes_socket(start_target):
    t = start_target()
    c = AgentClient(pid=t.pid).connect()
    assert c.stats()["pid"] == t.pid
    t.proc.stdin.write("exit 0\n")
    t.proc.stdin.flush()
    assert t.proc.wait(timeout=10) == 0
    assert not os.path.exists(t.socket)
    with pytest.raises(AgentGone):
        c.stats()


def test_sigkill_mid_session_gives_error_not_hang(start_target):
    t = start_target()
    c = AgentClient(pid=t.pid, timeout=5).connect()
    c.stats()
    t.proc.kill()
    t.proc.wait(timeout=10)
    with pytest.raises(AgentGone, match="exited|closed"):
        c.stats()
    assert os.path.exists(t.socket)  # SIGKILL leaves a stale socket behind...
    with pytest.raises(NoSuchProcess, match="No process with PID %d" % t.pid):
        AgentClient(pid=t.pid).connect()  # ...which is never mistaken for a live agent
    with pytest.raises(NoAgent, match="stale socket"):
        AgentClient(path=t.socket).connect()


def test_fork_child_gets_its_own_socket_parent_keeps_working(start_target, runtime_dir):
    t = start_target("interval=0.1")
    lines = [t.send("fork 30"), t.readline()]
    forked = next(l for l in lines if l.startswith("forked")).split()
    child = next(l for l in lines if l.startswith("child")).split()
    cpid, csock = int(child[1]), child[2]
    assert int(forked[1]) == cpid
    try:
        assert csock == os.path.join(runtime_dir, "%d.sock" % cpid) and csock != t.socket
        assert _mode(csock) == 0o600
        with AgentClient(pid=cpid) as c:
            assert c.stats()["pid"] == cpid and c.server_pid == cpid
        with AgentClient(pid=t.pid) as p:
            assert p.stats()["pid"] == t.pid and p.server_pid == t.pid
    finally:
        os.kill(cpid, signal.SIGKILL)
    with AgentClient(pid=t.pid) as p:  # the child's death does not disturb the parent's socket
        p.stats()
    assert os.path.exists(t.socket)


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_modes_do_not_depend_on_umask(start_target, runtime_dir, umask):
    t = start_target(umask=umask)
    assert _mode(runtime_dir) == 0o700
    assert _mode(t.socket) == 0o600
    assert stat.S_ISSOCK(os.lstat(t.socket).st_mode)


def test_loose_runtime_dir_is_refused_but_host_keeps_running(start_target, runtime_dir):
    os.makedirs(runtime_dir, mode=0o755)
    os.chmod(runtime_dir, 0o755)
    t = start_target()
    assert t.socket is None and os.listdir(runtime_dir) == []
    assert t.send("ping") == "pong"


def _stale_socket(path: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # leaves the file behind, like a SIGKILLed agent


def test_stale_socket_at_our_path_is_replaced(start_target, runtime_dir):
    os.makedirs(runtime_dir, mode=0o700)
    path = os.path.join(runtime_dir, "app.sock")
    _stale_socket(path)
    t = start_target("socket_path=%s" % path)
    with AgentClient(path=path) as c:
        assert c.info["pid"] == t.pid


def test_symlink_planted_at_socket_path_is_never_followed(start_target, runtime_dir, tmp_path):
    os.makedirs(runtime_dir, mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = os.path.join(runtime_dir, "app.sock")
    os.symlink(str(victim), path)
    t = start_target("socket_path=%s" % path)
    assert stat.S_ISSOCK(os.lstat(path).st_mode)  # replaced the link, did not write through it
    assert victim.read_text() == "precious"
    # plant it again while the agent runs: at exit the agent must not unlink what is not its own
    os.unlink(path)
    os.symlink(str(victim), path)
    t.proc.stdin.write("exit 0\n")
    t.proc.stdin.flush()
    t.proc.wait(timeout=10)
    assert os.path.islink(path) and victim.read_text() == "precious"


def test_agent_started_by_bootstrap_env(agent_env, runtime_dir):
    """The `memtui run` path: a plain script with no memtui import gets an agent from the shim."""
    from memtui.agent.bootstrap import launch_environ

    env = launch_environ({k: v for k, v in agent_env.items() if k != "PYTHONPATH"},
                         '{"interval": 0.2}')
    code = ("import os, sys, time\n"
            "p = os.path.join(os.environ['MEMTUI_RUNTIME_DIR'], '%d.sock' % os.getpid())\n"
            "for _ in range(200):\n"
            "    if os.path.exists(p): break\n"
            "    time.sleep(0.01)\n"
            "import memtui\n"
            "print(os.path.exists(p), memtui.current().options.interval, "
            "memtui.__file__.startswith(os.environ['MEMTUI_PACKAGE_PARENT']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd="/", timeout=30)
    assert out.stdout.split() == ["True", "0.2", "True"], out.stderr


@pytest.mark.parametrize("command", ["forkexec 5", "preexec"])
def test_children_that_exec_at_once_leave_no_socket(start_target, runtime_dir, command):
    t = start_target()
    assert t.send(command) == "ok"
    import time

    time.sleep(0.5)  # past the forked child's start delay: a child still alive would have bound
    assert os.listdir(runtime_dir) == ["%d.sock" % t.pid]


@pytest.mark.parametrize("how", ["selfref", "bigint", "badstr"])
def test_one_bad_component_spoils_only_its_own_entry(start_target, how):
    t = start_target("interval=0.1", "stats_max_age=0")
    t.send("register 1")
    t.send("hostile " + how)
    with AgentClient(pid=t.pid, timeout=5) as c:
        stats = wait_for(lambda: (lambda s: s if "hostile-" + how in s["components"] else None)(
            c.stats()), message="hostile component listed")
        assert stats["components"]["c0"]["stats"]["calls"] >= 1
        assert stats["process"]["rss"] > 0
        entry = stats["components"]["hostile-" + how]
        assert entry.get("stats") or entry.get("error")
    assert t.send("ping") == "pong"


def test_blocking_component_stalls_no_client(start_target):
    t = start_target("interval=0.1")
    t.send("register 1")
    with AgentClient(pid=t.pid, timeout=3) as c:
        wait_for(lambda: "c0" in c.stats()["components"], message="c0 listed")
        t.send("hostile block")  # from now on every sample blocks 5 s inside stats()
        for _ in range(10):  # a 3 s client timeout would trip if a request ran stats()
            s = c.stats(fresh=True)
            assert s["process"]["rss"] > 0 and "c0" in s["components"]
        assert c.request("hello")["pid"] == t.pid
