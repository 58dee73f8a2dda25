"""The heap census: exact counts of tracked instances and of objects found only as referents of
untracked containers, the time budget, the largest containers, duplicate strings; never a call
into user code (not even a metaclass's); no harm to threads building tuples; bounded memory.
End to end through a real target's snapshot, in this process, and in hostile subprocesses
(tests/targets/census_hostile.py)."""
from __future__ import annotations

import datetime
import gc
import json
import os
import subprocess
import sys
import time

import pytest

from memtui.agent import census, snapshots
from memtui.client import AgentClient

HOSTILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "targets", "census_hostile.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def test_a_zero_budget_stops_at_the_first_look_at_the_clock():
    tuples = sum(1 for o in gc.get_objects() if type(o) is tuple)
    out = census.census(budget_s=0.0)
    assert out["census"]["complete"] is False
    # the tracked tuples are counted from their lengths first; at most one block after them
    assert out["census"]["tracked"] <= tuples + 50 + census.CHECK_EVERY
    assert out["census"]["tracked"] < len(gc.get_objects())
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
    evil = type("Evil", (), {})
    evil.__qualname__ = _LoudStr("Evil")  # a str subclass whose __str__ is user code
    evil.__module__ = _LoudStr("mod")
    _LoudStr.calls.clear()
    assert census.type_name(evil) == "mod.Evil" and _LoudStr.calls == []


class _LoudStr(str):
    calls = []

    def __str__(self):
        _LoudStr.calls.append("str")
        return "loud"

    __hash__ = str.__hash__


# -- metaclasses, __sizeof__ overrides: no user code, exact sizes ------------------------------
CALLS = []


class UnhashableMeta(type):
    def __eq__(cls, other):  # defining __eq__ sets __hash__ = None: type keys would raise
        CALLS.append("eq")
        return cls is other


class HashingMeta(type):
    def __hash__(cls):
        CALLS.append("hash")
        return 1

    def __eq__(cls, other):
        CALLS.append("eq")
        return cls is other


class GetattrMeta(type):
    def __getattribute__(cls, name):
        CALLS.append(name)
        if name in ("__flags__", "__sizeof__", "__mro__", "__dict__", "__qualname__"):
            raise RuntimeError("metaclass attribute " + name)
        return type.__getattribute__(cls, name)

    def __sizeof__(cls):
        CALLS.append("meta sizeof")
        return 1


class ModelA(metaclass=UnhashableMeta):
    pass


class ModelB(metaclass=HashingMeta):
    pass


class ModelC(metaclass=GetattrMeta):
    __slots__ = ("a",)


class Twin:  # ModelC's layout, without the metaclass
    __slots__ = ("a",)


class SlowSize:
    def __sizeof__(self):
        CALLS.append("sizeof")
        time.sleep(0.005)
        return 10 ** 6


class PlainSize:  # SlowSize's layout, without the override
    pass


def _counts(out):  # {type: [count, size]}: lists, not tuples (the census counts tuples)
    return {t["type"]: [t["count"], t["size"]] for t in out["census"]["types"]}


def test_metaclasses_run_no_code_and_their_classes_are_counted_and_sized():
    objs = ([ModelA() for _ in range(3)] + [ModelB() for _ in range(4)]
            + [ModelC() for _ in range(5)])
    CALLS.clear()
    out = census.census(budget_s=60.0)
    quick = census.count_types(limit=None)
    names = [census.type_name(t) for t in (ModelA, ModelB, ModelC, GetattrMeta)]
    assert CALLS == []
    assert names[2] == __name__ + ".ModelC"
    types = _counts(out)
    assert types[names[0]] == [3, 3 * sys.getsizeof(objs[0])]
    assert types[names[1]] == [4, 4 * sys.getsizeof(objs[3])]
    assert types[names[2]] == [5, 5 * sys.getsizeof(Twin())]
    # the classes themselves: instances of their metaclasses, at type's own C size + header
    header = sys.getsizeof(Twin) - type.__sizeof__(Twin)
    assert types[names[3]] == [1, type.__sizeof__(ModelC) + header]
    counts = {t["type"]: t["count"] for t in quick["types"]}
    assert (counts[names[0]], counts[names[1]], counts[names[2]]) == (3, 4, 5)
    del objs


def test_python_sizeof_overrides_are_not_called_so_the_budget_holds():
    slow = [SlowSize() for _ in range(400)]  # 2 s of __sizeof__ if called
    CALLS.clear()
    t = time.perf_counter()
    out = census.census(budget_s=0.5)
    elapsed = time.perf_counter() - t
    assert CALLS == []
    assert elapsed < 2 * 0.5
    if out["census"]["complete"]:  # counted at the size of their C layout
        assert _counts(out)[census.type_name(SlowSize)] == [400, 400 * sys.getsizeof(PlainSize())]
    del slow


def test_sizes_are_what_getsizeof_says_for_builtins_and_subclasses():
    class Sub(list):
        pass

    class Slotted:
        __slots__ = ("a", "b", "__weakref__")

    class Meta(type):
        pass

    made = ([Sub([1, 2, 3]) for _ in range(7)] + [Slotted() for _ in range(6)]
            + [Meta("K%d" % i, (), {}) for i in range(5)])
    out = census.census(budget_s=60.0)
    types = _counts(out)
    for obj, n in ((made[0], 7), (made[7], 6)):
        assert types[census.type_name(type(obj))] == [n, n * sys.getsizeof(obj)]
    assert types[census.type_name(Meta)] == [5, sum(sys.getsizeof(k) for k in made[13:])]
    del made


# -- tuples: gathered apart, counted exactly, never held -----------------------------------------
class Token:
    pass


def test_tracked_tuples_their_items_and_the_largest_tuple_are_counted_exactly():
    before = _baseline()
    pairs = [(Token(), datetime.date.fromordinal(700_000 + i)) for i in range(30_000)]
    big = tuple([Token()] + [datetime.timedelta(seconds=i) for i in range(70_000)])
    out = census.census(budget_s=60.0)
    after = _counts(out)
    delta = after["builtins.tuple"][0] - before["builtins.tuple"][0]
    assert abs(delta - 30_001) < 1000, delta  # (other threads of a test process make tuples)
    dates = after["datetime.date"][0] - before.get("datetime.date", [0])[0]
    assert dates == 30_000  # items of tracked tuples, referenced nowhere else
    deltas = after["datetime.timedelta"][0] - before.get("datetime.timedelta", [0])[0]
    assert deltas == 70_000
    top = out["containers"][0]
    assert top == {"type": "builtins.tuple", "len": 70_001, "size": sys.getsizeof(big),
                   "repr": "<builtins.tuple len=70001 [%s, ...]>" % census.type_name(Token)}
    del pairs, big


def test_a_tuple_being_built_in_another_thread_is_skipped_not_crashed_on():
    out = subprocess.run([sys.executable, HOSTILE, "building"], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])  # was: SIGSEGV
    res = json.loads(out.stdout.splitlines()[-1])
    assert res["complete"] and res["counted"]
    assert not [c for c in res["containers"] if c[1] == 200000]  # the half-built tuple
    assert res["host"] == {"len": 0}  # its tuple() then finished normally


def test_threads_building_tuples_never_see_a_system_error():
    out = subprocess.run([sys.executable, HOSTILE, "churn", "1.0"], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.splitlines()[-1])
    assert res["runs"]["census"] > 0 and res["runs"]["count"] > 0 and res["built"] > 0
    assert res["errors"] == 0, res  # was: hundreds of "bad argument to internal function"


# -- large containers and shared objects: exact, in bounded memory -------------------------------
def _baseline():
    census.census(budget_s=60.0)  # the first census of a process outlives some import garbage
    return _counts(census.census(budget_s=60.0))


def test_large_containers_are_walked_in_slices_and_shared_objects_counted_once():
    before = _baseline()
    keep = []  # reachable from a tracked object (a running frame's locals are not referents)
    keep.append([range(i, i + 1) for i in range(150_000)])  # a 1.2 MB list of untracked ranges
    keep.append({datetime.time(i // 3600 % 24, i // 60 % 60, i % 60, i // 86400): float(i)
                 for i in range(100_000)})  # non-str keys: each key and value is a referent
    keep.append({"k%d" % i: datetime.timezone(datetime.timedelta(minutes=i % 1000), "z%d" % i)
                 for i in range(80_000)})
    keep.append(tuple(datetime.datetime(2000, 1, 1, 0, 0, i % 60, i) for i in range(90_000)))
    keep.append({complex(i, 1) for i in range(70_000)})
    gc.collect()  # the dict of times and the tuple of datetimes are untracked now
    assert not gc.is_tracked(keep[1]) and not gc.is_tracked(keep[3])
    ranges, one = keep[0], range(-1, 0)
    keep += [ranges[:1000], ranges[:1000], {i: r for i, r in enumerate(ranges[:1000])},
             [one] * 40_000, (one,) * 40_000]
    after = _counts(census.census(budget_s=60.0))

    def grew(name):
        return after[name][0] - before.get(name, [0])[0]

    assert grew("builtins.range") == 150_000 + 1  # each counted once, however often held
    assert grew("datetime.time") == 100_000
    assert grew("datetime.timezone") == 80_000
    assert grew("datetime.datetime") == 90_000
    assert grew("builtins.complex") == 70_000
    del keep, ranges, one


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux VmHWM reset")
@pytest.mark.parametrize("kind,before_mb", [("ints", 24), ("shared", 41)])
def test_the_walk_adds_little_memory(kind, before_mb):
    out = subprocess.run([sys.executable, HOSTILE, "memory", kind], capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.splitlines()[-1])
    assert res["complete"] and res["objects"] > 600_000
    # a 3M-int list, or 600k strings each in two lists: ~24 / ~41 MB extra before (one
    # get_referents list of the whole container; a set of ids), ~1 MB now
    assert res["extra"] < 8 * 1024 * 1024, (res, before_mb)


def test_gathering_keeps_no_reference_to_any_tuple_and_leaves_no_garbage():
    from memtui.agent import census_walk
    owned = [(Token(), i) for i in range(200)]
    before = [sys.getrefcount(t) for t in owned]
    rest, lens, filled, flat = census_walk.gather()
    try:
        assert [sys.getrefcount(t) for t in owned] == before  # nothing of the walk holds one
        assert not [o for o in rest if type(o) is tuple]
        assert not [o for o in rest if o is rest or o is flat or o is lens]  # its own lists
        assert len(lens) == len(filled) >= 200
    finally:
        rest.clear()
    del rest, lens, filled, flat
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        census.census(budget_s=60.0)
        census.count_types()
        gc.collect()
        big = [o for o in gc.garbage if type(o) is list and len(o) > 10_000]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert big == []  # e.g. the object list kept alive by a cycle through its own iterator
    del owned
