"""referrers: chains from sample instances up to a module global, a class attribute or a frame."""
from __future__ import annotations

import gc
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

from memtui.agent import referrers
from memtui.agent.referrers import type_name

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Held:
    """Instances only this module's HELD dict refers to."""


class Listener:
    pass


class Registry:
    listeners: list = []


class Slotted:
    __slots__ = ("payload",)


class Wrapper:
    pass


class Innermost:
    pass


class OnlyLocal:
    pass


class Trap:
    """Any of these running would be user code called by the search."""

    calls: list = []

    def __repr__(self):
        Trap.calls.append("repr")
        raise RuntimeError("repr called")

    def __eq__(self, other):
        Trap.calls.append("eq")
        raise RuntimeError("eq called")

    __hash__ = object.__hash__

    def __len__(self):
        Trap.calls.append("len")
        raise RuntimeError("len called")

    def __getattr__(self, name):
        Trap.calls.append("getattr " + name)
        raise RuntimeError("getattr called")

    @property
    def __class__(self):
        Trap.calls.append("__class__")
        raise RuntimeError("__class__ called")


HELD = {i: Held() for i in range(10_000, 10_050)}
for _ in range(20):
    Registry.listeners.append(Listener())
SLOT = Slotted()
SLOT.payload = Wrapper()
SLOT.payload.inner = {"deep": [Innermost()]}
TRAPS = {Trap(): Trap() for _ in range(3)}
TRAPS_HOLDER = Wrapper()
TRAPS_HOLDER.traps = TRAPS


def render(chain):
    return " <- ".join("%s%s" % (link["repr"], "" if link["via"] is None else " [via %s]"
                                 % link["via"]) for link in chain)


def test_instances_in_a_module_global_dict():
    name = type_name(Held)
    assert name == __name__ + ".Held"
    r = referrers.referrers(name, limit=3)
    assert (r["type"], r["instances"], r["sampled"], r["complete"]) == (name, 50, 3, True)
    assert r["ends"] == ["module", "module", "module"]
    for chain in r["chains"]:
        assert len(chain) == 3, render(chain)
        first, held_by, root = chain
        assert first["type"] == name and first["via"] is None
        assert first["repr"].startswith(name + " at 0x")
        assert held_by["type"] == "builtins.dict" and held_by["repr"] == "builtins.dict len=50"
        key = int(held_by["via"].strip("[]"))
        assert HELD[key] is not None and 10_000 <= key < 10_050
        assert root == {"type": "builtins.module", "repr": "module " + __name__, "via": "HELD"}
    # spread over the heap, not the same object three times
    assert len({c[1]["via"] for c in r["chains"]}) == 3


def test_instances_in_a_class_attribute():
    r = referrers.referrers(type_name(Listener), limit=2)
    assert r["ends"] == ["class", "class"]
    for chain in r["chains"]:
        assert [link["type"] for link in chain] == [type_name(Listener), "builtins.list",
                                                    "builtins.type"], render(chain)
        assert chain[1]["repr"] == "builtins.list len=20" and chain[1]["via"].startswith("[")
        assert chain[2] == {"type": "builtins.type", "repr": "class %s" % type_name(Registry),
                            "via": "listeners"}


def test_attribute_names_through_slots_instance_dicts_and_containers():
    r = referrers.referrers(type_name(Innermost), limit=1)
    (chain,) = r["chains"]
    assert [(link["type"], link["via"]) for link in chain] == [
        (type_name(Innermost), None),
        ("builtins.list", "[0]"),
        ("builtins.dict", "['deep']"),
        (type_name(Wrapper), "inner"),  # its __dict__ folds into it
        (type_name(Slotted), "payload"),  # a __slots__ member
        ("builtins.module", "SLOT"),
    ], render(chain)


class Sample:
    pass


def make_recorder():
    seen = []

    def record():
        seen.append(Sample())

    return record


RECORD = make_recorder()
RECORD()


def test_a_list_inside_a_closure():
    (chain,) = referrers.referrers(type_name(Sample), limit=1)["chains"]
    assert [(link["type"], link["via"]) for link in chain] == [
        (type_name(Sample), None),
        ("builtins.list", "[0]"),
        ("builtins.function", "closure:seen"),  # the cell and the closure tuple fold into it
        ("builtins.module", "RECORD"),
    ], render(chain)
    assert chain[2]["repr"] == "function make_recorder.<locals>.record"


def test_a_local_variable_of_a_running_frame():
    only_here = OnlyLocal()  # noqa: F841 - found through this frame from 3.13
    r = referrers.referrers(type_name(OnlyLocal), limit=1)
    (chain,) = r["chains"]
    if sys.version_info >= (3, 13):  # f_locals is a proxy: read, and the frame is the root
        assert r["ends"] == ["frame"]
        assert chain[-1]["type"] == "builtins.frame" and chain[-1]["via"] == "only_here"
        assert chain[-1]["repr"].startswith("frame test_a_local_variable_of_a_running_frame at "
                                            "test_referrers.py:")
    else:  # reading f_locals would leave a snapshot in the frame: not read, and said so
        assert r["ends"] == ["unreachable"]
        assert [link["type"] for link in chain] == [type_name(OnlyLocal)]


class Doomed:
    pass


def test_the_search_keeps_no_local_variable_alive():
    # Up to 3.12 reading a running frame's f_locals stores a snapshot of its locals in the frame,
    # which keeps a local the function then deletes alive for as long as the function runs.
    ready, go, done, stop = (threading.Event() for _ in range(4))
    refs = []

    def worker():
        x = Doomed()
        refs.append(weakref.ref(x))
        ready.set()
        go.wait(10)
        del x
        done.set()
        stop.wait(10)  # and the frame runs on

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        r = referrers.referrers(type_name(Doomed), limit=1)
        assert r["instances"] == 1
        go.set()
        assert done.wait(10)
        gc.collect()
        assert refs[0]() is None, "a deleted local is still alive after the search"
    finally:
        go.set()
        stop.set()
        thread.join(10)


def _python313():
    """Another interpreter, 3.13 or newer, when this one is older (pyenv's, or on the PATH)."""
    if sys.version_info >= (3, 13):
        return None  # the tests above run on it
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[3-9]*/bin/python3")))
    candidates += [shutil.which(n) for n in ("python3.13", "python3.14")]
    for path in filter(None, candidates):
        try:
            out = subprocess.run([path, "-c", "import sys; print(sys.version_info >= (3, 13))"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip() == "True":
            return path
    return None


def test_on_python_3_13_a_running_frames_locals_are_read_through_the_proxy():
    python = _python313()
    if python is None:
        pytest.skip("no Python 3.13 interpreter here (or this is one: the tests above ran on it)")
    script = textwrap.dedent("""
        import gc, json, threading, weakref
        from memtui.agent import referrers

        class OnlyLocal: pass
        class Doomed: pass

        def probe():
            only_here = OnlyLocal()
            return referrers.referrers("__main__.OnlyLocal", limit=1)

        ready, go, done, stop = (threading.Event() for _ in range(4))
        refs = []
        def worker():
            x = Doomed(); refs.append(weakref.ref(x)); ready.set(); go.wait(10)
            del x; done.set(); stop.wait(10)
        t = threading.Thread(target=worker, daemon=True); t.start(); ready.wait(10)
        found = referrers.referrers("__main__.Doomed", limit=1)
        go.set(); done.wait(10); gc.collect()
        print(json.dumps({"local": probe(), "doomed": found, "alive": refs[0]() is not None}))
        stop.set()
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["local"]["ends"] == ["frame"]
    last = result["local"]["chains"][0][-1]
    assert last["type"] == "builtins.frame" and last["via"] == "only_here", result["local"]
    assert result["doomed"]["ends"] == ["frame"]  # the worker's local, found through the proxy
    assert result["alive"] is False


class Loner:
    pass


def test_the_search_does_not_find_its_own_containers():
    # Only itself refers to it: every list, tuple or dict a chain could show is the search's own
    # (the instance list, the frontier handed to gc.get_referrers, its result).
    gc.disable()
    try:
        loner = Loner()
        loner.me = loner
        del loner
        r = referrers.referrers(type_name(Loner), limit=3, depth=4)
    finally:
        gc.enable()
    assert (r["instances"], r["ends"]) == (1, ["unreachable"])
    assert [link["type"] for link in r["chains"][0]] == [type_name(Loner)]


def test_no_user_code_runs():
    Trap.calls.clear()
    r = referrers.referrers(type_name(Trap), limit=6)
    assert Trap.calls == []
    assert r["sampled"] == 6 and all(e == "module" for e in r["ends"])
    vias = {chain[1]["via"] for chain in r["chains"]}
    assert "key" in vias  # a Trap as a dict key: named without hashing or comparing it
    for chain in r["chains"]:
        assert chain[0]["repr"].startswith(type_name(Trap) + " at 0x"), render(chain)
        assert chain[-1]["via"] == "traps" or chain[-1]["via"] == "TRAPS", render(chain)


class Cyclic:
    pass


def test_garbage_awaiting_collection_is_unreachable():
    gc.disable()
    try:
        a, b = Cyclic(), Cyclic()
        a.peer, b.peer = b, a
        del a, b
        r = referrers.referrers(type_name(Cyclic), limit=1)
    finally:
        gc.enable()
    assert r["ends"] == ["unreachable"]
    (chain,) = r["chains"]
    assert [(link["type"], link["via"]) for link in chain] == [
        (type_name(Cyclic), None), (type_name(Cyclic), "peer")], render(chain)


def test_unknown_type():
    r = referrers.referrers("no.such.Type")
    assert (r["instances"], r["sampled"], r["chains"], r["complete"]) == (0, 0, [], True)


RANGES = [range(i, i + 1_000_003) for i in range(40)]  # untracked: found through this list


def test_untracked_types_are_found_through_their_holders():
    # ranges, not ints: what other tests left on the heap holds ints in all sorts of places
    # (some in tuples the collector untracks between the scan and the chain)
    r = referrers.referrers("builtins.range", limit=3, budget_s=5.0)
    assert r["complete"] and r["instances"] >= len(RANGES) and r["sampled"] == 3
    ours = [c for c in r["chains"] if c[-1]["via"] == "RANGES"]
    assert ours, [render(c) for c in r["chains"]]
    for chain in ours:
        assert [(link["type"], link["via"] is not None) for link in chain] == [
            ("builtins.range", False), ("builtins.list", True), ("builtins.module", True)]
    ints = referrers.referrers("builtins.int", limit=2, budget_s=5.0)
    assert ints["complete"] and ints["instances"] > 100 and ints["sampled"] == 2


def test_the_budget_holds_inside_one_huge_container():
    # the referents of one list of millions are filtered a block at a time, the clock checked
    big = [[]] * 3_000_000  # noqa: F841 - on the heap while the search runs
    started = time.perf_counter()
    r = referrers.referrers("builtins.int", limit=2, budget_s=0.2)
    elapsed = time.perf_counter() - started
    assert r["complete"] is False
    assert elapsed < 0.8, elapsed  # was 1.3 s: the whole list walked between two clock checks


class Marker:
    pass


def test_a_tuple_being_built_is_neither_reported_nor_held():
    # tuple(iterable) in another thread: a tracked tuple with empty slots, resized in place when
    # the iterable ends, which fails (SystemError) if anything else still refers to it
    started, release = threading.Event(), threading.Event()
    results, errors = [], []

    class Slow:
        def __init__(self):
            self.n = 0

        def __iter__(self):
            return self

        def __length_hint__(self):
            return 100_000

        def __next__(self):
            self.n += 1
            if self.n == 1:
                return Marker()  # held by the tuple being built, nothing else
            started.set()
            release.wait(10)
            raise StopIteration

    def build():
        try:
            results.append(tuple(Slow()))
        except SystemError as exc:
            errors.append(exc)

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        r = referrers.referrers(type_name(Marker), limit=1)
        tuples = referrers.referrers("builtins.tuple", limit=20)
    finally:
        release.set()
        thread.join(10)
    assert errors == [] and len(results[0]) == 1
    assert r["ends"] == ["unreachable"] and len(r["chains"][0]) == 1, render(r["chains"][0])
    for chain in tuples["chains"]:
        assert "len=100000" not in chain[0]["repr"]


def test_host_threads_building_tuples_meanwhile_never_fail():
    errors, stop = [], threading.Event()

    def churn():
        while not stop.is_set():
            try:
                tuple(str(i) for i in range(30))
            except SystemError as exc:
                errors.append(exc)

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    calls = 0
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            referrers.referrers("builtins.dict", limit=3, budget_s=0.5)
            calls += 1
    finally:
        stop.set()
        thread.join(10)
    assert errors == [], "%d SystemErrors in %d searches" % (len(errors), calls)


def test_time_budget():
    r = referrers.referrers("builtins.dict", limit=50, depth=12, budget_s=0.0)
    assert r["complete"] is False
    assert r["elapsed_s"] < 1.0
    assert r["chains"] == []  # stopped before the first chain, and said so
