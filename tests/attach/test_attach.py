"""`memtui attach`: every way in, against real processes, through the real entry point.

Injection runs against every CPython 3.9–3.13 pyenv has here (a version that is absent is
skipped): a target asleep in a C call, one in a tight pure-Python loop, and one with several
threads. The targets run without memtui on their path: the agent goes in by file path."""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from memtui import attach as attach_mod
from memtui import paths
from memtui.attach import inject, procinfo
from tests.attach.conftest import INJECTABLE, pyenv_python
from tests.conftest import NOBODY, ROOT, as_nobody, needs_root, nobody_python, wait_for

def _stats(cli, pid: int) -> dict:
    res = cli("stats", str(pid), "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# -- injection on every CPython here ------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sleep", "loop", "threads"])
@pytest.mark.parametrize("minor", INJECTABLE)
def test_inject_into_every_cpython(minor, mode, launch, cli, runtime_dir):
    python = pyenv_python(minor)
    if python is None:
        pytest.skip("no CPython %s on this machine" % minor)
    target = launch(mode, python=python)
    before = target.ticks()
    res = cli("attach", str(target.pid), "--inject", "--no-tui", timeout=60)
    assert res.returncode == 0, res.stderr
    assert "agent started by injection" in res.stdout
    assert ("thread route" if mode != "loop" else "pending route") in res.stdout
    stats = _stats(cli, target.pid)
    assert stats["process"]["rss"] > 0
    hello = cli("ps", "--json")
    row = [a for a in json.loads(hello.stdout)["agents"] if a["pid"] == target.pid]
    assert row and row[0]["python"].startswith(minor + "."), row
    # the target's own work goes on, and nothing was printed to its stderr
    wait_for(lambda: target.ticks() >= before + 3, timeout=10, message="ticks after injection")
    assert target.alive()
    # injecting again is a no-op: the agent is found listening, and a forced second
    # injection reports the running agent
    again = cli("attach", str(target.pid), "--inject", "--no-tui")
    assert again.returncode == 0 and "already listening" in again.stdout
    from memtui.attach import inject

    status = inject.inject(target.pid, procinfo.python_info(target.pid))
    assert status["result"] == "already"
    threads = [t for t in os.listdir("/proc/%d/task" % target.pid)]
    assert target.alive() and len(threads) < 12
    err = target.stop()
    assert "Traceback" not in err and "Error" not in err, err


def test_inject_when_memtui_disabled_in_environment(launch, cli, runtime_dir):
    target = launch("sleep", env={"MEMTUI_DISABLE": "1"})
    res = cli("attach", str(target.pid), "--inject", "--no-tui")
    assert res.returncode == 2
    assert "MEMTUI_DISABLE=1" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not os.path.exists(paths.socket_path(target.pid, runtime_dir))
    assert target.alive()


def test_inject_when_memtui_disabled_after_start(launch, cli, runtime_dir):
    """Set in os.environ after start-up, so /proc shows nothing: the agent itself refuses."""
    target = launch("disable-late")
    res = cli("attach", str(target.pid), "--inject", "--no-tui")
    assert res.returncode == 2
    assert "did not start: MEMTUI_DISABLE is set" in res.stderr
    assert target.alive()
    before = target.ticks()
    wait_for(lambda: target.ticks() > before, message="ticks")


def test_python_too_old_is_refused(launch, cli):
    python = pyenv_python("3.8")
    if python is None:
        pytest.skip("no CPython 3.8 here to stand for a too-old target")
    target = launch("sleep", python=python)
    res = cli("attach", str(target.pid), "--inject", "--no-tui")
    assert res.returncode == 2
    assert "runs Python 3.8 and the agent needs 3.9 or newer" in res.stderr
    assert target.alive()
    # without --inject it is the external view, saying what it lacks
    ext = cli("attach", str(target.pid), "--no-tui")
    assert ext.returncode == 0 and "external view" in ext.stdout


# -- dormant agents -----------------------------------------------------------------------------
def test_dormant_agent_is_woken_by_its_signal(launch, cli):
    target = launch("install", with_memtui=True)
    res = cli("attach", str(target.pid), "--no-tui")
    assert res.returncode == 0, res.stderr
    assert "woke its dormant agent with SIGUSR2" in res.stdout
    assert _stats(cli, target.pid)["process"]["rss"] > 0


@pytest.mark.parametrize("mode", ["install-dfl", "install-ign", "catch"])
def test_process_not_handling_the_signal_is_never_signalled(mode, launch, cli):
    """A marker whose handler is gone (SIG_DFL would kill it), an ignored signal, and a process
    with its own SIGUSR2 handler but no marker (gunicorn re-execs on SIGUSR2): none is sent."""
    target = launch(mode, with_memtui=True)
    res = cli("attach", str(target.pid), "--no-tui")
    assert res.returncode == 0, res.stderr
    assert "external view" in res.stdout
    if mode != "catch":
        assert "no longer catches SIGUSR2" in res.stdout
    time.sleep(0.3)
    assert target.alive() and "SIGNALLED" not in target.lines


def test_stale_marker_from_a_reused_pid_is_ignored(launch, runtime_dir):
    target = launch("install", with_memtui=True)
    path = paths.dormant_path(target.pid, runtime_dir)
    wait_for(lambda: os.path.exists(path), message="marker")
    with open(path) as fh:
        marker = json.load(fh)
    assert marker["signal"] == signal.SIGUSR2
    os.environ["MEMTUI_RUNTIME_DIR"] = runtime_dir
    try:
        assert attach_mod.dormant_signal(target.pid) == (signal.SIGUSR2, None)
        marker["start_ticks"] -= 1  # as if an earlier process with this PID had left it
        with open(path, "w") as fh:
            json.dump(marker, fh)
        assert attach_mod.dormant_signal(target.pid) == (None, None)
    finally:
        del os.environ["MEMTUI_RUNTIME_DIR"]


# -- not Python, gone, someone else's -----------------------------------------------------------
def test_non_python_process_gets_the_external_view(cli):
    proc = subprocess.Popen(["sleep", "60"])
    try:
        res = cli("attach", str(proc.pid), "--no-tui")
        assert res.returncode == 0, res.stderr
        assert "not a Python process; showing the external view" in res.stdout
        assert "RSS" in res.stdout
        inj = cli("attach", str(proc.pid), "--inject", "--no-tui")
        assert inj.returncode == 2
        assert "not a Python process, and only CPython can be injected" in inj.stderr
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_dead_pid(cli):
    proc = subprocess.Popen(["true"])
    proc.wait()
    for extra in ((), ("--inject",)):
        res = cli("attach", str(proc.pid), "--no-tui", *extra)
        assert res.returncode == 2
        assert res.stderr.strip() == "No process with PID %d." % proc.pid


def test_pid_1(cli):
    res = cli("attach", "1", "--inject", "--no-tui")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith(("Cannot inject into PID 1", "PID 1 belongs to uid"))


@needs_root
def test_pid_1_as_another_user():
    """As uid 65534 (through the API: this venv's interpreter may sit in a private /root)."""
    code = ("from memtui import attach\ntry:\n    attach.attach(1, inject=True)\n"
            "except Exception as exc:\n    print(exc)\n")
    res = subprocess.run([nobody_python(), "-c", code], capture_output=True, text=True,
                         preexec_fn=as_nobody, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "MEMTUI_RUNTIME_DIR": "/tmp/mt-nobody"})
    assert res.stdout.strip().startswith("PID 1 belongs to uid 0; run memtui as that user"), (
        res.stdout, res.stderr)


@needs_root
def test_another_users_process(cli):
    proc = subprocess.Popen(["sleep", "60"], preexec_fn=as_nobody)
    try:
        res = cli("attach", str(proc.pid), "--inject", "--no-tui")
        assert res.returncode == 2
        assert "belongs to uid %d" % NOBODY in res.stderr
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_already_traced_process_names_the_no_ptrace_ways(launch, cli):
    from memtui.attach import ptrace

    target = launch("sleep")
    with ptrace.Tracee(target.pid, target.pid):
        pass  # seize and let go: the kernel's own bookkeeping works
    holder = ptrace.Tracee(target.pid, target.pid).__enter__()
    try:
        res = cli("attach", str(target.pid), "--inject", "--no-tui")
    finally:
        holder.detach()
    assert res.returncode == 2
    assert "already being traced by PID %d" % os.getpid() in res.stderr
    assert "memtui.install()" in res.stderr and "memtui run" in res.stderr
    before = target.ticks()
    wait_for(lambda: target.ticks() > before, message="ticks after the tracer let go")


def test_ptrace_scope_messages():
    """yama and capabilities cannot be changed on this machine, so the branches are fed the
    values directly (the only fake in this file)."""
    assert "ptrace_scope = 3" in procinfo.ptrace_problem(os.getpid(), scope=3, has_cap=True)
    assert "CAP_SYS_PTRACE" in procinfo.ptrace_problem(os.getpid(), scope=2, has_cap=False)
    assert procinfo.ptrace_problem(os.getpid(), scope=2, has_cap=True) is None
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert procinfo.ptrace_problem(child.pid, scope=1, has_cap=False) is None  # our child
        assert "ptrace_scope = 1" in procinfo.ptrace_problem(1, scope=1, has_cap=False)
        assert procinfo.ptrace_problem(child.pid, scope=0, has_cap=False) is None
    finally:
        child.kill()
        child.wait()


def test_not_a_terminal_without_no_tui_injects_nothing(launch, cli, runtime_dir):
    target = launch("sleep")
    res = cli("attach", str(target.pid), "--inject")
    assert res.returncode == 2 and "needs a terminal" in res.stderr
    assert not os.path.exists(paths.socket_path(target.pid, runtime_dir))


def test_ps_marks_dormant_agents_and_sends_nothing(launch, cli):
    target = launch("install", with_memtui=True)
    res = cli("ps", "--json")
    row = [o for o in json.loads(res.stdout)["others"] if o["pid"] == target.pid]
    assert row and row[0]["dormant"] == "SIGUSR2"
    text = cli("ps")
    assert "dormant (SIGUSR2)" in text.stdout
    assert not _stats_or_none(cli, target.pid)  # still asleep: ps woke nothing


def test_ps_removes_what_exited_processes_and_abandoned_injections_left(launch, cli,
                                                                         runtime_dir):
    gone, live = launch("install", with_memtui=True), launch("install", with_memtui=True)
    marker = {p.pid: paths.dormant_path(p.pid, runtime_dir) for p in (gone, live)}
    wait_for(lambda: all(map(os.path.exists, marker.values())), message="both markers")
    gone.proc.kill()  # SIGKILL: no atexit, so its marker stays
    gone.proc.wait()

    def plant(name: str) -> str:
        path = os.path.join(runtime_dir, name)
        with open(path, "w") as fh:
            fh.write("{}")
        return path

    dead_files = [plant("%d.inject.lock" % gone.pid), plant("%d.inject-0a1b2c.json" % gone.pid),
                  plant("%d.inject-0a1b2c.py" % gone.pid)]
    abandoned = plant("%d.inject-3d4e5f.json" % live.pid)  # written after its attacher gave up
    unrelated = [plant("notes.txt"), plant("%d.inject-xyz.json" % live.pid)]
    os.environ["MEMTUI_RUNTIME_DIR"] = runtime_dir
    try:
        with inject.target_lock(live.pid):  # an attacher is injecting right now
            busy = plant("%d.inject-6a7b8c.json" % live.pid)
            doc = json.loads(cli("ps", "--json").stdout)
        assert os.path.exists(busy) and os.path.exists(abandoned)
        removed = {c["path"]: c for c in doc["cleaned"]}
        assert set(removed) == {marker[gone.pid], *dead_files}, removed
        assert removed[marker[gone.pid]]["kind"] == "dormant"
        assert all(removed[p]["kind"] == "inject" for p in dead_files)
        # the attacher is done (its lock is free): what it left for its process goes too
        out = cli("ps")
        assert out.returncode == 0, out.stderr
        assert "Removed 2 leftover file(s)" in out.stdout and str(live.pid) in out.stdout
        assert not os.path.exists(busy) and not os.path.exists(abandoned)
        # what is still in use, or not memtui's, stays; the live marker still wakes its agent
        assert all(map(os.path.exists, unrelated + [marker[live.pid],
                                                    paths.dormant_path(live.pid, runtime_dir)]))
        assert os.path.exists(os.path.join(runtime_dir, "%d.inject.lock" % live.pid))
        assert attach_mod.dormant_signal(live.pid) == (signal.SIGUSR2, None)
        # a marker an earlier process with this PID left (another start time) goes as well
        with open(marker[live.pid]) as fh:
            body = json.load(fh)
        body["start_ticks"] -= 1
        with open(marker[live.pid], "w") as fh:
            json.dump(body, fh)
        doc = json.loads(cli("ps", "--json").stdout)
        assert [c["reason"] for c in doc["cleaned"]] == [
            "dormant marker of an earlier process with this PID"]
        assert not os.path.exists(marker[live.pid])
    finally:
        del os.environ["MEMTUI_RUNTIME_DIR"]


def test_the_injection_lock_survives_ps_removing_its_file(runtime_dir):
    """An attacher that opened the lock file just before `memtui ps` removed it (its process
    had exited) must not lock a file nobody else can see: it locks the one at the path."""
    import fcntl
    import threading

    os.environ["MEMTUI_RUNTIME_DIR"] = runtime_dir
    try:
        gone = subprocess.Popen(["true"])
        gone.wait()
        lock_path = os.path.join(runtime_dir, "%d.inject.lock" % gone.pid)
        inside, leave = threading.Event(), threading.Event()

        def second_attacher():
            with inject.target_lock(gone.pid):
                inside.set()
                leave.wait(10)

        with inject.target_lock(gone.pid):
            waiter = threading.Thread(target=second_attacher, daemon=True)
            waiter.start()  # it opens the file and waits for our lock
            time.sleep(0.3)
            assert not inside.is_set()
            os.unlink(lock_path)  # what ps does, holding the lock, for an exited PID
        assert inside.wait(5)
        fd = os.open(lock_path, os.O_RDONLY)  # the file at the path is the one it holds
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
            leave.set()
            waiter.join(5)
    finally:
        del os.environ["MEMTUI_RUNTIME_DIR"]


def _stats_or_none(cli, pid: int):
    res = cli("stats", str(pid), "--json")
    return json.loads(res.stdout) if res.returncode == 0 else None


def test_marker_of_a_process_that_exec_ed_another_program_is_ignored(launch, cli):
    target = launch("install-exec", with_memtui=True)
    wait_for(lambda: target.ticks() >= 2, message="the shell's ticks")
    res = cli("attach", str(target.pid), "--no-tui")
    assert res.returncode == 0 and "external view" in res.stdout
    time.sleep(0.3)
    assert "GOT USR2" not in target.lines and target.alive()


def test_two_injections_at_once_start_one_agent(launch, cli):
    target = launch("sleep")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: cli("attach", str(target.pid), "--inject", "--no-tui"),
                             range(2)))
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    said = " ".join(r.stdout for r in runs)
    assert said.count("agent started by injection") == 1, said
    assert target.alive()


def test_a_stopped_process_is_refused_and_left_stopped(launch, cli):
    target = launch("sleep")
    os.kill(target.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: procinfo.status(target.pid)["State"].startswith("T"), message="T")
        res = cli("attach", str(target.pid), "--inject", "--no-tui")
        assert res.returncode == 2 and "it is stopped" in res.stderr, res.stderr
        assert procinfo.status(target.pid)["State"].startswith("T")
    finally:
        os.kill(target.pid, signal.SIGCONT)
    before = target.ticks()
    wait_for(lambda: target.ticks() > before, message="ticks after SIGCONT")


def test_an_unsafe_runtime_directory_is_one_sentence(launch, cli, tmp_path):
    target = launch("sleep")
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    res = cli("attach", str(target.pid), "--inject", "--no-tui",
              env={"MEMTUI_RUNTIME_DIR": str(loose)})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("Cannot inject into PID %d: refusing the runtime directory"
                                 % target.pid), res.stderr


def test_an_interpreter_that_is_not_running_is_refused(tmp_path, cli):
    """A program that links libpython but never initialized it (or finalized it)."""
    python = pyenv_python("3.11")
    gcc = shutil.which("gcc")
    if not python or not gcc:
        pytest.skip("needs gcc and pyenv's CPython 3.11")
    prefix = Path(python).parent.parent
    src = tmp_path / "emb.c"
    src.write_text('#include <Python.h>\n#include <stdio.h>\n#include <unistd.h>\n'
                   'int main(int c, char **v) { if (c > 1) { Py_Initialize(); Py_FinalizeEx(); }\n'
                   '  printf("READY %d\\n", getpid()); fflush(stdout);\n'
                   '  for (;;) { sleep(1); printf("tick\\n"); fflush(stdout); } }\n')
    exe = tmp_path / "emb"
    build = subprocess.run([gcc, str(src), "-o", str(exe), "-I%s/include/python3.11" % prefix,
                            "-L%s/lib" % prefix, "-lpython3.11",
                            "-Wl,-rpath,%s/lib" % prefix], capture_output=True, text=True)
    if build.returncode:
        pytest.skip("cannot build an embedding program here: %s" % build.stderr[-200:])
    for args in ([], ["finalized"]):
        proc = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().startswith("READY")
            res = cli("attach", str(proc.pid), "--inject", "--no-tui")
            assert res.returncode == 2
            assert "its Python interpreter is not running" in res.stderr, res.stderr
            assert proc.stdout.readline() == "tick\n" and proc.poll() is None
        finally:
            proc.kill()
            proc.wait()
