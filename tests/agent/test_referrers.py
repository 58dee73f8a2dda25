"""referrers: chains from sample instances up to a module global, a class attribute or a frame."""
from __future__ import annotations

import gc

from memtui.agent import referrers
from memtui.agent.referrers import type_name


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
    only_here = OnlyLocal()  # noqa: F841 - found through this frame
    r = referrers.referrers(type_name(OnlyLocal), limit=1)
    assert r["ends"] == ["frame"]
    (chain,) = r["chains"]
    assert chain[-1]["type"] == "builtins.frame" and chain[-1]["via"] == "only_here"
    assert chain[-1]["repr"].startswith("frame test_a_local_variable_of_a_running_frame at "
                                        "test_referrers.py:")


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


def test_untracked_types_are_found_through_their_holders():
    r = referrers.referrers("builtins.int", limit=2, budget_s=2.0)
    assert r["sampled"] == 2 and r["complete"]
    assert all(len(chain) >= 2 for chain in r["chains"])


def test_time_budget():
    r = referrers.referrers("builtins.dict", limit=50, depth=12, budget_s=0.0)
    assert r["complete"] is False
    assert r["elapsed_s"] < 1.0
    assert r["chains"] == []  # stopped before the first chain, and said so
