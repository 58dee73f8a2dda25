"""heapdiff.diff and heapdiff.suspects over hand-built snapshot documents."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytest

from memtui.agent import heapdiff

KiB = 1024


def doc(n: int, types: Dict[str, Tuple[int, int]],
        sites: Optional[Dict[Tuple[str, int], Tuple[int, int]]] = None, rss: Optional[int] = None,
        complete: bool = True) -> Dict[str, Any]:
    """A snapshot document with just what diff and suspects read."""
    return {
        "format": "memtui-snapshot", "version": 1, "id": "100-s%d" % n, "pid": 100,
        "taken_at": 1000.0 + 10 * n, "reason": "manual",
        "process": {"rss": rss} if rss is not None else {},
        "census": {"complete": complete,
                   "types": [{"type": k, "count": c, "size": s} for k, (c, s) in types.items()]},
        "tracemalloc": None if sites is None else {
            "frames": 1, "traced": 0, "peak": 0,
            "by_line": [{"file": f, "line": ln, "count": c, "size": s}
                        for (f, ln), (c, s) in sites.items()],
            "by_traceback": []},
    }


def series(*steps: Dict[str, Tuple[int, int]], **kw: Any) -> List[Dict[str, Any]]:
    return [doc(i, t, **kw) for i, t in enumerate(steps)]


BASE = {"builtins.dict": (5000, 2_000_000), "builtins.function": (3000, 400_000),
        "builtins.tuple": (8000, 500_000)}


def grown(**extra: Tuple[int, int]) -> Dict[str, Tuple[int, int]]:
    out = dict(BASE)
    out.update(extra)
    return out


# diff -------------------------------------------------------------------------------------------
def test_diff_ranks_growth_by_bytes_and_keeps_only_changed_entries():
    a = doc(0, grown(**{"app.Request": (100, 5600), "app.Gone": (10, 480)}), rss=50_000_000)
    b = doc(1, grown(**{"app.Request": (1100, 61600), "app.Session": (20, 96_000),
                        "builtins.dict": (5001, 2_000_100)}), rss=52_000_000)
    d = heapdiff.diff(a, b)
    assert (d["a"], d["b"], d["seconds"], d["rss_delta"]) == ("100-s0", "100-s1", 10.0, 2_000_000)
    assert [t["type"] for t in d["types"]] == ["app.Session", "app.Request", "builtins.dict",
                                               "app.Gone"]
    req = d["types"][1]
    assert req == {"type": "app.Request", "count": 1100, "size": 61600, "count_delta": 1000,
                   "size_delta": 56000}
    assert d["types"][-1] == {"type": "app.Gone", "count": 0, "size": 0, "count_delta": -10,
                              "size_delta": -480}
    assert d["sites"] is None  # neither was traced


def test_diff_sites_only_when_both_snapshots_were_traced():
    s0 = {("app.py", 10): (10, 1000), ("app.py", 20): (5, 500)}
    s1 = {("app.py", 10): (110, 11000), ("app.py", 20): (5, 500), ("lib.py", 3): (1, 64)}
    traced = heapdiff.diff(doc(0, BASE, s0), doc(1, BASE, s1))
    assert traced["types"] == []
    assert traced["sites"] == [
        {"file": "app.py", "line": 10, "count": 110, "size": 11000, "count_delta": 100,
         "size_delta": 10000},
        {"file": "lib.py", "line": 3, "count": 1, "size": 64, "count_delta": 1, "size_delta": 64}]
    assert heapdiff.diff(doc(0, BASE), doc(1, BASE, s1))["sites"] is None
    assert heapdiff.diff(doc(0, BASE, s0), doc(1, BASE))["sites"] is None
    assert heapdiff.diff(doc(0, BASE), doc(1, BASE))["rss_delta"] is None


# suspects ---------------------------------------------------------------------------------------
def test_types_growing_at_every_step_are_suspects_ranked_by_bytes():
    docs = series(grown(**{"app.Request": (1000, 56_000), "app.Small": (100, 10_000)}),
                  grown(**{"app.Request": (2000, 112_000), "app.Small": (200, 20_000)}),
                  grown(**{"app.Request": (3000, 168_000), "app.Small": (300, 30_000)}))
    found = heapdiff.suspects(docs)
    assert [(s["kind"], s["name"]) for s in found] == [("type", "app.Request"),
                                                       ("type", "app.Small")]
    assert found[0] == {"kind": "type", "name": "app.Request", "size_delta": 112_000,
                        "count_delta": 2000, "size": 168_000, "count": 3000, "steps": 2,
                        "first": "100-s0", "last": "100-s2"}


def test_a_new_type_counts_from_zero():
    docs = series(BASE, grown(**{"app.New": (100, 8000)}), grown(**{"app.New": (200, 16000)}))
    (s,) = heapdiff.suspects(docs)
    assert (s["name"], s["steps"], s["first"], s["size_delta"]) == ("app.New", 2, "100-s0", 16000)


def test_fewer_snapshots_than_asked_for_give_no_suspects():
    docs = series(grown(**{"app.R": (1, 10_000)}), grown(**{"app.R": (2, 20_000)}))
    assert heapdiff.suspects(docs) == []
    assert [s["name"] for s in heapdiff.suspects(docs, min_snapshots=2)] == ["app.R"]


def test_growth_must_reach_the_last_snapshot_unbroken():
    up, down = (1000, 100_000), (500, 50_000)
    grows_then_shrinks = series(grown(**{"app.R": (10, 1000)}), grown(**{"app.R": up}),
                                grown(**{"app.R": (2000, 200_000)}), grown(**{"app.R": down}))
    assert heapdiff.suspects(grows_then_shrinks) == []
    # after a fall the run starts again, and must climb past the earlier high by the fall
    shrinks_then_grows = series(grown(**{"app.R": up}), grown(**{"app.R": down}),
                                grown(**{"app.R": (1500, 150_000)}),
                                grown(**{"app.R": (2000, 200_000)}))
    (s,) = heapdiff.suspects(shrinks_then_grows)
    assert (s["steps"], s["first"], s["count_delta"]) == (2, "100-s1", 1500)
    flat_step = series(grown(**{"app.R": (10, 1000)}), grown(**{"app.R": up}),
                       grown(**{"app.R": up}), grown(**{"app.R": (2000, 200_000)}))
    assert heapdiff.suspects(flat_step) == []
    longer = series(*[grown(**{"app.R": (i * 1000, i * 100_000)}) for i in range(1, 7)])
    (s,) = heapdiff.suspects(longer)
    assert (s["steps"], s["first"], s["size_delta"]) == (5, "100-s0", 500_000)


def test_each_step_must_reach_a_new_high_over_the_whole_window():
    # collections.deque of in-flight futures in the demo service: 60..100 of them, up and down.
    # The last three rise at every step, but never past what the window already saw.
    wander = [98, 70, 95, 62, 66, 74, 90]
    docs = series(*[grown(**{"collections.deque": (n, n * 632)}) for n in wander])
    assert heapdiff.suspects(docs) == []
    assert heapdiff.suspects(docs[-3:]) != []  # three alone cannot tell it from a leak
    # once past every earlier high (and by more than it ever fell) it is named
    docs += series(*[grown(**{"collections.deque": (n, n * 632)}) for n in (140, 180)])
    (s,) = heapdiff.suspects(docs)
    assert (s["name"], s["steps"], s["first"]) == ("collections.deque", 2, "100-s6")


def test_a_type_that_wanders_must_climb_past_its_own_swing():
    # fell by 40 KiB once in the window: new highs of +8 KiB a step are within its range
    sizes = [200_000, 160_000, 200_500, 208_500, 216_500, 224_500]
    docs = series(*[grown(**{"app.Conn": (100, s)}) for s in sizes])
    assert heapdiff.suspects(docs) == []
    # the same steps with no fall before them are a leak
    assert [s["name"] for s in heapdiff.suspects(docs[2:])] == ["app.Conn"]
    # and steps larger than the fall are a leak despite it
    big = series(*[grown(**{"app.Conn": (100, s)}) for s in
                   (200_000, 160_000, 250_000, 300_000, 350_000)])
    (s,) = heapdiff.suspects(big)
    assert (s["steps"], s["first"]) == (3, "100-s1")


def test_bytes_must_grow_and_the_count_must_not_fall():
    # one buffer, array or list that only gets longer: the count stays flat, the bytes grow
    same_count = series(grown(**{"app.Buf": (10, 100_000)}), grown(**{"app.Buf": (10, 200_000)}),
                        grown(**{"app.Buf": (10, 300_000)}))
    (s,) = heapdiff.suspects(same_count)
    assert (s["name"], s["count_delta"], s["size_delta"], s["steps"]) == ("app.Buf", 0, 200_000,
                                                                          2)
    one_bytearray = series(*[grown(**{"builtins.bytearray": (1, 57 + 200_000 * i)})
                             for i in range(3)])
    assert [s["name"] for s in heapdiff.suspects(one_bytearray)] == ["builtins.bytearray"]
    same_size = series(grown(**{"app.X": (10, 100_000)}), grown(**{"app.X": (20, 100_000)}),
                       grown(**{"app.X": (30, 100_000)}))
    assert heapdiff.suspects(same_size) == []
    fewer_but_bigger = series(grown(**{"app.X": (30, 100_000)}), grown(**{"app.X": (20, 200_000)}),
                              grown(**{"app.X": (10, 300_000)}))
    assert heapdiff.suspects(fewer_but_bigger) == []
    # a flat count still has to clear the noise floor at every step
    creeping = series(*[grown(**{"app.Buf": (10, 100_000 + 1000 * i)}) for i in range(4)])
    assert heapdiff.suspects(creeping) == []


def test_noise_floor_absolute_and_relative():
    # +2 KiB a step: the agent's own events and history rows look like this
    small = series(*[grown(**{"app.Tiny": (10 + i, 1000 + 2 * KiB * i)}) for i in range(4)])
    assert heapdiff.suspects(small) == []
    # a big builtin type that wobbles up by 0.2% a step (8 KiB of 4 MB) is churn, not a leak
    wobble = series(*[{"builtins.dict": (40_000 + 10 * i, 4_000_000 + 8 * KiB * i)}
                      for i in range(4)])
    assert heapdiff.suspects(wobble) == []
    # the same type growing 1% a step is reported
    leak = series(*[{"builtins.dict": (40_000 + 400 * i, 4_000_000 + 40_000 * i)}
                    for i in range(4)])
    assert [s["name"] for s in heapdiff.suspects(leak)] == ["builtins.dict"]
    # the floor is a parameter, for offline use on a quieter or noisier process
    assert [s["name"] for s in heapdiff.suspects(small, abs_floor=1024)] == ["app.Tiny"]
    # exactly at the floor counts
    at_floor = series(*[{"app.Edge": (i + 1, 4096 * (i + 1))} for i in range(3)])
    assert [s["name"] for s in heapdiff.suspects(at_floor)] == ["app.Edge"]


def test_a_steady_series_has_no_suspects():
    docs = series(*[grown(**{"app.Item": (2000, 112_000 + (i % 2) * 56)}) for i in range(5)])
    assert heapdiff.suspects(docs) == []


def test_sites_are_suspects_only_across_traced_snapshots():
    leak = [("app.py", 42), ("lib.py", 7)]

    def sites(i: int) -> Dict[Tuple[str, int], Tuple[int, int]]:
        return {leak[0]: (1000 * i, 64_000 * i), leak[1]: (10 * i, 5000 * i),
                ("app.py", 99): (5, 500)}

    traced = [doc(i, BASE, sites(i + 1)) for i in range(3)]
    found = heapdiff.suspects(traced)
    assert [(s["kind"], s["name"]) for s in found] == [("site", "app.py:42"), ("site", "lib.py:7")]
    assert found[0]["size_delta"] == 128_000 and found[0]["steps"] == 2
    # an untraced snapshot in the middle breaks the run: its sites are unknown, not zero
    middle_untraced = [doc(0, BASE, sites(1)), doc(1, BASE), doc(2, BASE, sites(3)),
                       doc(3, BASE, sites(4))]
    assert heapdiff.suspects(middle_untraced) == []
    assert [s["first"] for s in heapdiff.suspects(middle_untraced, min_snapshots=2)] == [
        "100-s2", "100-s2"]


def test_types_and_sites_rank_together_by_bytes():
    docs = [doc(i, grown(**{"app.R": (1000 * (i + 1), 50_000 * (i + 1))}),
                {("app.py", 1): (1000 * (i + 1), 80_000 * (i + 1))}) for i in range(3)]
    assert [(s["kind"], s["name"]) for s in heapdiff.suspects(docs)] == [
        ("site", "app.py:1"), ("type", "app.R")]


def test_an_incomplete_census_breaks_a_type_run():
    docs = [doc(i, grown(**{"app.R": (1000 * (i + 1), 50_000 * (i + 1))}),
                complete=(i != 1)) for i in range(4)]
    assert heapdiff.suspects(docs) == []
    assert [s["first"] for s in heapdiff.suspects(docs, min_snapshots=2)] == ["100-s2"]


@pytest.mark.parametrize("bad,has_types", [
    ({}, False), ({"census": None}, False), ({"census": {"types": "x"}}, False),
    ({"census": {"types": [{"type": "a"}, "junk"]}}, True), ([], False), ("x", False),
    (None, False)])
def test_malformed_documents_give_empty_tables_not_errors(bad, has_types):
    d = heapdiff.diff(bad, doc(1, BASE))
    assert {t["type"] for t in d["types"]} == set(BASE) and d["seconds"] is None
    assert heapdiff.suspects([bad, bad, bad]) == []
    # a types list of junk rows is an empty census, still comparable; no census is not
    assert heapdiff.comparable([bad, bad]) == (2 if has_types else 0)


ODD_ROWS = [{"type": ["a"], "count": 1, "size": 10},  # unhashable name
            {"type": {"x": 1}, "count": 1, "size": 10}, {"type": 7, "count": 1, "size": 10},
            {"type": "app.S", "count": "12", "size": 10}, {"type": "app.S", "count": 1},
            {"type": "app.B", "count": True, "size": 10}, {"type": "app.N", "count": -1, "size": 1},
            {"type": "app.F", "count": 1, "size": 1.5}, ["app.L", 1, 10], None]


def test_odd_rows_of_another_version_are_skipped():
    docs = [doc(i, grown(**{"app.R": (1000 * (i + 1), 50_000 * (i + 1))})) for i in range(3)]
    for d in docs:
        d["census"]["types"][:0] = ODD_ROWS
        d["tracemalloc"] = {"by_line": [{"file": ["x"], "line": 1, "count": 1, "size": 1},
                                        {"file": "a.py", "line": "x", "count": 1, "size": 1},
                                        {"file": "a.py", "line": True, "count": 1, "size": 1},
                                        "junk"]}
    docs[1]["taken_at"] = "2025-01-01T00:00:00"
    d = heapdiff.diff(docs[0], docs[2])
    assert [t["type"] for t in d["types"]] == ["app.R"] and d["sites"] == []
    assert heapdiff.diff(docs[0], docs[1])["seconds"] is None
    assert [s["name"] for s in heapdiff.suspects(docs)] == ["app.R"]
    assert heapdiff.type_table(docs[0]) == dict(BASE, **{"app.R": (1000, 50_000)})


def test_comparable_counts_back_from_the_latest_unbroken_snapshots():
    full = [doc(i, BASE) for i in range(4)]
    assert heapdiff.comparable(full) == 4 and heapdiff.comparable([]) == 0
    cut = [doc(i, BASE, complete=(i != 1)) for i in range(4)]
    assert heapdiff.comparable(cut) == 2
    assert heapdiff.comparable(cut[:2]) == 0
    # a traced run reaches past a cut census: its sites are still compared
    traced = [doc(i, BASE, {("a.py", 1): (i, 100 * i)}, complete=(i != 1)) for i in range(4)]
    assert heapdiff.comparable(traced) == 4
