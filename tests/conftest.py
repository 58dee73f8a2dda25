"""Fixtures that start real target processes with a real agent in a private runtime directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ROOT / "tests" / "targets"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
             message: str = "condition") -> object:
    """Poll *predicate* until it returns something truthy; fail the test after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, message))
        time.sleep(interval)


class FakeClock:
    """An injectable monotonic clock that only moves when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_in_fork(child: Callable[[], object], timeout: float = 20.0) -> object:
    """Run *child()* in a real forked child and return what it returned (as JSON, through a pipe).
    A child that says nothing within *timeout* is killed and the test fails."""
    import json
    import select
    import signal

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            try:
                out = {"ok": child()}
            except BaseException as exc:
                out = {"error": "%s: %s" % (type(exc).__name__, exc)}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], timeout)
        data = os.read(r, 65536) if ready else b""
    finally:
        os.close(r)
        if not data:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert data, "the forked child reported nothing within %.0fs" % timeout
    out = json.loads(data)
    assert "error" not in out, out["error"]
    return out["ok"]


class Target:
    """A running tests/targets/service.py (or another script) driven over stdin/stdout."""

    def __init__(self, proc: subprocess.Popen, ready: str) -> None:
        self.proc = proc
        parts = ready.split()
        self.pid = proc.pid
        self.socket: Optional[str] = (parts[2] if ready.startswith("READY") and len(parts) > 2
                                      and parts[2] != "-" else None)

    def send(self, command: str, timeout: float = 20.0) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.readline(timeout)

    def readline(self, timeout: float = 20.0) -> str:
        import select

        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("target %d said nothing within %.0fs" % (self.pid, timeout))
        return self.proc.stdout.readline().strip()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass


@pytest.fixture
def runtime_dir():
    """A short private directory (AF_UNIX paths are limited to 107 bytes) used as MEMTUI_RUNTIME_DIR."""
    base = tempfile.mkdtemp(prefix="mt-", dir="/tmp")
    path = os.path.join(base, "rt")
    yield path
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def agent_env(runtime_dir):
    env = dict(os.environ)
    env["MEMTUI_RUNTIME_DIR"] = runtime_dir
    env["PYTHONPATH"] = str(ROOT)
    for key in [k for k in env if k.startswith("MEMTUI__")] + [
            "MEMTUI_DISABLE", "MEMTUI_AGENT_OPTIONS", "MEMTUI_ENV", "MEMTUI_PROFILES"]:
        env.pop(key, None)  # a developer's own settings must not leak into the tests
    return env


@pytest.fixture
def start_target(agent_env):
    """start_target(*args, env=None, script="service.py", umask=None) -> Target, READY already read."""
    started: List[Target] = []

    def start(*args: str, env: Optional[Dict[str, str]] = None, script: str = "service.py",
              umask: Optional[int] = None, expect: str = "READY") -> Target:
        full_env = dict(agent_env)
        if env:
            full_env.update(env)
        preexec = (lambda: os.umask(umask)) if umask is not None else None
        proc = subprocess.Popen(
            [sys.executable, str(TARGETS / script), *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
            preexec_fn=preexec)
        t = Target(proc, "")
        started.append(t)
        line = t.readline(timeout=20)
        if not line.startswith(expect):
            t.stop()
            raise AssertionError("target did not start: %r / %s" % (line, proc.stderr.read()))
        t2 = Target(proc, line)
        started[-1] = t2
        if t2.socket:
            wait_for(lambda: os.path.exists(t2.socket), message="agent socket")
        return t2

    yield start
    for t in started:
        t.stop()


def memtui_cmd(*args: str, env: Optional[Dict[str, str]] = None, timeout: float = 60,
               input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run the real `memtui` entry point installed in this environment."""
    exe = shutil.which("memtui", path=os.path.dirname(sys.executable)) or "memtui"
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          input=input)


@pytest.fixture
def cli(agent_env):
    def run(*args: str, env: Optional[Dict[str, str]] = None, **kw) -> subprocess.CompletedProcess:
        full = dict(agent_env)
        if env:
            full.update(env)
        return memtui_cmd(*args, env=full, **kw)

    return run


# other users: fixtures that act as uid 65534 (need root) ---------------------------------------
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as uid 65534")


def as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def nobody_python() -> str:
    """An interpreter uid 65534 may execute (this venv's may live under a private /root)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        try:
            probe = subprocess.run([exe, "-c", "import memtui"], env={"PYTHONPATH": str(ROOT)},
                                   preexec_fn=as_nobody, capture_output=True, timeout=30)
        except OSError:
            continue
        if probe.returncode == 0:
            return exe
    pytest.skip("no Python interpreter that uid 65534 may run")


@pytest.fixture
def nobody_target():
    """A tests/targets/service.py running as uid 65534 with its agent serving in its own dir."""
    base = tempfile.mkdtemp(prefix="mt-", dir="/tmp")
    os.chown(base, NOBODY, NOBODY)
    env = {"PYTHONPATH": str(ROOT), "MEMTUI_RUNTIME_DIR": os.path.join(base, "rt"),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.Popen([nobody_python(), str(TARGETS / "service.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=as_nobody)
    target = Target(proc, "")
    try:
        line = target.readline(timeout=30)
        assert line.startswith("READY"), (line, proc.stderr.read())
        target = Target(proc, line)
        assert target.socket and target.socket.startswith(base)
        wait_for(lambda: os.path.exists(target.socket), message="agent socket")
        yield target
    finally:
        target.stop()
        shutil.rmtree(base, ignore_errors=True)
