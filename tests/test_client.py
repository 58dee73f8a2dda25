"""AgentClient against real agents: what it returns, and what it refuses to talk to."""
from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys

import pytest

from conftest import NOBODY, as_nobody, needs_root, wait_for
from memtui.client import AgentClient, check_socket_file, find_socket, process_name
from memtui.protocol import NoAgent, NoSuchProcess, PermissionRefused, RemoteError

MiB = 1 << 20


def test_stats_move_when_the_target_allocates(start_target):
    t = start_target("interval=0.1")
    with AgentClient(pid=t.pid) as c:
        before = c.stats(fresh=True)
        assert before["pid"] == t.pid and before["process"]["source"] == "proc"
        t.send("alloc 64")
        after = c.stats(fresh=True)
        assert after["process"]["rss"] - before["process"]["rss"] > 48 * MiB
        t.send("free")
        freed = c.stats(fresh=True)
        assert after["process"]["rss"] - freed["process"]["rss"] > 48 * MiB


def test_history_and_events_sequence(start_target):
    t = start_target("interval=0.05")
    with AgentClient(pid=t.pid) as c:
        h = wait_for(lambda: (lambda h: h if len(h["rows"]) >= 5 else None)(c.history()))
        seqs = [r[0] for r in h["rows"]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        newer = c.history(since=h["last_seq"])
        assert all(r[0] > h["last_seq"] for r in newer["rows"])
        first = c.events()
        assert first["events"][0]["kind"] == "agent"
        c.gc_collect()
        later = c.events(since=first["last_seq"])
        assert [e["data"]["action"] for e in later["events"]] == ["gc.collect"]


def test_heap_top_names_the_allocating_line(start_target):
    t = start_target("trace=true")
    with AgentClient(pid=t.pid) as c:
        t.send("objs 200000")
        top = c.heap_top(limit=5)
    first = top["entries"][0]
    assert first["file"].endswith("tests/targets/service.py")
    with open(first["file"]) as fh:
        assert "{\"i\": i}" in fh.readlines()[first["line"] - 1]
    assert first["size"] > 10 * MiB and first["count"] >= 200000


def test_trace_start_stop_and_heap_top_without_tracing(start_target):
    t = start_target()
    with AgentClient(pid=t.pid) as c:
        with pytest.raises(RemoteError) as info:
            c.heap_top()
        assert info.value.code == "unavailable" and "memtui trace %d start" % t.pid in str(info.value)
        assert c.trace_start(nframes=3) == {"tracing": True, "nframes": 3, "already": False}
        assert c.stats(fresh=True)["heap"]["tracemalloc"]["frames"] == 3
        assert c.trace_stop()["was_tracing"] is True
        assert c.stats(fresh=True)["heap"]["tracemalloc"] == {"tracing": False}


def test_missing_pid_and_pid_without_agent():
    with pytest.raises(NoSuchProcess, match=r"^No process with PID 999999999\.$"):
        AgentClient(pid=999999999).connect()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(NoAgent, match="PID %d .*has no memtui agent" % sleeper.pid):
            AgentClient(pid=sleeper.pid).connect()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_refuses_socket_with_group_or_other_bits(start_target):
    t = start_target()
    os.chmod(t.socket, 0o660)
    with pytest.raises(PermissionRefused, match="mode 660"):
        AgentClient(pid=t.pid).connect()


def test_refuses_socket_owned_by_another_user(start_target):
    t = start_target()
    os.chown(t.socket, 65534, 65534)
    with pytest.raises(PermissionRefused, match="owned by uid 65534"):
        AgentClient(pid=t.pid).connect()


def test_refuses_symlink_even_to_a_real_agent(start_target, runtime_dir):
    t = start_target()
    link = os.path.join(runtime_dir, "link.sock")
    os.symlink(t.socket, link)
    with pytest.raises(PermissionRefused, match="symlink"):
        AgentClient(path=link).connect()


def test_refuses_socket_served_by_another_pid(start_target, runtime_dir):
    a = start_target()
    b = start_target()
    os.unlink(a.socket)
    os.rename(b.socket, a.socket)  # B's agent now answers at A's path
    with pytest.raises(PermissionRefused, match="served by PID %d, not PID %d" % (b.pid, a.pid)):
        AgentClient(pid=a.pid).connect()


def test_slow_op_does_not_stall_other_clients(start_target):
    """heap.top runs on the agent's worker thread: stats from others keep flowing meanwhile."""
    import threading

    t = start_target("trace=true")
    t.send("objs 400000")
    done = {}

    def slow():
        with AgentClient(pid=t.pid, timeout=60) as c:
            done["top"] = c.heap_top(limit=3)

    worker = threading.Thread(target=slow)
    worker.start()
    with AgentClient(pid=t.pid) as c:
        wait_for(lambda: c.stats()["agent"]["clients"] >= 2, message="slow client connected")
        for _ in range(5):
            c.stats()
        still_running = worker.is_alive()
    worker.join(60)
    assert done["top"]["entries"], "heap.top answered"
    assert still_running, "five stats requests completed while heap.top was still running"


def test_pipelined_requests_answered_in_order_across_slow_ops(start_target):
    import socket as so

    from memtui import protocol

    t = start_target("trace=true")
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.settimeout(30)
    s.connect(t.socket)
    s.sendall(b"".join(protocol.encode_frame(protocol.request(i, op)) for i, op in
                       enumerate(["heap.top", "stats", "gc.collect", "hello"], 1)))
    ids = [protocol.read_frame(s, protocol.MAX_RESPONSE)["id"] for _ in range(4)]
    s.close()
    assert ids == [1, 2, 3, 4]


def test_concurrent_stats_share_one_sample_unless_fresh(start_target):
    t = start_target("stats_max_age=10")
    with AgentClient(pid=t.pid) as a, AgentClient(pid=t.pid) as b:
        first = a.stats()
        assert b.stats()["t"] == first["t"], "a second poller within the window reuses the sample"
        t.send("alloc 32")
        assert a.stats()["process"]["rss"] == first["process"]["rss"]
        fresh = b.stats(fresh=True)
        assert fresh["t"] > first["t"] and fresh["process"]["rss"] > first["process"]["rss"]
        assert a.stats()["t"] == fresh["t"], "a fresh sample refreshes the shared one"


# other users ---------------------------------------------------------------------------------
@needs_root
def test_pid_of_another_user_is_refused_naming_its_uid(nobody_target):
    user = pwd.getpwuid(NOBODY).pw_name
    expected = (r"^PID %d belongs to uid 65534; run memtui as that user \(e\.g\. sudo -u %s "
                r"memtui …\)\.$" % (nobody_target.pid, re.escape(user)))
    with pytest.raises(PermissionRefused, match=expected):
        AgentClient(pid=nobody_target.pid).connect()
    with pytest.raises(PermissionRefused, match=expected):  # a path does not bypass the check
        AgentClient(pid=nobody_target.pid, path=nobody_target.socket).connect()


@needs_root
def test_socket_behind_a_directory_we_cannot_search_is_refused_not_missing(start_target,
                                                                          runtime_dir):
    """uid 65534 cannot search root's 0700 runtime dir: that is a permission problem, not
    "no agent"."""
    t = start_target()
    calls = {"check_socket_file": lambda: check_socket_file(t.socket),
             "connect": lambda: AgentClient(path=t.socket).connect(),
             "find_socket": lambda: find_socket(t.pid)}
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(r)
            as_nobody()
            os.environ["MEMTUI_RUNTIME_DIR"] = runtime_dir
            out = {}
            for name, call in calls.items():
                try:
                    out[name] = "returned %r" % (call(),)
                except Exception as exc:  # noqa: BLE001 - reported to the parent
                    out[name] = "%s: %s" % (type(exc).__name__, exc)
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        results = json.loads(fh.read() or b"{}")
    os.waitpid(child, 0)
    assert set(results) == set(calls), results
    for name, result in results.items():
        assert result.startswith("PermissionRefused: Permission denied"), (name, result)
        assert "belongs to another user" in result and "\n" not in result, (name, result)


def test_a_socket_older_than_its_process_gives_way_to_the_one_in_the_targets_own_dir(
        start_target, runtime_dir, tmp_path, monkeypatch):
    """An earlier process with the same PID was killed and left its socket in our runtime dir;
    the process now running that PID serves in the runtime dir its environment names."""
    import socket
    import time

    t = start_target()  # serves in runtime_dir, which its environment names
    ours = str(tmp_path / "ours")
    os.makedirs(ours, mode=0o700)
    monkeypatch.setenv("MEMTUI_RUNTIME_DIR", ours)
    stale = os.path.join(ours, "%d.sock" % t.pid)
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()
    os.chmod(stale, 0o600)
    # made now (after the target started): it might be the target's, so it is tried first
    assert find_socket(t.pid) == stale
    with pytest.raises(NoAgent, match="stale socket"):
        AgentClient(pid=t.pid).connect()
    # made an hour before the target started: not the target's
    made = time.time() - 3600
    os.utime(stale, (made, made))
    assert find_socket(t.pid) == t.socket
    with AgentClient(pid=t.pid) as c:
        assert c.path == t.socket and c.server_pid == t.pid


def test_huge_pid_is_no_such_process():
    for pid in (2 ** 31, 99999999999, 2 ** 80):
        with pytest.raises(NoSuchProcess, match=r"^No process with PID %d\.$" % pid):
            AgentClient(pid=pid).connect()


def test_process_name_is_one_line(agent_env):
    # newlines and a tab in argv, in a program that is valid Python and stays alive
    idle = subprocess.Popen([sys.executable, "-c", "import time\n\ntime.sleep(30)\t \n"],
                            env=agent_env)
    try:
        wait_for(lambda: "sleep" in process_name(idle.pid), message="the child's argv")
        assert process_name(idle.pid) == "%s -c import time time.sleep(30)" % sys.executable
    finally:
        idle.kill()
        idle.wait()


def test_config_get_and_apply_round_trip(start_target):
    t = start_target("interval=0.2")
    t.send('cache users {"max_entries": 50}')
    with AgentClient(pid=t.pid) as c:
        assert c.config_get()["components"]["users"]["settings"]["max_entries"] == 50
        # only what is given is sent: no options, no env -> nothing about them changes
        preview = c.config_apply({"caches": {"users": {"max_entries": 5}}}, dry_run=True)
        assert preview == {"dry_run": True, "env": "dev", "changed": {"users": {"max_entries": 5}},
                           "errors": {}, "options": {}, "tuner": {}}
        done = c.config_apply({"caches": {"users": {"max_entries": 5}}}, options={"interval": 1},
                              env="qa")
        assert done["options"] == {"env": ["dev", "qa"], "interval": [0.2, 1.0]}
        assert c.config_apply(options={"interval": 1})["changed"] == {}  # settings untouched
        got = c.config_get()
    assert got["env"] == "qa" and got["settings"] == {"caches": {"users": {"max_entries": 5}}}
