"""The external view (memtui.attach.external): psutil figures of real processes — ourselves, a
Python child, a non-Python one, a dead PID, another user's view of us — its client's history,
and `memtui stats PID --external`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from memtui.agent.core import HISTORY_FIELDS as AGENT_HISTORY_FIELDS
from memtui.attach import external
from memtui.attach.external import (CLASSES, HISTORY_FIELDS, ExternalClient, figures,
                                    missing_text, python_version)
from memtui.client import process_name
from memtui.protocol import NoAgent, NoSuchProcess

from conftest import as_nobody, needs_root, run_in_fork, wait_for
from tests.test_cli import one_sentence

PY = "%d.%d" % sys.version_info[:2]
MiB = 1024 * 1024


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    wait_for(lambda: _sleeping(proc.pid, "sleep"), message="sleep to be asleep")
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def python_child():
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; x = bytearray(8_000_000);"
                             " print('READY', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    yield proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


def _sleeping(pid: int, name: str) -> bool:
    """*pid* runs *name* and sleeps: past exec and the dynamic loader, so its memory is still."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            state = fh.read().rpartition(")")[2].split()[0]
        return os.path.basename(os.readlink("/proc/%d/exe" % pid)) == name and state == "S"
    except (OSError, IndexError):
        return False


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the PID names no process now (until reused, which takes a while)
    return proc.pid


# figures ---------------------------------------------------------------------------------------
def test_figures_of_ourselves_have_every_part():
    fig = figures(os.getpid())
    assert fig["pid"] == os.getpid() and fig["python"] == PY
    assert fig["unavailable"] == {}
    p = fig["process"]
    assert p["rss"] > MiB and p["vms"] >= p["rss"] and 0 < p["uss"] <= p["rss"]
    assert 0 < p["pss"] <= p["rss"] and p["swap"] >= 0 and p["rss_peak"] >= p["rss"]
    assert p["threads"] >= 1 and p["fds"] >= 3
    assert set(fig["mappings"]) == set(CLASSES)
    assert fig["mappings"]["files"]["count"] > 0 and fig["mappings"]["stack"]["count"] >= 1
    assert abs(fig["time"] - time.time()) < 5 and fig["create_time"] <= fig["time"]
    assert fig["username"] and fig["command"]
    json.dumps(fig, allow_nan=False)  # what `--json` prints


def test_figures_of_a_python_child_and_its_parent(python_child):
    fig = figures(python_child.pid)
    assert fig["python"] == PY == python_version(python_child.pid)
    # the command line is cut at 120 characters, so only its start is certain (the checkout's
    # path is part of it: CI's longer path once cut the script in the middle)
    assert fig["command"] == process_name(python_child.pid)
    assert fig["command"].startswith((sys.executable + " -c import sys, time")[:120])
    assert fig["process"]["rss"] > 8 * MiB  # the bytearray it holds
    assert fig["process"]["children"] == 0 and fig["children"] == []
    ours = figures(os.getpid())
    assert ours["process"]["children"] >= 1
    assert python_child.pid in [c["pid"] for c in ours["children"]]
    assert ours["process"]["children_rss"] >= fig["process"]["rss"] * 0.9


def test_figures_of_a_process_that_is_not_python(sleeper):
    fig = figures(sleeper.pid)
    assert fig["python"] is None and python_version(sleeper.pid) is None
    assert fig["name"] == "sleep" and fig["command"] == "sleep 60"
    assert fig["process"]["threads"] == 1 and fig["unavailable"] == {}
    assert fig["mappings"]["heap"]["count"] in (0, 1)


def test_a_dead_pid_is_one_sentence():
    pid = dead_pid()
    for bad in (pid, 0, -1, 2 ** 31):
        with pytest.raises(NoSuchProcess, match=r"^No process with PID %d\.$" % bad):
            figures(bad)
    with pytest.raises(NoSuchProcess, match=r"^No process with PID %d\.$" % pid):
        ExternalClient(pid).connect()


def test_a_zombie_counts_as_gone():
    proc = subprocess.Popen(["true"])
    wait_for(lambda: open("/proc/%d/stat" % proc.pid).read().rpartition(")")[2].split()[0]
             == "Z", message="a zombie")
    try:
        with pytest.raises(NoSuchProcess, match=r"^No process with PID %d\.$" % proc.pid):
            figures(proc.pid)
    finally:
        proc.wait()


def test_mapping_classes_add_up_to_the_process(sleeper):
    fig = figures(sleeper.pid)  # a sleeping process: nothing moves between the two reads
    maps = fig["mappings"]
    total = {k: sum(m[k] for m in maps.values()) for k in ("count", "size", "rss", "private")}
    with open("/proc/%d/maps" % sleeper.pid) as fh:
        assert total["count"] == len(fh.readlines())
    p = fig["process"]
    assert abs(total["rss"] - p["rss"]) <= max(256 * 1024, p["rss"] * 0.05), (total, p)
    # statm's VmSize leaves out [vsyscall]; the mappings list it
    assert 0 <= total["size"] - p["vms"] <= 64 * 1024, (total, p)
    assert abs(total["private"] - p["uss"]) <= max(256 * 1024, p["uss"] * 0.05), (total, p)


def test_mapping_classes_of_a_grown_heap_and_anonymous_memory(python_child):
    maps = figures(python_child.pid)["mappings"]
    # 8 MB in one bytearray: malloc serves it with its own anonymous mapping
    assert maps["anon"]["rss"] >= 7 * MiB
    assert maps["heap"]["count"] == 1 and maps["files"]["rss"] > 0


@pytest.mark.parametrize("path, cls", [
    ("[heap]", "heap"), ("", "anon"), ("[anon]", "anon"), ("[anon:glibc malloc]", "anon"),
    ("[anon_shmem:x]", "anon"), ("[stack]", "stack"), ("[stack:1234]", "stack"),
    ("/usr/lib/libc.so.6", "files"), ("/memfd:jit (deleted)", "files"), ("[vdso]", "other"),
    ("[vvar]", "other"), ("[vsyscall]", "other")])
def test_mapping_classes(path, cls):
    assert external._classify(path) == cls


@needs_root
def test_another_users_process_gives_what_it_can_and_says_why():
    """uid 65534 looking at us (root): statm, status and stat are public; smaps and fd are not."""
    import psutil  # noqa: F401,PLC0415 - loaded before the fork: uid 65534 cannot read this venv

    target = os.getpid()

    def child():
        as_nobody()
        return figures(target)

    fig = run_in_fork(child)
    p = fig["process"]
    assert p["rss"] > 0 and p["threads"] >= 1 and fig["create_time"]
    assert p["uss"] is None and p["pss"] is None and p["fds"] is None
    assert fig["mappings"] is None
    for field in ("uss", "pss", "swap", "fds", "mappings"):
        assert "belongs to uid 0" in fig["unavailable"][field], fig["unavailable"]
    # Python shows up neither in maps nor exe: unknown, and said why
    assert fig["python"] is None and "python" in fig["unavailable"]


def test_one_reading_of_a_small_process_is_cheap(sleeper):
    figures(sleeper.pid)
    costs = []
    for _ in range(5):
        started = time.perf_counter()
        fig = figures(sleeper.pid)
        costs.append(time.perf_counter() - started)
    assert min(costs) < 0.05, costs  # ~2 ms here; generous for a loaded CI machine
    assert set(fig["read_ms"]) == {"total", "children", "mappings", "python"}


# the banner ------------------------------------------------------------------------------------
def test_missing_text_says_what_is_missing_and_how_to_get_it():
    py = missing_text(123, "3.11")
    other = missing_text(123, None)
    for text in (py, other):
        assert text.startswith("PID 123 has no agent") and text.endswith(".")
        assert text.count(". ") == 0  # one sentence
        for word in ("heap", "GC", "tracemalloc", "caches", "pools", "workers", "snapshots"):
            assert word in text
        assert len(text) <= 156  # two lines of the 80-column dashboard's banner
    assert "`memtui attach 123 --inject`" in py
    assert "`memtui run`" in other and "memtui.install()" in other


def test_the_view_of_a_figure_with_every_part_refused_still_reads():
    from rich.console import Console

    from memtui.render import external_view

    fig = {"pid": 4321, "command": "secret-daemon --flag", "python": None, "time": 1000.0,
           "create_time": 400.0, "username": None, "children": [], "mappings": None,
           "process": dict.fromkeys(("rss", "rss_peak", "vms", "uss", "pss", "swap", "threads",
                                     "fds", "children", "children_rss")),
           "unavailable": {"uss": "permission denied: PID 4321 belongs to uid 7; run memtui "
                                  "as that user or as root",
                           "mappings": "permission denied: PID 4321 belongs to uid 7; run "
                                       "memtui as that user or as root"}}
    console = Console(width=200, record=True)
    console.print(external_view(fig))
    lines = [ln.rstrip() for ln in console.export_text().splitlines()]
    assert lines[0].startswith("PID 4321 has no agent")
    assert lines[1] == "PID 4321  secret-daemon --flag  no Python found  up 10m00s"
    assert "Mappings" not in console.export_text()  # the reason says why instead
    assert lines[-1] == ("uss, mappings: permission denied: PID 4321 belongs to uid 7; run "
                         "memtui as that user or as root.")
    assert any(ln.split() == ["USS", "-"] for ln in lines)


# ExternalClient --------------------------------------------------------------------------------
def test_client_is_agent_shaped_and_records_its_own_history(sleeper):
    client = ExternalClient(sleeper.pid).connect()
    assert client.connected and client.server_pid == sleeper.pid and client.path is None
    info = client.info
    assert info["mode"] == "external" and info["pid"] == sleeper.pid
    assert info["python"] == {} and info["env"] is None and info["agent_version"] is None
    assert info["started_at"] == pytest.approx(figures(sleeper.pid)["create_time"])
    assert client.history()["rows"] == []
    first = client.stats()
    assert first["mode"] == "external" and first["pid"] == sleeper.pid
    assert first["components"] == [] and first["alerts"] == []
    assert first["external"]["pid"] == sleeper.pid and first["uptime"] >= 0
    assert first["process"]["rss"] == first["external"]["process"]["rss"]
    for _ in range(2):
        client.stats()
    hist = client.history()
    assert tuple(hist["fields"]) == HISTORY_FIELDS == AGENT_HISTORY_FIELDS
    assert [r[0] for r in hist["rows"]] == [1, 2, 3] and hist["last_seq"] == 3
    row = dict(zip(hist["fields"], hist["rows"][0]))
    assert row["rss"] == first["process"]["rss"] and row["t"] == first["t"]
    assert row["traced"] is None and row["health"] is None
    assert [r[0] for r in client.history(since=1)["rows"]] == [2, 3]
    assert [r[0] for r in client.history(limit=1)["rows"]] == [3]
    assert client.events() == {"events": [], "last_seq": 0}
    clone = client.clone()
    assert isinstance(clone, ExternalClient) and not clone.connected and clone.pid == client.pid


def test_history_is_a_ring(sleeper):
    client = ExternalClient(sleeper.pid, capacity=3).connect()
    for _ in range(5):
        client.stats()
    assert [r[0] for r in client.history()["rows"]] == [3, 4, 5]


def test_agent_operations_say_there_is_no_agent(sleeper, python_child):
    client = ExternalClient(sleeper.pid).connect()
    calls = [lambda c: c.request("hello"), lambda c: c.gc_collect(), lambda c: c.trace_start(),
             lambda c: c.snapshot_take(), lambda c: c.snapshot_status(),
             lambda c: c.heap_types(), lambda c: c.config_apply({})]
    for call in calls:
        with pytest.raises(NoAgent) as caught:
            call(client)
        text = str(caught.value)
        assert text.startswith("PID %d has no memtui agent" % sleeper.pid) and text.endswith(".")
        assert "memtui run" in text
    with pytest.raises(NoAgent, match="`memtui attach %d --inject`" % python_child.pid):
        ExternalClient(python_child.pid).connect().gc_collect()


def test_client_of_a_process_that_exits(sleeper):
    client = ExternalClient(sleeper.pid).connect()
    client.stats()
    sleeper.kill()
    sleeper.wait()
    with pytest.raises(NoSuchProcess, match=r"^No process with PID %d\.$" % sleeper.pid):
        client.stats()
    assert not client.connected
    with pytest.raises(NoSuchProcess):
        client.connect()


def test_slow_parts_are_read_again_only_when_due(sleeper, monkeypatch):
    client = ExternalClient(sleeper.pid).connect()
    monkeypatch.setattr(external, "SLOW_SHARE", 1e-9)  # a read's cost puts it off for ages
    first = client.stats()["external"]
    assert {"mappings", "children", "python"} <= set(first["read_ms"])
    again = client.stats()["external"]
    assert set(again["read_ms"]) == {"total"}  # nothing slow read...
    assert again["mappings"] == first["mappings"]  # ...yet every part is there
    assert again["process"]["children"] == first["process"]["children"] == 0
    fresh = client.stats(fresh=True)["external"]
    assert "mappings" in fresh["read_ms"]
    monkeypatch.setattr(external, "SLOW_SHARE", 1e9)  # due at once
    client.stats(fresh=True)
    assert "mappings" in client.stats()["external"]["read_ms"]


# the CLI ---------------------------------------------------------------------------------------


def test_cli_external_view_of_a_process_that_is_not_python(cli, sleeper):
    out = cli("stats", str(sleeper.pid), "--external", env={"COLUMNS": "100"})
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # the banner wraps
    assert text.startswith("PID %d has no agent, so no heap" % sleeper.pid)
    assert "for Python, use `memtui run`" in text
    assert "PID %d sleep 60 no Python found" % sleeper.pid in text
    for word in ("RSS", "USS", "PSS", "swap", "threads", "fds", "children", "Mappings", "heap",
                 "anonymous", "stacks", "files", "other", "total"):
        assert word in text, word
    doc = json.loads(cli("stats", str(sleeper.pid), "--external", "--json").stdout)
    assert doc["pid"] == sleeper.pid and doc["python"] is None
    assert set(doc["mappings"]) == set(CLASSES) and doc["process"]["threads"] == 1


def test_cli_external_view_of_a_parent_lists_its_children(cli, python_child):
    out = cli("stats", str(os.getpid()), "--external", env={"COLUMNS": "120"})
    assert out.returncode == 0, out.stderr
    assert "`memtui attach %d --inject` starts one" % os.getpid() in " ".join(out.stdout.split())
    assert "Children (" in out.stdout and str(python_child.pid) in out.stdout


def test_cli_external_follow_until_interrupted(agent_env, sleeper):
    exe = os.path.join(os.path.dirname(sys.executable), "memtui")
    proc = subprocess.Popen([exe, "stats", str(sleeper.pid), "--external", "--json", "--follow",
                             "--interval", "0.1"], env=agent_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = [json.loads(proc.stdout.readline()) for _ in range(3)]
        assert [d["pid"] for d in lines] == [sleeper.pid] * 3
        assert lines[-1]["time"] > lines[0]["time"]
    finally:
        proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert "Traceback" not in proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()


def test_cli_external_dead_pid_and_wrong_options(cli):
    pid = dead_pid()
    assert one_sentence(cli("stats", str(pid), "--external")) == "No process with PID %d." % pid
    assert one_sentence(cli("stats", str(pid), "--external", "--json")) == \
        "No process with PID %d." % pid
    line = one_sentence(cli("stats", str(os.getpid()), "--external", "--socket", "/tmp/x.sock"))
    assert "--socket" in line and "--external" in line


def test_without_an_agent_stats_names_the_external_view(cli, sleeper):
    line = one_sentence(cli("stats", str(sleeper.pid)))
    assert "has no memtui agent" in line
    assert "`memtui stats %d --external`" % sleeper.pid in line and line.count(". ") == 0
