"""`memtui snapshot …` through the real entry point against real targets and real files."""
from __future__ import annotations

import gzip
import importlib
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


# -- documents built by hand: what a file of another version or a damaged one can hold ----------
def _doc(n, types, complete=True, **extra):
    doc = {"format": "memtui-snapshot", "version": 1, "id": "100-s%d" % n, "pid": 100,
           "taken_at": 1000.0 + 10 * n, "reason": "manual", "process": {"rss": 50_000_000},
           "census": {"complete": complete, "budget_s": 1.0, "objects": 10, "bytes": 1000,
                      "types": [{"type": k, "count": c, "size": s}
                                for k, (c, s) in types.items()]},
           "containers": [], "duplicates": {"wasted_bytes": 0, "values": []},
           "tracemalloc": None}
    doc.update(extra)
    return doc


def _write(path, doc):
    with gzip.open(path, "wt") as fh:
        json.dump(doc, fh)
    return str(path)


STEADY = {"builtins.dict": (5000, 2_000_000), "app.Item": (2000, 112_000)}


def test_suspects_from_too_few_files_is_no_judgement_exit_2(cli, tmp_path):
    files = [_write(tmp_path / ("%d.json.gz" % i), _doc(i, STEADY)) for i in range(2)]
    r = cli("snapshot", "suspects", *files)
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and "2 snapshots comparable, at least 3 needed" in r.stderr
    js = cli("snapshot", "suspects", *files, "--json")
    assert js.returncode == 2 and "at least 3 needed" in js.stderr
    out = json.loads(js.stdout)
    assert (out["judged"], out["comparable"], out["min_snapshots"], out["suspects"]) == (
        False, 2, 3, [])


def test_suspects_do_not_compare_a_cut_census_and_say_so(cli, tmp_path):
    # 4 snapshots, the third census cut by its budget: only the last one compares by type
    files = [_write(tmp_path / ("%d.json.gz" % i), _doc(i, STEADY, complete=(i != 2)))
             for i in range(4)]
    r = cli("snapshot", "suspects", *files)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "1 snapshot comparable" in r.stderr and "1 census stopped at the time budget" in r.stderr
    assert "--budget" in r.stderr and r.stderr.count("\n") == 1
    out = json.loads(cli("snapshot", "suspects", *files, "--json").stdout)
    assert (out["incomplete"], out["comparable"], out["judged"]) == (["100-s2"], 1, False)
    # with three complete ones after the cut one there is a judgement, and the cut one is named
    files.append(_write(tmp_path / "4.json.gz", _doc(4, STEADY)))
    files.append(_write(tmp_path / "5.json.gz", _doc(5, STEADY)))
    r = cli("snapshot", "suspects", *files, env={"COLUMNS": "200"})
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "No leak suspects across the last 3 of 6 snapshots" in r.stdout
    assert "3 or more" in r.stdout and "100-s2" in r.stdout and "time budget" in r.stdout
    out = json.loads(cli("snapshot", "suspects", *files, "--json").stdout)
    assert (out["judged"], out["comparable"], out["incomplete"]) == (True, 3, ["100-s2"])


def test_suspects_by_pid_show_skipped_snapshots_and_need_enough(cli, start_target):
    t = start_target("steady", "interval=0.2", script="leaks.py")
    metas = []
    for _ in range(2):
        t.send("step")
        metas.append(_take(cli, t.pid))
    r = cli("snapshot", "suspects", str(t.pid))
    assert r.returncode == 2 and "2 snapshots comparable, at least 3 needed" in r.stderr, r
    for _ in range(3):
        t.send("step")
        metas.append(_take(cli, t.pid))
    with open(metas[0]["path"], "wb") as fh:  # damaged on disk: the agent skips it
        fh.write(b"not gzip")
    js = cli("snapshot", "suspects", str(t.pid), "--json")
    assert js.returncode == 0, (js.stdout, js.stderr)
    out = json.loads(js.stdout)
    assert [s["id"] for s in out["skipped"]] == [metas[0]["id"]]
    assert (out["judged"], out["comparable"], out["min_snapshots"]) == (True, 4, 3)
    r = cli("snapshot", "suspects", str(t.pid), env={"COLUMNS": "200"})
    assert r.returncode == 0 and "No leak suspects across 4 snapshots" in r.stdout, r.stdout
    assert "Skipped, unreadable: %s" % metas[0]["id"] in r.stdout


def test_a_report_from_an_agent_counts_what_it_could_compare():
    # memtui.cli.snapshot, the attribute, is the command; the module is in sys.modules
    cli_snapshot = importlib.import_module("memtui.cli.snapshot")
    report = cli_snapshot._report_from_agent({
        "suspects": [], "snapshots": ["a", "b", "c", "d"], "min_snapshots": 3,
        "incomplete": ["b"], "skipped": [{"id": "z", "error": "ValueError: bad"}]})
    assert (report["comparable"], report["incomplete"]) == (2, ["b"])
    line = cli_snapshot.cannot_judge(report)
    assert "2 snapshots comparable, at least 3 needed" in line
    assert "1 census stopped at the time budget; 1 snapshot unreadable" in line


MARKUP = ["Dict[str, Any]", "[/oops] closing tag", "[bold]not bold[/bold]", "[red]"]


def test_heap_strings_are_shown_as_they_are_not_as_markup(cli, tmp_path):
    types = {name: (i + 1, 100 * (i + 1)) for i, name in enumerate(MARKUP)}
    doc = _doc(0, types, containers=[{"type": "[b]x", "len": 3, "size": 100,
                                      "repr": "<list [/x] len=3>"}],
               duplicates={"wasted_bytes": 300, "values": [
                   {"kind": "str", "preview": "'[/oops] closing tag x'", "count": 50,
                    "size": 70, "wasted": 3430}]},
               tracemalloc={"by_line": [{"file": "[/a].py", "line": 3, "count": 1,
                                         "size": 10}]})
    a = _write(tmp_path / "a.json.gz", doc)
    r = cli("snapshot", "show", a, env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    for text in MARKUP + ["[b]x", "<list [/x] len=3>", "'[/oops] closing tag x'", "[/a].py:3"]:
        assert text in r.stdout, text
    grown = _doc(1, {name: (c * 2, s * 2) for name, (c, s) in types.items()})
    b = _write(tmp_path / "b.json.gz", grown)
    r = cli("snapshot", "diff", a, b, env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    for text in MARKUP:
        assert text in r.stdout, text
    files = [_write(tmp_path / ("%d.json.gz" % i), _doc(i, {"[/oops]": (i * 100, i * 10_000)}))
             for i in range(1, 4)]
    r = cli("snapshot", "suspects", *files, env={"COLUMNS": "200"})
    assert r.returncode == 1 and "[/oops]" in r.stdout, (r.stdout, r.stderr)


def _damaged(mode):
    doc = _doc(0, STEADY, containers=[{"type": "builtins.list", "len": 3, "size": 100}],
               duplicates={"wasted_bytes": 10, "values": [
                   {"kind": "str", "preview": "'x'", "count": 2, "size": 10, "wasted": 10}]},
               tracemalloc={"by_line": [{"file": "a.py", "line": 1, "count": 1, "size": 10}]})
    types = doc["census"]["types"]
    if mode == "taken_str":
        doc["taken_at"] = "2025-01-01T00:00:00"
    elif mode == "types_missing_count":
        for row in types:
            row.pop("count")
    elif mode == "types_str_count":
        for row in types:
            row["count"] = "12"
    elif mode == "census_list":
        doc["census"] = []
    elif mode == "proc_str":
        doc["process"] = "n/a"
    elif mode == "tm_badline":
        doc["tracemalloc"] = {"by_line": [{"file": "a.py", "line": "x", "size": 1, "count": 1}]}
    elif mode == "containers_bad":
        doc["containers"] = [{"type": "x"}]
    elif mode == "dup_bad":
        doc["duplicates"] = {"values": [{"preview": 1}], "wasted_bytes": "1"}
    elif mode == "unhashable":
        types[0]["type"] = ["a"]
    elif mode == "rows_not_objects":
        types.append("junk")
    return doc


DAMAGE = ["taken_str", "types_missing_count", "types_str_count", "census_list", "proc_str",
          "tm_badline", "containers_bad", "dup_bad", "unhashable", "rows_not_objects"]


@pytest.mark.parametrize("mode", DAMAGE)
def test_a_damaged_or_foreign_document_is_one_line_and_exit_2(cli, tmp_path, mode):
    bad = _write(tmp_path / "bad.json.gz", _damaged(mode))
    good = _write(tmp_path / "good.json.gz", _doc(1, STEADY))
    r = cli("snapshot", "show", bad)
    assert r.returncode == 2, (mode, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "not a usable snapshot" in r.stderr or "Cannot read" in r.stderr, r.stderr
    for args in (("diff", bad, good), ("diff", good, bad), ("suspects", bad, good, good)):
        r = cli("snapshot", *args)
        assert r.returncode in (0, 1, 2) and "Traceback" not in r.stderr, (args, r.stderr)
        assert r.stderr.count("\n") <= 1, r.stderr


def test_json_nested_too_deeply_is_one_line_and_exit_2(cli, tmp_path):
    deep = tmp_path / "deep.json.gz"
    with gzip.open(deep, "wb") as fh:
        fh.write(b'{"format":"memtui-snapshot","version":1,"x":' + b"[" * 100_000
                 + b"]" * 100_000 + b"}")
    for args in (("show", str(deep)), ("diff", str(deep), str(deep))):
        r = cli("snapshot", *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr


# -- -o FILE and --trace --------------------------------------------------------------------------
def test_output_refuses_an_existing_file_unless_forced_and_writes_0600_atomically(
        cli, start_target, tmp_path):
    t = start_target("interval=0.2")
    out = tmp_path / "keep.json.gz"
    out.write_bytes(b"precious")
    r = cli("snapshot", str(t.pid), "-o", str(out))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--force" in r.stderr, r.stderr
    assert out.read_bytes() == b"precious"
    from memtui.client import AgentClient

    with AgentClient(pid=t.pid) as c:
        assert c.snapshot_list()["snapshots"] == []  # refused before anything was taken
    os.chmod(out, 0o644)
    meta = _take(cli, t.pid, "-o", str(out), "--force")
    assert meta["copied_to"] == str(out)
    with gzip.open(out, "rt") as fh:
        assert json.load(fh)["id"] == meta["id"]
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"
    fresh = tmp_path / "sub" / "new.json.gz"
    r = cli("snapshot", str(t.pid), "-o", str(fresh))
    assert r.returncode == 2 and "No directory" in r.stderr
    fresh.parent.mkdir()
    meta = _take(cli, t.pid, "-o", str(fresh))
    assert oct(os.stat(fresh).st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(tmp_path)) == ["keep.json.gz", "sub"]  # no temporary left over
    assert os.listdir(fresh.parent) == ["new.json.gz"]
    r = cli("snapshot", str(t.pid), "-o", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr


def test_copy_out_never_replaces_a_file_that_appears_meanwhile(tmp_path):
    from memtui.cli.snapshot import copy_out

    src = tmp_path / "src"
    src.write_bytes(b"snapshot")
    dst = tmp_path / "dst"
    dst.write_bytes(b"theirs")  # created after the check, before the copy lands
    with pytest.raises(FileExistsError):
        copy_out(str(src), str(dst))
    assert dst.read_bytes() == b"theirs" and sorted(os.listdir(tmp_path)) == ["dst", "src"]
    copy_out(str(src), str(dst), force=True)
    assert dst.read_bytes() == b"snapshot" and sorted(os.listdir(tmp_path)) == ["dst", "src"]


def test_trace_says_tracing_stays_on_and_how_to_stop_it(cli, start_target):
    t = start_target("interval=0.2")
    r = cli("snapshot", str(t.pid), "--trace", "--budget", "30", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "Tracing stays on" in r.stdout and "memtui trace %d stop" % t.pid in r.stdout
    js = cli("snapshot", str(t.pid), "--trace", "--budget", "30", "--json")
    assert js.returncode == 0 and json.loads(js.stdout)["id"]
    assert "memtui trace %d stop" % t.pid in js.stderr
    plain = cli("snapshot", str(t.pid), "--budget", "30")
    assert "Tracing stays on" not in plain.stdout + plain.stderr
