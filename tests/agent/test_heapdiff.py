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
    shrinks_then_grows = series(grown(**{"app.R": up}), grown(**{"app.R": down}),
                                grown(**{"app.R": up}), grown(**{"app.R": (2000, 200_000)}))
    (s,) = heapdiff.suspects(shrinks_then_grows)
    assert (s["steps"], s["first"], s["count_delta"]) == (2, "100-s1", 1500)
    flat_step = series(grown(**{"app.R": (10, 1000)}), grown(**{"app.R": up}),
                       grown(**{"app.R": up}), grown(**{"app.R": (2000, 200_000)}))
    assert heapdiff.suspects(flat_step) == []
    longer = series(*[grown(**{"app.R": (i * 1000, i * 100_000)}) for i in range(1, 7)])
    (s,) = heapdiff.suspects(longer)
    assert (s["steps"], s["first"], s["size_delta"]) == (5, "100-s0", 500_000)


def test_count_and_size_must_both_grow():
    same_count = series(grown(**{"app.Buf": (10, 100_000)}), grown(**{"app.Buf": (10, 200_000)}),
                        grown(**{"app.Buf": (10, 300_000)}))  # a few buffers getting bigger
    assert heapdiff.suspects(same_count) == []
    same_size = series(grown(**{"app.X": (10, 100_000)}), grown(**{"app.X": (20, 100_000)}),
                       grown(**{"app.X": (30, 100_000)}))
    assert heapdiff.suspects(same_size) == []


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


@pytest.mark.parametrize("bad", [{}, {"census": None}, {"census": {"types": "x"}},
                                 {"census": {"types": [{"type": "a"}, "junk"]}}])
def test_malformed_documents_give_empty_tables_not_errors(bad):
    d = heapdiff.diff(bad, doc(1, BASE))
    assert {t["type"] for t in d["types"]} == set(BASE)
    assert heapdiff.suspects([bad, bad, bad]) == []
