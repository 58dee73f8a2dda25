"""`memtui ps` cleaning the runtime directory (discovery.remove_leftovers), on real files, real
processes and real locks: what goes, what stays, and what it refuses to touch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from memtui import discovery, paths
from memtui.attach import inject

from conftest import NOBODY, needs_root


@pytest.fixture
def rt(runtime_dir, monkeypatch):
    os.makedirs(runtime_dir, mode=0o700)
    monkeypatch.setenv("MEMTUI_RUNTIME_DIR", runtime_dir)
    return runtime_dir


@pytest.fixture
def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def plant(directory: str, name: str, body: str = "{}") -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as fh:
        fh.write(body)
    return path


def gone(found, directory):
    assert all(os.path.dirname(c["path"]) == directory for c in found)
    return sorted(os.path.basename(c["path"]) for c in found)


def test_half_written_and_temporary_files_go_only_with_their_process(rt, dead_pid, live):
    for pid in (dead_pid, live):
        plant(rt, "%d.dormant.%d.tmp" % (pid, pid))
        plant(rt, "%d.inject-a1b2c3.json.tmp" % pid)
        plant(rt, "%d.inject-a1b2c3.py" % pid, "print()")
    found = discovery.remove_leftovers(rt)
    assert gone(found, rt) == sorted(["%d.dormant.%d.tmp" % (dead_pid, dead_pid),
                                      "%d.inject-a1b2c3.json.tmp" % dead_pid,
                                      "%d.inject-a1b2c3.py" % dead_pid,
                                      "%d.inject-a1b2c3.json.tmp" % live])
    # a live process's: the marker may be mid-write, the script still to be read (3.14); the
    # .json.tmp of a live one goes once no attacher holds its lock (its attacher gave up)
    assert sorted(os.listdir(rt)) == sorted(["%d.dormant.%d.tmp" % (live, live),
                                             "%d.inject-a1b2c3.py" % live])


def test_a_marker_that_cannot_be_read_is_kept_while_its_process_runs(rt, live, dead_pid):
    plant(rt, "%d.dormant" % live, "{not json")
    plant(rt, "%d.dormant" % dead_pid, "{not json")
    found = discovery.remove_leftovers(rt)
    assert gone(found, rt) == ["%d.dormant" % dead_pid]
    assert os.listdir(rt) == ["%d.dormant" % live]


def test_a_marker_replaced_meanwhile_is_not_removed(rt, live):
    """ps read an earlier process's marker; before it unlinks, the process now running that PID
    writes its own (install() renames it into place): that one stays."""
    stale = plant(rt, "%d.dormant" % live, json.dumps({"start_ticks": 1}))
    fd = discovery._open_own(stale)  # noqa: SLF001 - the steps of remove_leftovers, in that order
    try:
        assert discovery._marker_of_another(fd, live)  # noqa: SLF001
        fresh = plant(rt, "x.tmp", json.dumps({"start_ticks": paths.start_ticks(live)}))
        os.rename(fresh, stale)
        assert not discovery._unlink_if_same(stale, fd)  # noqa: SLF001
    finally:
        os.close(fd)
    assert os.path.exists(stale) and discovery.remove_leftovers(rt) == []


def test_two_ps_at_once_never_remove_a_lock_an_attacher_holds(rt, dead_pid):
    """ps#2 opened the old lock file; ps#1 removed it; an attacher for a new process with that
    PID made and locked a new one; ps#2 then locks the old file and must leave the new one."""
    path = plant(rt, "%d.inject.lock" % dead_pid, "")
    second = discovery._open_own(path)  # noqa: SLF001 - ps#2, paused after opening
    try:
        assert [c["kind"] for c in discovery.remove_leftovers(rt)] == ["inject"]  # ps#1
        with inject.target_lock(dead_pid):  # the attacher: a new file, locked
            assert discovery._lock_taken(second)  # noqa: SLF001 - the old file: free
            assert not discovery._unlink_if_same(path, second)  # noqa: SLF001
            assert os.path.exists(path)
            assert discovery.remove_leftovers(rt) == []  # locked: not touched
    finally:
        os.close(second)


def test_what_is_not_a_regular_file_of_ours_is_never_opened_or_removed(rt, live, dead_pid):
    """A FIFO would block an open() for ever, /dev/zero would never end a read."""
    os.mkfifo(os.path.join(rt, "%d.dormant" % live))
    os.mkfifo(os.path.join(rt, "%d.inject-a1b2c3.json" % dead_pid))
    os.symlink("/dev/zero", os.path.join(rt, "%d.dormant" % dead_pid))
    os.symlink("/dev/zero", os.path.join(rt, "%d.inject.lock" % dead_pid))
    before = sorted(os.listdir(rt))
    started = time.monotonic()
    assert discovery.remove_leftovers(rt) == []
    assert time.monotonic() - started < 5 and sorted(os.listdir(rt)) == before


@needs_root
def test_a_runtime_dir_that_is_not_private_is_left_alone(tmp_path, dead_pid):
    """Another user made /tmp/memtui-UID first (mode 0777) and planted files: ps cleans nothing
    there (the agent and the client refuse that directory anyway)."""
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    os.chown(loose, NOBODY, NOBODY)
    planted = plant(str(loose), "%d.dormant" % dead_pid)
    assert discovery.remove_leftovers(str(loose)) == [] and os.path.exists(planted)
    os.chown(loose, os.geteuid(), os.getegid())
    os.chmod(loose, 0o700)
    assert gone(discovery.remove_leftovers(str(loose)), str(loose)) == ["%d.dormant" % dead_pid]
