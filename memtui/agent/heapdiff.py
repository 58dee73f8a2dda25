"""What grew between heap snapshots: ``diff`` of two snapshot documents and leak ``suspects``
across several. Pure functions over the documents (dicts), used by the agent's ops and offline by
the CLI; standard library only. Documents come from disk and may be damaged or of another
version: rows that do not have the expected shape are skipped, never raised on.

A suspect is a type or an allocation site that grew at every step of a run of snapshots ending at
the latest one, each step to a new high over every earlier snapshot in the window. Growth counts
only above a noise floor (``grew``): the census, the sampler and the socket server allocate a
little between any two snapshots, and a steady process must show none.

Known false suspect: while the agent's own history ring fills (the first ``history`` samples,
600 by default: 10 minutes at a 1 s interval) each sample adds a 22-field row tuple, ~0.23 KiB,
and its ints and floats, ~0.1 KiB each (measured on tests/targets/leaks.py steady), so
builtins.tuple grows at every step by ~0.23 KiB per sample between snapshots: snapshots more
than ~18 samples apart can name it in those first minutes (and, further apart, builtins.int and
builtins.float); closer ones stay under ABS_FLOOR. The documents do not record how full the ring
is, so this module cannot discount it; snapshots taken once the ring is full are not affected.

With only ``min_snapshots`` snapshots, a type that wanders and happened to rise at every step
cannot be told from a leak either: the high-water and swing checks need history. More snapshots
in the window help (the agent looks at its last ten): for a type wandering at random between 60
and 98 objects, a false suspect in ~5% of windows of 3 (as before), ~0.5% of windows of 5, ~0%
of windows of 10 (~4-5% for all three when a step only had to beat the snapshot before it).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

# A step counts as growth when the bytes rose to a new high by at least
# max(ABS_FLOOR, REL_FLOOR * the high, SWING_FACTOR * the type's swing) and the count did not
# fall below its high (``grew``, ``_runs``). Measured on tests/targets/leaks.py steady: the most
# any type or site grows at every step is builtins.dict, ~1.1 KiB a snapshot (the snapshot's own
# event), plus ~100 B/s each of int and float while the 600-row history ring fills; ABS_FLOOR
# leaves 4x room over that and still names a leak of ~75 small objects a step. REL_FLOOR keeps the
# big builtin types of a large process (dict, str, tuple: megabytes that wobble by kilobytes with
# caches and interning) from being named for churn: they must grow 0.5% a step. The swing is
# the largest fall of the type's bytes seen in the window (``_swing``): a type that has wandered
# down by X (collections.deque of in-flight futures in the demo service, 60..100 of them) must
# climb by more than X per step to count, so its ups and downs are not taken for a leak; a leak
# never falls, so its swing is 0.
ABS_FLOOR = 4096
REL_FLOOR = 0.005
SWING_FACTOR = 1.0
MIN_SNAPSHOTS = 3  # "grew in each of the last three or more snapshots"

Table = Dict[Any, Tuple[int, int]]  # name -> (count, size)


def _get(doc: Any, key: str) -> Any:
    return doc.get(key) if isinstance(doc, dict) else None


def _ident(doc: Any) -> Any:
    ident = _get(doc, "id")
    return ident if ident is None or isinstance(ident, (str, int)) else str(ident)


def _whole(value: Any) -> Optional[int]:
    """A count or a size: a non-negative int (not a bool); None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _add(table: Table, key: Any, row: Dict[str, Any]) -> None:
    count, size = _whole(row.get("count")), _whole(row.get("size"))
    if count is None or size is None:
        return
    old = table.get(key, (0, 0))
    table[key] = (old[0] + count, old[1] + size)


def type_table(doc: Dict[str, Any]) -> Optional[Table]:
    """{type name: (count, size)} of a document's census; None when it has none. Rows without a
    str type name and int count and size are skipped."""
    census = _get(doc, "census")
    if not isinstance(census, dict) or not isinstance(census.get("types"), list):
        return None
    table: Table = {}
    for row in census["types"]:
        if isinstance(row, dict) and isinstance(row.get("type"), str):
            _add(table, row["type"], row)
    return table


def site_table(doc: Dict[str, Any]) -> Optional[Table]:
    """{(file, line): (count, size)} of a document's tracemalloc section; None unless traced.
    Rows without a str file and int line, count and size are skipped."""
    trace = _get(doc, "tracemalloc")
    if not isinstance(trace, dict) or not isinstance(trace.get("by_line"), list):
        return None
    table: Table = {}
    for row in trace["by_line"]:
        if isinstance(row, dict) and isinstance(row.get("file"), str) \
                and _whole(row.get("line")) is not None:
            _add(table, (row["file"], row["line"]), row)
    return table


def _rss(doc: Dict[str, Any]) -> Optional[int]:
    proc = _get(doc, "process")
    value = proc.get("rss") if isinstance(proc, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def taken_at(doc: Dict[str, Any]) -> Optional[float]:
    """When the snapshot was taken (epoch seconds); None when the document does not say."""
    value = _get(doc, "taken_at")
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value):
        return float(value)
    return None


def _changes(a: Table, b: Table) -> List[Tuple[Any, int, int, int, int]]:
    """(key, count, size, count_delta, size_delta) for every key whose figures changed, size
    delta descending (then count delta descending, then key)."""
    rows = []
    for key in set(a) | set(b):
        ca, sa = a.get(key, (0, 0))
        cb, sb = b.get(key, (0, 0))
        if ca != cb or sa != sb:
            rows.append((key, cb, sb, cb - ca, sb - sa))
    rows.sort(key=lambda r: (-r[4], -r[3], str(r[0])))
    return rows


def diff(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    """Growth from snapshot *a* to snapshot *b* (a baseline works the same): types always, sites
    only when both were traced, and the rss delta when both know their rss. A site missing from
    one side counts as zero there (documents keep the top 200 sites by size)."""
    ta, tb = type_table(a) or {}, type_table(b) or {}
    types = [{"type": k, "count": c, "size": s, "count_delta": dc, "size_delta": ds}
             for k, c, s, dc, ds in _changes(ta, tb)]
    sa, sb = site_table(a), site_table(b)
    sites = None
    if sa is not None and sb is not None:
        sites = [{"file": k[0], "line": k[1], "count": c, "size": s, "count_delta": dc,
                  "size_delta": ds} for k, c, s, dc, ds in _changes(sa, sb)]
    ra, rb = _rss(a), _rss(b)
    wa, wb = taken_at(a), taken_at(b)
    seconds = wb - wa if wa is not None and wb is not None else None
    return {"a": _ident(a), "b": _ident(b), "seconds": seconds,
            "rss_delta": rb - ra if ra is not None and rb is not None else None,
            "types": types, "sites": sites}


def grew(before: Tuple[int, int], after: Tuple[int, int], abs_floor: int = ABS_FLOOR,
         rel_floor: float = REL_FLOOR, swing: int = 0) -> bool:
    """Whether (count, size) *after* is growth over *before*, beyond the noise floor: the bytes
    rose by max(abs_floor, rel_floor * before's bytes, SWING_FACTOR * swing) and the count did
    not fall (one bytearray, array or list that only gets longer keeps its count). *before* is
    the high-water mark of the earlier snapshots (``_runs``), *swing* the type's own fall."""
    floor = max(abs_floor, rel_floor * before[1], SWING_FACTOR * swing)
    return after[0] >= before[0] and after[1] - before[1] >= floor


def _swing(tables: Sequence[Optional[Table]], key: Any) -> int:
    """The largest fall of *key*'s bytes from any snapshot to a later one in the window (None
    tables skipped): how far this type wanders on its own. 0 for one that only grows."""
    high, fall = None, 0
    for table in tables:
        if table is None:
            continue
        size = table.get(key, (0, 0))[1]
        if high is None or size > high:
            high = size
        else:
            fall = max(fall, high - size)
    return fall


def _runs(tables: Sequence[Optional[Table]], min_snapshots: int, abs_floor: int,
          rel_floor: float) -> Iterable[Tuple[Any, int, int]]:
    """(key, start index, steps) for each key that grew at every step from tables[start] to the
    last table, over at least ``min_snapshots`` tables. Each step must reach a new high: beyond
    the most bytes (and at least the most objects) of every earlier snapshot in the window, not
    only of the one before, so a type whose count wanders up and down (requests in flight) is
    not named when it happens to rise twice running. A None table (not traced, census cut
    short) ends a run: its figures cannot be compared."""
    last = len(tables) - 1
    if last < 0 or tables[last] is None:
        return
    for key in tables[last]:
        # highs[j]: the (most objects, most bytes) over the non-None tables before j
        highs: List[Optional[Tuple[int, int]]] = []
        top: Optional[Tuple[int, int]] = None
        for table in tables:
            highs.append(top)
            if table is not None:
                count, size = table.get(key, (0, 0))
                top = (count, size) if top is None else (max(top[0], count), max(top[1], size))
        swing = _swing(tables, key)
        i = last
        while i > 0:
            prev, high = tables[i - 1], highs[i]
            if prev is None or high is None or not grew(
                    high, tables[i].get(key, (0, 0)), abs_floor, rel_floor,  # type: ignore
                    swing):
                break
            i -= 1
            if key not in prev:
                break  # absent before: the run starts at zero and cannot reach further back
        steps = last - i
        if steps + 1 >= min_snapshots:
            yield key, i, steps


def _complete_census(doc: Dict[str, Any]) -> Optional[Table]:
    census = _get(doc, "census")
    if isinstance(census, dict) and census.get("complete") is False:
        return None  # a partial census undercounts by an unknown amount per type
    return type_table(doc)


def _trailing(tables: Sequence[Optional[Table]]) -> int:
    n = 0
    for table in reversed(tables):
        if table is None:
            break
        n += 1
    return n


def comparable(docs: Sequence[Dict[str, Any]]) -> int:
    """How many snapshots, counting back from the latest, ``suspects`` can compare: the longest
    unbroken run of complete censuses, or of traced ones, reaching the latest. Fewer than
    ``min_snapshots`` means no judgement was possible, which is not "no suspects"."""
    docs = list(docs)
    return max(_trailing([_complete_census(d) for d in docs]),
               _trailing([site_table(d) for d in docs]))


def suspects(docs: Sequence[Dict[str, Any]], min_snapshots: int = MIN_SNAPSHOTS,
             abs_floor: int = ABS_FLOOR, rel_floor: float = REL_FLOOR) -> List[Dict[str, Any]]:
    """Leak suspects in *docs* (oldest first): types and sites (``file:line``) whose bytes rose
    to a new high, without their count falling, at every step over the last ``min_snapshots``
    or more snapshots; bytes grown descending. Each reports its run: ``first`` and ``last``
    snapshot ids, ``steps``, and the count and size growth across it. See ``comparable`` for
    whether there were enough snapshots to judge at all."""
    docs = list(docs)
    min_snapshots = max(2, int(min_snapshots))
    if len(docs) < min_snapshots:
        return []
    out: List[Dict[str, Any]] = []
    for kind, tables in (("type", [_complete_census(d) for d in docs]),
                         ("site", [site_table(d) for d in docs])):
        for key, start, steps in _runs(tables, min_snapshots, abs_floor, rel_floor):
            first = tables[start].get(key, (0, 0))  # type: ignore[union-attr]
            now = tables[-1][key]  # type: ignore[index]
            out.append({
                "kind": kind,
                "name": key if kind == "type" else "%s:%d" % key,
                "size_delta": now[1] - first[1],
                "count_delta": now[0] - first[0],
                "size": now[1],
                "count": now[0],
                "steps": steps,
                "first": _ident(docs[start]),
                "last": _ident(docs[-1]),
            })
    out.sort(key=lambda s: (-s["size_delta"], -s["count_delta"], s["kind"], s["name"]))
    return out
