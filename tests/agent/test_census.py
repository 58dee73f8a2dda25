"""The heap census: exact counts of tracked instances and of objects found only as referents of
untracked containers, the time budget, the largest containers, duplicate strings; never a call
into user code. End to end through a real target's snapshot, and in this process."""
from __future__ import annotations

import gc
import sys

from memtui.agent import census, snapshots
from memtui.client import AgentClient


def _types(doc):
    return {t["type"]: t for t in doc["census"]["types"]}


def _take(target, **args):
    with AgentClient(pid=target.pid) as client:
        meta = client.snapshot_take(**args)
        events = client.events()["events"]
    return meta, snapshots.load(meta["path"]), events


def test_census_counts_instances_and_untracked_referents_exactly(start_target):
    target = start_target()
    assert target.send("atoms 0") == "ok 0"  # imports datetime (date.min, date.max) first
    _, before, _ = _take(target, budget_s=60.0)
    assert target.send("widgets 5000") == "ok 5000"
    # datetime.date objects are not gc-tracked and are held here only by atomic-only dicts and
    # tuples, which gc untracks: gc.get_objects() sees none of them; only the referent walk does.
    assert target.send("atoms 3000") == "ok 0"
    meta, doc, _ = _take(target, budget_s=60.0)
    types, old = _types(doc), _types(before)
    assert doc["census"]["complete"] is True and meta["complete"] is True
    assert types["__main__.Widget"]["count"] == 5000
    dates = types["datetime.date"]["count"] - old.get("datetime.date", {"count": 0})["count"]
    assert dates == 3000  # each held twice, counted once
    assert types["datetime.date"]["size"] == types["datetime.date"]["count"] * 32
    assert types["builtins.dict"]["count"] - old["builtins.dict"]["count"] >= 3000
    c = doc["census"]
    assert c["objects"] == c["tracked"] + c["untracked"] == meta["objects"]
    assert c["bytes"] == sum(t["size"] for t in c["types"])
    sizes = [t["size"] for t in c["types"]]
    assert sizes == sorted(sizes, reverse=True)
    with AgentClient(pid=target.pid) as client:
        quick = client.heap_types(limit=10_000)
    counts = {t["type"]: t["count"] for t in quick["types"]}
    assert counts["__main__.Widget"] == 5000
    assert "datetime.date" not in counts  # counts-only: tracked objects alone
    assert quick["objects"] < c["objects"] and quick["elapsed_s"] >= 0


def test_a_budget_that_runs_out_is_reported(start_target):
    target = start_target()
    assert target.send("bigheap 300000") == "ok"
    meta, doc, events = _take(target, budget_s=0.001)
    c = doc["census"]
    assert c["complete"] is False and meta["complete"] is False
    assert c["budget_s"] == 0.001 and c["elapsed_s"] >= 0.001
    assert c["tracked"] < 300000
    assert doc["duplicates"]["complete"] is False
    done = [e for e in events if e["kind"] == "snapshot" and e["data"].get("id") == meta["id"]]
    assert "budget" in done[-1]["message"] and done[-1]["data"]["complete"] is False


def test_duplicates_find_a_thousand_copies_of_one_string(start_target):
    target = start_target()
    size = int(target.send("dupstr 1000 100").split()[1])
    assert size == sys.getsizeof("x" * 100)
    _, doc, _ = _take(target, budget_s=60.0)
    dups = doc["duplicates"]
    assert dups["complete"] is True
    mine = [v for v in dups["values"] if v["preview"].startswith("'0000")]
    assert len(mine) == 1, dups["values"][:5]
    row = mine[0]
    assert row == {"kind": "str", "preview": "'" + "0" * 56 + "...", "count": 1000,
                   "size": size, "wasted": 999 * size}
    assert dups["wasted_bytes"] >= row["wasted"]
    assert dups["values"][0]["wasted"] >= row["wasted"]


# -- in this process ---------------------------------------------------------------------------
class Thing:
    pass


class Touchy(list):
    """A container whose own methods must never run during a census."""

    calls = []

    def __len__(self):
        Touchy.calls.append("len")
        raise RuntimeError("census called __len__")

    def __repr__(self):
        Touchy.calls.append("repr")
        raise RuntimeError("census called __repr__")

    def __eq__(self, other):
        Touchy.calls.append("eq")
        raise RuntimeError("census called __eq__")

    __hash__ = None


class TouchyStr(str):
    def __eq__(self, other):
        Touchy.calls.append("str eq")
        raise RuntimeError("census compared a str subclass")

    __hash__ = str.__hash__


def test_count_types_counts_tracked_instances():
    things = [Thing() for _ in range(1234)]
    out = census.count_types(limit=None)
    counts = {t["type"]: t["count"] for t in out["types"]}
    assert counts[census.type_name(Thing)] == 1234
    assert out["objects"] >= 1234 and out["distinct"] == len(out["types"])
    assert len(census.count_types(limit=3)["types"]) == 3
    del things


def test_largest_containers_and_no_user_code():
    Touchy.calls.clear()
    big = Touchy(range(400_000))
    copies = [TouchyStr("same value here") for _ in range(50)]
    out = census.census(budget_s=60.0)
    assert Touchy.calls == []
    top = out["containers"][0]
    assert top == {"type": census.type_name(Touchy), "len": 400_000, "size": sys.getsizeof(big),
                   "repr": "<%s len=400000>" % census.type_name(Touchy)}
    assert len(out["containers"]) == 20
    lens = [c["len"] for c in out["containers"]]
    assert lens == sorted(lens, reverse=True)
    # str subclasses are not candidates for the duplicates report: comparing them runs __eq__
    assert not any(v["preview"] == "'same value here'" for v in out["duplicates"]["values"])
    del big, copies


def test_duplicates_keep_str_and_bytes_apart_and_the_sketch_agrees(monkeypatch):
    texts = ["%020d" % 3 for _ in range(300)]
    raw = [b"%020d" % 3 for _ in range(200)]
    exact = census.census(budget_s=60.0)["duplicates"]
    monkeypatch.setattr(census, "_EXACT_DISTINCT", 10)  # force the bounded-memory path
    sketched = census.census(budget_s=60.0)["duplicates"]
    for dups in (exact, sketched):
        rows = {(v["kind"], v["preview"]): v for v in dups["values"]}
        assert rows[("str", repr("%020d" % 3))]["count"] == 300
        assert rows[("bytes", repr(b"%020d" % 3))]["count"] == 200
        assert rows[("bytes", repr(b"%020d" % 3))]["wasted"] == 199 * sys.getsizeof(raw[0])
    assert exact["values"][:10] == sketched["values"][:10]
    del texts, raw


def test_a_zero_budget_stops_after_the_first_block():
    out = census.census(budget_s=0.0)
    assert out["census"]["complete"] is False
    assert out["census"]["tracked"] == census.CHECK_EVERY
    assert out["duplicates"]["complete"] is False


def test_progress_reports_each_block_and_the_census_allocates_nothing_it_counts():
    seen = []
    before = len(gc.get_objects())
    out = census.census(budget_s=60.0, progress=lambda *a: seen.append(a))
    walked = [a for a in seen if a[0] == "census"]
    assert walked[-1][1] == walked[-1][2] == out["census"]["tracked"]
    assert abs(out["census"]["tracked"] - before) < 200  # its own lists and dicts are not in it
    assert all(a[1] <= a[2] for a in seen if a[2])
    assert any(a[0] == "duplicates" for a in seen)


def test_type_names_come_from_the_type_itself():
    assert census.type_name(dict) == "builtins.dict"
    assert census.type_name(Thing).endswith("Thing")
    odd = type("Odd", (), {"__module__": 42})  # not a str: left out, not called
    assert census.type_name(odd) == "Odd"
