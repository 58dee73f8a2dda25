"""The ``snapshot.diff``, ``snapshot.suspects`` and ``heap.referrers`` ops: what grew between the
agent's snapshots, what grew at every step, and who holds instances of a type.

Snapshots are found by id among the file names in the agent's snapshot directory
(``snapshots.directory``); any snapshot there can be named (a baseline from an earlier run), but
the defaults ("the latest two", "the last ten") count only this process's own: those whose id
starts with its ``PID-TOKEN`` (``snapshots.instance()``), since a shared directory may hold other
processes' too, and earlier runs' with the same PID (a container's PID 1). The documents are
loaded from disk, never kept: an agent that answers questions about its host's heap must not
grow it.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from .ops import Args, BadArgs, Unavailable, _short, op

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_TYPE = re.compile(r"^[^\s\x00]{1,300}$")


def _float(a: Args, key: str, default: float, lo: float, hi: float) -> float:
    value = a.raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadArgs("%s: argument %r must be a number, got %s" % (a.op, key, _short(value)))
    if not lo <= value <= hi:
        raise BadArgs("%s: argument %r must be between %g and %g, got %g"
                      % (a.op, key, lo, hi, value))
    return float(value)


def _snapshot_id(a: Args, key: str) -> Optional[str]:
    value = a.raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise BadArgs("%s: argument %r must be a snapshot id such as "
                      "1234-0a1b2c3d-20250101T120000000000Z-1, got %s" % (a.op, key, _short(value)))
    return value


def _catalogue(agent: Any) -> Tuple[str, List[Dict[str, Any]]]:
    """The agent's snapshot directory and ``{"id", "instance", "path"}`` of each snapshot in it,
    oldest first, from the file names alone (list_dir would read every file once more);
    ``instance`` is the ``PID-TOKEN`` that took it (None for ids of earlier memtui versions)."""
    from . import snapshots  # noqa: PLC0415 - only the snapshot ops need it

    directory = snapshots.directory(agent)
    out = []
    for name in snapshots.snapshot_names(directory):
        out.append({"id": name[:-len(snapshots.SUFFIX)], "instance": snapshots.instance_of(name),
                    "path": os.path.join(directory, name)})
    return directory, out


def _own(metas: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """This process's snapshots: not another process's, nor an earlier run's with our PID."""
    from . import snapshots  # noqa: PLC0415

    me = snapshots.instance()
    return [m for m in metas if m["instance"] == me]


def _load(meta: Dict[str, Any]) -> Dict[str, Any]:
    """The parts of a snapshot document diff and suspects read (the rest is dropped at once).
    OSError (pruned meanwhile) or ValueError (not a usable snapshot: the message says why)."""
    from . import snapshots  # noqa: PLC0415

    doc = snapshots.load(meta["path"])
    census = doc.get("census") or {}
    trace = doc.get("tracemalloc")
    return {"id": doc.get("id", meta.get("id")), "pid": doc.get("pid"),
            "taken_at": doc.get("taken_at"), "process": doc.get("process"),
            "census": {"complete": census.get("complete"), "types": census.get("types")},
            "tracemalloc": {"by_line": trace.get("by_line")} if isinstance(trace, dict) else None}


@op("snapshot.diff", args=("a", "b", "limit"), slow=True)
def _snapshot_diff(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    """``a``/``b`` snapshot ids; no ``b``: this process's latest; no ``a``: the one before
    ``b`` among this process's snapshots. Each list is cut to ``limit`` rows."""
    first, second = _snapshot_id(a, "a"), _snapshot_id(a, "b")
    limit = a.int("limit", 1000, 1, 100_000)
    directory, metas = _catalogue(agent)
    by_id = {m["id"]: m for m in metas}
    own = _own(metas)
    for value in (first, second):
        if value is not None and value not in by_id:
            raise BadArgs("snapshot.diff: no snapshot %r in %s" % (value, directory))
    if first is None and second is not None and by_id[second] not in own:
        raise BadArgs("snapshot.diff: %r is another process's snapshot; name 'a' too" % second)
    if second is None:
        if not own:
            raise Unavailable("no snapshots of PID %d in %s yet; take one with `memtui snapshot "
                              "%d`" % (agent.pid, directory, agent.pid))
        second = own[-1]["id"]
    if first is None:
        ids = [m["id"] for m in own]
        before = ids[:ids.index(second)]
        if not before:
            raise Unavailable("snapshot.diff needs two snapshots; PID %d has only %s in %s"
                              % (agent.pid, second, directory))
        first = before[-1]
    if first == second:
        raise BadArgs("snapshot.diff: a and b are the same snapshot %r" % first)
    from . import heapdiff  # noqa: PLC0415 - loaded when first asked, not at agent start

    try:
        docs = [_load(by_id[first]), _load(by_id[second])]
    except (OSError, ValueError) as exc:  # pruned meanwhile, or damaged: say which
        raise Unavailable("snapshot.diff: cannot read a snapshot: %s" % exc) from None
    result = heapdiff.diff(*docs)
    for key in ("types", "sites"):
        rows = result.get(key)
        if rows is not None and len(rows) > limit:
            result[key + "_total"] = len(rows)
            result[key] = rows[:limit]
    result["directory"] = directory
    return result


@op("snapshot.suspects", args=("last", "min_snapshots"), slow=True)
def _snapshot_suspects(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    """Leak suspects across this process's ``last`` snapshots (default 10). ``skipped``: ones
    that could not be read; ``incomplete``: ones whose census hit its budget (their types are
    not compared; their sites are)."""
    from . import heapdiff  # noqa: PLC0415

    last = a.int("last", 10, 2, 100)
    min_snapshots = a.int("min_snapshots", heapdiff.MIN_SNAPSHOTS, 2, 100)
    directory, metas = _catalogue(agent)
    docs: List[Dict[str, Any]] = []
    skipped: List[Dict[str, str]] = []
    for meta in _own(metas)[-last:]:
        try:
            docs.append(_load(meta))
        except (OSError, ValueError) as exc:  # pruned meanwhile, or damaged: say which
            skipped.append({"id": meta["id"], "error": "%s: %s" % (type(exc).__name__, exc)})
    docs.sort(key=lambda d: d.get("taken_at") or 0)
    return {"suspects": heapdiff.suspects(docs, min_snapshots=min_snapshots),
            "snapshots": [d.get("id") for d in docs], "min_snapshots": min_snapshots,
            "directory": directory, "skipped": skipped,
            # a census cut short by its budget is not compared: say so, or "no suspects" lies
            "incomplete": [d.get("id") for d in docs if d["census"].get("complete") is False]}


@op("heap.referrers", args=("type", "limit", "depth", "budget_s"), slow=True)
def _heap_referrers(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    name = a.raw.get("type")
    if not isinstance(name, str) or not _TYPE.match(name):
        raise BadArgs("heap.referrers: argument 'type' must be a type name as the census shows "
                      "it (module.qualname, e.g. builtins.dict), got %s" % _short(name))
    limit = a.int("limit", 3, 1, 20)
    depth = a.int("depth", 6, 1, 20)
    budget_s = _float(a, "budget_s", 1.0, 0.01, 30.0)
    from . import referrers  # noqa: PLC0415

    return referrers.referrers(name, limit=limit, depth=depth, budget_s=budget_s)
