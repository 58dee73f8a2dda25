"""Runtime directory rules and PID liveness."""
from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from conftest import wait_for
from memtui import paths


def test_runtime_dir_precedence():
    assert paths.runtime_dir({"MEMTUI_RUNTIME_DIR": "/x/y", "XDG_RUNTIME_DIR": "/run/user/1"}) == "/x/y"
    assert paths.runtime_dir({"XDG_RUNTIME_DIR": "/run/user/1"}) == "/run/user/1/memtui"
    assert paths.runtime_dir({"XDG_RUNTIME_DIR": "relative"}) == "/tmp/memtui-%d" % os.geteuid()


def test_zombie_counts_as_gone():
    child = subprocess.Popen(["true"])
    wait_for(lambda: not paths.pid_alive(child.pid), message="zombie seen as gone")
    assert os.path.exists("/proc/%d" % child.pid), "still a zombie: nobody reaped it yet"
    child.wait()


@pytest.mark.parametrize("mode", [0o755, 0o700])
def test_check_private_dir(tmp_path, mode):
    d = tmp_path / "rt"
    d.mkdir()
    os.chmod(d, mode)
    if mode == 0o700:
        paths.check_private_dir(str(d))
    else:
        with pytest.raises(paths.RuntimeDirError, match="must be 0700"):
            paths.check_private_dir(str(d))


def test_ps_cleans_half_created_socket_of_dead_agent(cli, runtime_dir):
    paths.ensure_private_dir(runtime_dir)
    dead = subprocess.Popen(["true"])
    dead.wait()
    tmp = os.path.join(runtime_dir, "%d.tmp" % dead.pid)
    s = socket.socket(socket.AF_UNIX)
    s.bind(tmp)
    s.close()
    out = cli("ps", "--json")
    assert out.returncode == 0, out.stderr
    cleaned = json.loads(out.stdout)["cleaned"]
    assert [c["socket"] for c in cleaned] == [tmp] and not os.path.exists(tmp)


def test_huge_pid_is_not_alive():
    assert paths.pid_alive(99999999999) is False
