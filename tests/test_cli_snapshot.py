"""`memtui snapshot …` through the real entry point against real targets and real files."""
from __future__ import annotations

import gzip
import json
import os

import pytest


def _take(cli, pid, *extra):
    r = cli("snapshot", str(pid), "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_take_show_and_copy(cli, start_target, tmp_path):
    t = start_target("interval=0.2")
    out = tmp_path / "copy.json.gz"
    meta = _take(cli, t.pid, "-o", str(out))
    assert os.path.exists(meta["path"]) and meta["copied_to"] == str(out)
    with gzip.open(out, "rt") as fh:
        doc = json.load(fh)
    assert doc["format"] == "memtui-snapshot" and doc["version"] == 1 and doc["pid"] == t.pid
    assert oct(os.stat(meta["path"]).st_mode & 0o777) == "0o600"
    shown = cli("snapshot", "show", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "largest types" in shown.stdout and "builtins." in shown.stdout
    plain = cli("snapshot", str(t.pid))  # human output: one line naming the file
    assert plain.returncode == 0 and ".json.gz" in plain.stdout


def test_suspects_from_a_live_leak_by_pid_and_from_files(cli, start_target):
    t = start_target("dict", "interval=0.2", script="leaks.py")
    files = []
    for _ in range(4):
        assert t.send("step").startswith("ok")
        files.append(_take(cli, t.pid)["path"])
    by_pid = cli("snapshot", "suspects", str(t.pid), "--json")
    assert by_pid.returncode == 1, by_pid.stderr  # suspects found: a check that failed
    found = json.loads(by_pid.stdout)["suspects"]
    assert found and found[0]["name"].endswith("Request")
    by_files = cli("snapshot", "suspects", *files, "--json")
    assert by_files.returncode == 1
    assert json.loads(by_files.stdout)["suspects"][0]["name"].endswith("Request")
    diff = cli("snapshot", "diff", files[0], files[-1], "--json")
    assert diff.returncode == 0, diff.stderr
    growth = {r["type"]: r for r in json.loads(diff.stdout)["types"]}
    assert any(k.endswith("Request") and v["count_delta"] > 0 for k, v in growth.items())
    table = cli("snapshot", "diff", files[0], files[-1])
    assert "growth by type" in table.stdout and "Request" in table.stdout


def test_a_steady_process_has_no_suspects(cli, start_target):
    t = start_target("steady", "interval=0.2", script="leaks.py")
    files = []
    for _ in range(4):
        t.send("step")
        files.append(_take(cli, t.pid)["path"])
    r = cli("snapshot", "suspects", *files)
    assert r.returncode == 0, r.stdout
    assert "No leak suspects" in r.stdout


@pytest.mark.parametrize("args", [("show", "/nonexistent.json.gz"), ("999999999",),
                                  ("diff", "onlyone"), ("frobnicate",)])
def test_bad_input_is_one_line_and_exit_2(cli, args):
    r = cli("snapshot", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_show_refuses_a_file_that_is_not_a_snapshot(cli, tmp_path):
    bogus = tmp_path / "x.json.gz"
    with gzip.open(bogus, "wt") as fh:
        fh.write('{"hello": 1}')
    r = cli("snapshot", "show", str(bogus))
    assert r.returncode == 2 and "Traceback" not in r.stderr
