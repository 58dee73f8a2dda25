"""Heap snapshots end to end: the file (gzip JSON, version 1, 0600 in a 0700 directory), list and
retention, one at a time, progress seen from another connection, a full disk, a target killed
mid-write, tracemalloc sites; and load() refusing what is not a snapshot."""
from __future__ import annotations

import glob
import gzip
import json
import os
import signal
import stat
import subprocess
import threading
import tracemalloc
import zlib

import pytest
from conftest import wait_for

from memtui.agent import snapshots
from memtui.agent.events import SEVERITIES
from memtui.client import AgentClient, RemoteError

ERROR = "error" if "error" in SEVERITIES else "warning"


def _events(client, kind="snapshot"):
    return [e for e in client.events()["events"] if e["kind"] == kind]


def _finals(directory):
    return sorted(glob.glob(os.path.join(directory, "*.json.gz")))


def test_a_snapshot_is_private_gzip_json_of_version_1(start_target, runtime_dir):
    target = start_target()
    with AgentClient(pid=target.pid) as client:
        meta = client.snapshot_take()
        events = _events(client)
    directory = os.path.join(runtime_dir, "snapshots")
    assert meta["path"] == os.path.join(directory, meta["id"] + ".json.gz")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(meta["path"]).st_mode) == 0o600
    assert os.listdir(directory) == [meta["id"] + ".json.gz"]  # no temporary file left
    assert meta["bytes"] == os.path.getsize(meta["path"])
    with gzip.open(meta["path"], "rt") as fh:
        doc = json.load(fh)  # plain gzip + JSON: readable without memtui
    assert doc == snapshots.load(meta["path"])
    assert doc["format"] == "memtui-snapshot" and doc["version"] == 1
    assert doc["id"] == meta["id"] and doc["id"].startswith("%d-" % target.pid)
    assert doc["pid"] == target.pid and doc["reason"] == "manual" == meta["reason"]
    assert doc["process"]["rss"] > 0 and len(doc["gc"]["counts"]) == 3
    assert doc["tracemalloc"] is None  # not tracing
    assert doc["census"]["objects"] == meta["objects"] > 1000
    assert len(doc["containers"]) == 20
    assert all(len(c["repr"]) <= 80 for c in doc["containers"])
    assert all(len(v["preview"]) <= 60 for v in doc["duplicates"]["values"])
    event = events[-1]
    assert event["severity"] == "info" and event["data"]["id"] == meta["id"]
    assert {"path", "bytes", "elapsed_s"} <= set(event["data"])


def test_list_is_oldest_first_and_retention_keeps_the_last_n(start_target, tmp_path):
    out = tmp_path / "snaps"
    target = start_target('settings={"profiler": {"output_dir": "%s", "retention": 3}}' % out,
                          "mutations_burst=10")
    with AgentClient(pid=target.pid) as client:
        taken = [client.snapshot_take(reason=r)["id"]
                 for r in ("manual", "interval", "threshold", "manual", "manual")]
        listed = client.snapshot_list()
    assert listed["directory"] == str(out) and listed["retention"] == 3
    assert [m["id"] for m in listed["snapshots"]] == taken[-3:]
    assert [m["reason"] for m in listed["snapshots"]] == ["threshold", "manual", "manual"]
    assert [os.path.basename(p) for p in _finals(str(out))] == [i + ".json.gz" for i in taken[-3:]]
    # another process's snapshots in the same directory are not this one's to prune
    foreign = out / ("1-20200101T000000000000Z-1.json.gz")
    foreign.write_bytes(b"not even gzip")
    os.chmod(foreign, 0o600)
    with AgentClient(pid=target.pid) as client:
        client.snapshot_take()
        listed = client.snapshot_list()["snapshots"]
    assert foreign.exists()
    assert listed[0]["id"] == "1-20200101T000000000000Z-1" and "not a gzip file" in listed[0]["error"]
    assert len(listed) == 4


def test_a_directory_open_to_others_is_refused(start_target, tmp_path):
    out = tmp_path / "open"
    out.mkdir(mode=0o755)
    os.chmod(out, 0o755)
    target = start_target('settings={"profiler": {"output_dir": "%s"}}' % out)
    with AgentClient(pid=target.pid) as client:
        with pytest.raises(RemoteError) as err:
            client.snapshot_take()
        event = _events(client)[-1]
    assert err.value.code == "unavailable"
    assert "refusing the snapshot directory" in str(err.value) and "0700" in str(err.value)
    assert event["severity"] == ERROR and "refusing" in event["message"]
    assert os.listdir(out) == []


def test_a_second_take_while_one_runs_is_busy_and_status_shows_it(start_target):
    target = start_target()
    held = target.send("snaphold census").split()
    assert held[:2] == ["held", "census"]
    with AgentClient(pid=target.pid) as client:
        running = client.snapshot_status()
        with pytest.raises(RemoteError) as err:
            client.snapshot_take()
    assert running["running"] is True and running["phase"] == "census" and running["id"] == held[2]
    assert 0 < running["done"] <= running["total"]
    assert err.value.code == "busy"
    assert "already" in str(err.value) or "running" in str(err.value)
    out = target.send("snaprelease")
    assert out.startswith("ok ")
    assert json.loads(out[3:])["id"] == held[2]
    with AgentClient(pid=target.pid) as client:
        done = client.snapshot_status()
        assert done["running"] is False and done["last"]["id"] == held[2]
        assert client.snapshot_take()["id"] != held[2]  # free again


def test_status_follows_a_take_from_another_connection(start_target):
    target = start_target()
    assert target.send("bigheap 1500000") == "ok"
    result, phases = {}, []

    def take():
        with AgentClient(pid=target.pid) as client:
            result.update(client.snapshot_take(budget_s=120.0))

    worker = threading.Thread(target=take)
    with AgentClient(pid=target.pid) as watcher:
        worker.start()
        wait_for(lambda: watcher.snapshot_status()["running"], message="a running snapshot")
        while True:
            st = watcher.snapshot_status()
            if not st["running"]:
                break
            phases.append((st["phase"], st["done"], st["total"]))
        worker.join(120)
        final = watcher.snapshot_status()
    assert result["complete"] is True and final["last"]["id"] == result["id"]
    census = [p for p in phases if p[0] == "census"]
    assert census and census[-1][2] > 1_500_000 and all(d <= t for _, d, t in census)
    assert {p[0] for p in phases} <= {"starting", "census", "duplicates", "tracemalloc", "writing"}


def _mount_tmpfs(path):
    os.makedirs(path, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs",
                               str(path)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip("cannot mount a tmpfs: %s" % exc)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % (done.stderr.strip() or done.returncode))


@pytest.fixture
def tiny_disk(tmp_path):
    path = tmp_path / "tiny"
    _mount_tmpfs(path)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def test_a_full_disk_leaves_no_file_and_an_error_event(start_target, tiny_disk):
    filler = tiny_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # fill the 64 KiB file system to the last byte
        while os.write(fd, b"x" * 512):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    target = start_target('settings={"profiler": {"output_dir": "%s"}}' % tiny_disk)
    with AgentClient(pid=target.pid) as client:
        with pytest.raises(RemoteError) as err:
            client.snapshot_take()
        event = _events(client)[-1]
        assert client.stats()["pid"] == target.pid  # still serving
        status = client.snapshot_status()
    assert err.value.code == "unavailable" and "disk is full" in str(err.value)
    assert os.listdir(tiny_disk) == ["filler"]  # neither the final nor the temporary name
    assert event["severity"] == ERROR and event["data"]["error"] and "failed" in event["message"]
    assert status["running"] is False and "error" in status["last"]
    assert target.send("ping") == "pong"
    os.unlink(filler)
    with AgentClient(pid=target.pid) as client:
        meta = client.snapshot_take()  # room again: it works
    assert os.listdir(tiny_disk) == [meta["id"] + ".json.gz"]


def test_killed_while_writing_leaves_no_partial_snapshot(start_target, runtime_dir):
    target = start_target()
    assert target.send("bigheap 100000") == "ok"
    held = target.send("snaphold writing").split()
    assert held[:2] == ["held", "writing"]
    directory = os.path.join(runtime_dir, "snapshots")
    temp = os.path.join(directory, ".%s.tmp" % held[2])
    assert os.path.exists(temp)  # being written, under its temporary name only
    assert _finals(directory) == []
    os.kill(target.pid, signal.SIGKILL)
    target.proc.wait(10)
    assert _finals(directory) == []
    # the next snapshot taken in that directory clears what the dead process left
    assert snapshots.prune(directory, 20) == [temp]
    assert os.listdir(directory) == []


def test_killed_during_a_take_of_a_big_heap_leaves_no_snapshot(start_target, runtime_dir):
    target = start_target()
    assert target.send("bigheap 1500000") == "ok"

    def take():
        try:
            with AgentClient(pid=target.pid) as client:
                client.snapshot_take(budget_s=120.0)
        except Exception:
            pass  # the target dies under it

    threading.Thread(target=take, daemon=True).start()
    with AgentClient(pid=target.pid) as watcher:
        wait_for(lambda: watcher.snapshot_status()["running"], message="a running snapshot")
    os.kill(target.pid, signal.SIGKILL)
    target.proc.wait(10)
    assert _finals(os.path.join(runtime_dir, "snapshots")) == []


def test_tracing_records_the_allocating_line(start_target):
    target = start_target("trace=true")
    site = target.send("tracealloc 3000").split()[1]
    filename, line = site.rsplit(":", 1)
    with AgentClient(pid=target.pid) as client:
        meta = client.snapshot_take()
    doc = snapshots.load(meta["path"])
    tm = doc["tracemalloc"]
    assert meta["tracemalloc"] is True and tm["frames"] >= 1 and tm["traced"] > 3_000_000
    rows = [r for r in tm["by_line"] if r["file"] == filename and r["line"] == int(line)]
    assert rows and rows[0]["size"] >= 3000 * 1000 and rows[0]["count"] >= 3000
    assert tm["by_line"][0] == rows[0]  # the largest site
    assert not any("/memtui/" in r["file"] for r in tm["by_line"])
    assert tm["by_traceback"][0]["frames"][0] == {"file": filename, "line": int(line)}


def test_trace_true_starts_tracing_and_keeps_it_on(start_target):
    target = start_target()
    with AgentClient(pid=target.pid) as client:
        assert client.request("hello")["tracing"] is False
        meta = client.snapshot_take(trace=True)
        assert client.request("hello")["tracing"] is True
        actions = _events(client, "action")
    assert meta["tracemalloc"] is True
    assert snapshots.load(meta["path"])["tracemalloc"]["frames"] >= 1
    assert actions[-1]["data"]["action"] == "trace.start"


def test_bad_arguments_are_refused_before_any_work(start_target, runtime_dir):
    target = start_target()
    with AgentClient(pid=target.pid) as client:
        for args in ({"budget_s": "fast"}, {"budget_s": 0}, {"budget_s": 601},
                     {"reason": "because"}, {"trace": "yes"}, {"directory": "/tmp"}):
            with pytest.raises(RemoteError) as err:
                client.request("snapshot.take", **args)
            assert err.value.code == "bad_args", args
        with pytest.raises(RemoteError) as err:
            client.request("heap.types", limit=0)
        assert err.value.code == "bad_args"
        assert client.snapshot_list()["snapshots"] == []
    assert not os.path.exists(os.path.join(runtime_dir, "snapshots"))


# -- files, in this process --------------------------------------------------------------------
def _doc(snap_id="1-20200101T000000000000Z-1", **more):
    doc = {"format": "memtui-snapshot", "version": 1, "id": snap_id, "census": {}}
    doc.update(more)
    return doc


def test_write_never_overwrites(tmp_path):
    path, size = snapshots.write(_doc(), str(tmp_path))
    before = open(path, "rb").read()
    with pytest.raises(snapshots.SnapshotError, match="refusing to overwrite"):
        snapshots.write(_doc(extra="x" * 1000), str(tmp_path))
    assert open(path, "rb").read() == before and size == len(before)
    assert os.listdir(tmp_path) == [os.path.basename(path)]


@pytest.mark.parametrize("content,message", [
    (b"plain text", "not a gzip file"),
    (gzip.compress(b"{not json"), "does not hold JSON"),
    (gzip.compress(b'{"format": "other", "version": 1}'), "not a memtui snapshot"),
    (gzip.compress(b'{"format": "memtui-snapshot", "version": 2}'), "version 2"),
    (gzip.compress(b'{"format": "memtui-snapshot", "version": 1}')[:-12], "truncated"),
], ids=["plain-text", "not-json", "other-format", "version-2", "truncated"])
def test_load_refuses_what_is_not_a_version_1_snapshot(tmp_path, content, message):
    path = tmp_path / "x.json.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        snapshots.load(str(path))


def test_load_refuses_a_decompression_bomb(tmp_path):
    path = tmp_path / "bomb.json.gz"
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    path.write_bytes(packer.compress(b" " * (4 << 20)) + packer.flush())
    with pytest.raises(ValueError, match="more than 1 MB"):
        snapshots.load(str(path), max_bytes=1 << 20)


# -- tracemalloc sites: memtui's building blocks are the application's ----------------------------
PACKAGE = os.path.dirname(os.path.abspath(snapshots.__file__)).rsplit(os.sep, 1)[0]


def test_sites_in_memtui_runtime_are_kept_and_the_agents_left_out():
    from memtui.runtime.cache import Cache

    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(1)
    try:
        cache = Cache(name="sites", max_entries=100_000, register=False)
        for i in range(20_000):
            cache.set(i * 7919, None)  # the entries are the cache's own allocations
        agents = [snapshots.instance() for _ in range(2000)]  # strings made in memtui/agent
        sites = snapshots.tracemalloc_sites(lines=100_000)
    finally:
        if started:
            tracemalloc.stop()
    assert len(cache) == 20_000 and len(agents) == 2000
    files = {r["file"] for r in sites["by_line"]}
    runtime = [f for f in files if f.startswith(os.path.join(PACKAGE, "runtime") + os.sep)]
    assert runtime, sorted(files)  # a leak in a Cache can be named
    for side in ("agent", "cli", "config"):
        assert not [f for f in files if f.startswith(os.path.join(PACKAGE, side) + os.sep)]


# -- retention and "this process's" snapshots: this process instance, not this PID ---------------
def _seed(directory, name, source):
    path = os.path.join(directory, name)
    with open(source, "rb") as fh, open(path, "wb") as out:
        out.write(fh.read())
    os.chmod(path, 0o600)
    return name[:-len(".json.gz")]


def test_an_earlier_run_with_the_same_pid_keeps_its_snapshots(start_target, tmp_path):
    # In a container every run is PID 1: a baseline saved by an earlier run has our PID in its
    # name, and must neither be pruned nor be taken for one of ours.
    out = tmp_path / "snaps"
    target = start_target('settings={"profiler": {"output_dir": "%s", "retention": 2}}' % out)
    with AgentClient(pid=target.pid) as client:
        first = client.snapshot_take()
        assert first["id"].startswith(snapshots.instance_of(first["id"]) + "-")
        assert snapshots.instance_of(first["id"]).startswith("%d-" % target.pid)
        # an earlier run's (and an earlier memtui's, without the token), same PID, older
        older = _seed(str(out), "%d-20200101T000000000000Z-1.json.gz" % target.pid,
                      first["path"])
        earlier = _seed(str(out), "%d-0badcafe-20200101T000000000001Z-1.json.gz" % target.pid,
                        first["path"])
        taken = [client.snapshot_take()["id"] for _ in range(3)]
        names = sorted(os.listdir(out))
        suspects = client.snapshot_suspects()
        latest = client.snapshot_diff()
        named = client.snapshot_diff(older, taken[-1])  # any snapshot can still be named
    assert names == sorted([older + ".json.gz", earlier + ".json.gz"]
                           + [i + ".json.gz" for i in taken[-2:]])
    assert suspects["snapshots"] == taken[-2:]
    assert (latest["a"], latest["b"]) == (taken[-2], taken[-1])
    assert (named["a"], named["b"]) == (first["id"], taken[-1])  # the copy holds first's id


def test_prune_keeps_other_instances_and_clears_their_dead_temporaries(tmp_path):
    me, pid = snapshots.instance(), os.getpid()
    names = ["%s-20240101T00000000000%dZ-%d.json.gz" % (me, i, i) for i in range(4)]
    names += ["%d-20200101T000000000000Z-1.json.gz" % pid,  # earlier memtui: no token
              "%d-0badcafe-20200101T000000000000Z-1.json.gz" % pid]  # an earlier run
    temps = [".%d-0badcafe-20200101T000000000000Z-2.tmp" % pid,  # our PID, another run: gone
             ".%s-20240101T000000000009Z-9.tmp" % me]  # ours: being written
    for name in names + temps:
        (tmp_path / name).write_bytes(b"x")
    removed = snapshots.prune(str(tmp_path), 2, instance=me)
    assert sorted(os.path.basename(p) for p in removed) == sorted(names[:2] + temps[:1])
    assert sorted(os.listdir(tmp_path)) == sorted(names[2:] + temps[1:])
    assert [snapshots.instance_of(n) for n in names] == [me] * 4 + [None, "%d-0badcafe" % pid]


# -- load: malformed documents are refused with one sentence naming the field ---------------------
def _valid(**more):
    doc = {"format": "memtui-snapshot", "version": 1, "id": "100-s1", "pid": 100,
           "taken_at": 1000.0, "reason": "manual", "process": {"rss": 50_000_000},
           "census": {"complete": True, "budget_s": 1.0, "objects": 10, "bytes": 1000,
                      "types": [{"type": "builtins.dict", "count": 3, "size": 700}]},
           "containers": [{"type": "builtins.list", "len": 3, "size": 88, "repr": "<x>"}],
           "duplicates": {"complete": True, "wasted_bytes": 0,
                          "values": [{"kind": "str", "preview": "'a'", "count": 2, "size": 50,
                                      "wasted": 50}]},
           "tracemalloc": {"frames": 1, "traced": 10, "peak": 10,
                           "by_line": [{"file": "a.py", "line": 1, "size": 1, "count": 1}],
                           "by_traceback": [{"frames": [{"file": "a.py", "line": 1}],
                                             "size": 1, "count": 1}]}}
    doc.update(more)
    return doc


def _damage(mode):
    doc = _valid()
    row = doc["census"]["types"][0]
    if mode == "taken_at":
        doc["taken_at"] = "2025-01-01T00:00:00"
    elif mode == "taken_at_missing":
        del doc["taken_at"]
    elif mode == "process":
        doc["process"] = "n/a"
    elif mode == "census":
        doc["census"] = []
    elif mode == "count_missing":
        del row["count"]
    elif mode == "count_str":
        row["count"] = "12"
    elif mode == "size_bool":
        row["size"] = True
    elif mode == "type_list":
        row["type"] = ["a"]
    elif mode == "row_str":
        doc["census"]["types"].append("junk")
    elif mode == "containers":
        doc["containers"] = [{"type": "x"}]
    elif mode == "duplicates":
        doc["duplicates"]["wasted_bytes"] = "1"
    elif mode == "tracemalloc":
        doc["tracemalloc"]["by_line"][0]["line"] = "x"
    elif mode == "frames":
        doc["tracemalloc"]["by_traceback"][0]["frames"] = [{"file": 1, "line": 1}]
    return doc


@pytest.mark.parametrize("mode,field", [
    ("taken_at", "taken_at"), ("taken_at_missing", "taken_at"), ("process", "process"),
    ("census", "census"), ("count_missing", "census.types[0].count"),
    ("count_str", "census.types[0].count"), ("size_bool", "census.types[0].size"),
    ("type_list", "census.types[0].type"), ("row_str", "census.types[1]"),
    ("containers", "containers[0].len"), ("duplicates", "duplicates.wasted_bytes"),
    ("tracemalloc", "tracemalloc.by_line[0].line"),
    ("frames", "tracemalloc.by_traceback[0].frames[0].file")])
def test_load_names_the_first_field_of_the_wrong_shape(tmp_path, mode, field):
    path = tmp_path / "x.json.gz"
    path.write_bytes(gzip.compress(json.dumps(_damage(mode)).encode()))
    with pytest.raises(ValueError) as err:
        snapshots.load(str(path))
    message = str(err.value)
    assert "not a usable memtui snapshot: %s " % field in message, message
    assert "\n" not in message


@pytest.mark.parametrize("raw,message", [
    (b'{"format":"memtui-snapshot","version":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "nested too deeply"),
    (b'{"format":"memtui-snapshot","version":1,"x":"\xff"}', "does not hold JSON"),
    (b'{"format":"memtui-snapshot","version":1,"x":' + b"1" * 5000 + b"}", "does not hold JSON"),
    (json.dumps(_valid(taken_at=float("nan"))).encode(), "taken_at is NaN, not a number"),
], ids=["deep", "bad-utf8", "huge-int", "nan"])
def test_load_refuses_malformed_json_in_one_sentence(tmp_path, raw, message):
    path = tmp_path / "x.json.gz"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError) as err:
        snapshots.load(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_load_takes_any_id_and_what_a_snapshot_may_leave_out(tmp_path):
    path = tmp_path / "x.json.gz"
    for doc in (_valid(), _valid(id="1234-20200101T000000000000Z-1"),
                _valid(containers=None, duplicates=None, tracemalloc=None, pid=None),
                _valid(process={"error": "OSError: gone"})):
        path.write_bytes(gzip.compress(json.dumps(doc).encode()))
        assert snapshots.load(str(path)) == doc
