"""The ``snapshot.take``, ``snapshot.status``, ``snapshot.list`` and ``heap.types`` ops.

``snapshot.take`` runs on the server's worker thread (it walks the whole heap); ``snapshot.status``
answers on the selector thread, so another connection can follow a take's progress. The snapshot
and census modules are imported on first use: an agent that never takes one never loads them.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

from .ops import Args, BadArgs, Busy, Unavailable, _short, op

REASONS = ("manual", "interval", "threshold")  # as snapshots.REASONS, without importing it


def _budget(a: Args) -> Optional[float]:
    """None when not given: the snapshot's own default (longer while tracing)."""
    value = a.raw.get("budget_s")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadArgs("%s: argument 'budget_s' must be a number of seconds, got %s"
                      % (a.op, _short(value)))
    if not 0.001 <= value <= 600:
        raise BadArgs("%s: argument 'budget_s' must be between 0.001 and 600, got %g"
                      % (a.op, value))
    return float(value)


@op("snapshot.take", args=("reason", "trace", "budget_s"), mutating=True, slow=True)
def _snapshot_take(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    reason = a.choice("reason", "manual", REASONS)
    trace: Optional[bool] = a.bool("trace", False) if "trace" in a.raw else None
    from . import snapshots  # noqa: PLC0415

    budget = _budget(a)
    if snapshots.status()["running"]:  # answered before spending a rate-limit token
        raise Busy("snapshot.take: " + snapshots._busy_message())
    a.gate()
    try:
        return snapshots.take(agent, reason=reason, trace=trace, budget_s=budget)
    except snapshots.SnapshotBusy as exc:
        raise Busy("snapshot.take: %s" % exc) from None
    except snapshots.SnapshotError as exc:  # already an error event; the reply says the same
        raise Unavailable("snapshot.take failed: %s" % exc) from None


@op("snapshot.status")
def _snapshot_status(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    from . import snapshots  # noqa: PLC0415

    return snapshots.status()


@op("snapshot.list", slow=True)  # reads every file in the directory
def _snapshot_list(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    from . import snapshots  # noqa: PLC0415

    where = snapshots.directory(agent)
    return {"directory": where, "snapshots": snapshots.list_dir(where),
            "retention": snapshots.retention(agent)}


@op("heap.types", args=("limit",), slow=True)
def _heap_types(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    limit = a.int("limit", 50, 1, 10_000)
    from . import census  # noqa: PLC0415

    return census.count_types(limit)
