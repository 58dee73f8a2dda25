"""What grew between heap snapshots: ``diff`` of two snapshot documents and leak ``suspects``
across several. Pure functions over the documents (dicts), used by the agent's ops and offline by
the CLI; standard library only.

A suspect is a type or an allocation site that grew at every step of a run of snapshots ending at
the latest one. Growth counts only above a noise floor (``grew``): the census, the sampler and the
socket server allocate a little between any two snapshots, and a steady process must show none.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

# A step counts as growth when the count went up AND the bytes went up by at least
# max(ABS_FLOOR, REL_FLOOR * the bytes before). Measured on tests/targets/leaks.py steady: the
# most any type or site grows at every step is builtins.dict, ~1.1 KiB a snapshot (the snapshot's
# own event), plus ~100 B/s each of int and float while the 600-row history ring fills; ABS_FLOOR
# leaves 4x room over that and still names a leak of ~75 small objects a step. REL_FLOOR keeps the
# big builtin types of a large process (dict, str, tuple: megabytes that wobble by kilobytes with
# caches and interning) from being named for churn: they must grow 0.5% a step.
ABS_FLOOR = 4096
REL_FLOOR = 0.005
MIN_SNAPSHOTS = 3  # "grew in each of the last three or more snapshots"

Table = Dict[Any, Tuple[int, int]]  # name -> (count, size)


def _ident(doc: Dict[str, Any]) -> Any:
    return doc.get("id")


def type_table(doc: Dict[str, Any]) -> Optional[Table]:
    """{type name: (count, size)} of a document's census; None when it has none."""
    census = doc.get("census")
    if not isinstance(census, dict) or not isinstance(census.get("types"), list):
        return None
    table: Table = {}
    for row in census["types"]:
        try:
            name, count, size = row["type"], int(row["count"]), int(row["size"])
        except (KeyError, TypeError, ValueError):
            continue
        old = table.get(name, (0, 0))
        table[name] = (old[0] + count, old[1] + size)
    return table


def site_table(doc: Dict[str, Any]) -> Optional[Table]:
    """{(file, line): (count, size)} of a document's tracemalloc section; None unless traced."""
    trace = doc.get("tracemalloc")
    if not isinstance(trace, dict) or not isinstance(trace.get("by_line"), list):
        return None
    table: Table = {}
    for row in trace["by_line"]:
        try:
            key = (str(row["file"]), int(row["line"]))
            count, size = int(row["count"]), int(row["size"])
        except (KeyError, TypeError, ValueError):
            continue
        old = table.get(key, (0, 0))
        table[key] = (old[0] + count, old[1] + size)
    return table


def _rss(doc: Dict[str, Any]) -> Optional[int]:
    proc = doc.get("process")
    value = proc.get("rss") if isinstance(proc, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
    seconds = None
    try:
        seconds = float(b["taken_at"]) - float(a["taken_at"])
    except (KeyError, TypeError, ValueError):
        pass
    return {"a": _ident(a), "b": _ident(b), "seconds": seconds,
            "rss_delta": rb - ra if ra is not None and rb is not None else None,
            "types": types, "sites": sites}


def grew(before: Tuple[int, int], after: Tuple[int, int], abs_floor: int = ABS_FLOOR,
         rel_floor: float = REL_FLOOR) -> bool:
    """Whether (count, size) *after* is growth over *before*, beyond the noise floor."""
    return after[0] > before[0] and after[1] - before[1] >= max(abs_floor, rel_floor * before[1])


def _runs(tables: Sequence[Optional[Table]], min_snapshots: int, abs_floor: int,
          rel_floor: float) -> Iterable[Tuple[Any, int, int]]:
    """(key, start index, steps) for each key that grew at every step from tables[start] to the
    last table, over at least ``min_snapshots`` tables. A None table (not traced, census cut
    short) ends a run: its figures cannot be compared."""
    last = len(tables) - 1
    if last < 0 or tables[last] is None:
        return
    for key in tables[last]:
        i = last
        while i > 0:
            prev = tables[i - 1]
            if prev is None or not grew(prev.get(key, (0, 0)), tables[i][key],  # type: ignore
                                        abs_floor, rel_floor):
                break
            i -= 1
            if key not in prev:
                break  # absent before: the run starts at zero and cannot reach further back
        steps = last - i
        if steps + 1 >= min_snapshots:
            yield key, i, steps


def _complete_census(doc: Dict[str, Any]) -> Optional[Table]:
    census = doc.get("census")
    if isinstance(census, dict) and census.get("complete") is False:
        return None  # a partial census undercounts by an unknown amount per type
    return type_table(doc)


def suspects(docs: Sequence[Dict[str, Any]], min_snapshots: int = MIN_SNAPSHOTS,
             abs_floor: int = ABS_FLOOR, rel_floor: float = REL_FLOOR) -> List[Dict[str, Any]]:
    """Leak suspects in *docs* (oldest first): types and sites (``file:line``) that grew, count
    and bytes, at every step over the last ``min_snapshots`` or more snapshots; bytes grown
    descending. Each reports its run: ``first`` and ``last`` snapshot ids, ``steps``, and the
    count and size growth across it."""
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
