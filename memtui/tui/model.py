"""What the dashboard shows, as immutable data: one :class:`Sample` per poll of the agent.

No textual here: the feed thread builds samples and the panes only read them, so a sample can
cross threads without a lock and a pane can never change what another pane sees."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple


def freeze(obj: Any) -> Any:
    """A read-only deep copy of decoded JSON: dicts become mapping proxies, lists tuples."""
    if isinstance(obj, dict):
        return MappingProxyType({k: freeze(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return tuple(freeze(v) for v in obj)
    return obj


def thaw(obj: Any) -> Any:
    """A plain, mutable copy of a frozen value (for handing back to the client or a library)."""
    if isinstance(obj, Mapping):
        return {k: thaw(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [thaw(v) for v in obj]
    return obj


EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class History:
    """The agent's recorded samples, column-wise: ``column("rss")`` is every row's rss."""

    fields: Tuple[str, ...] = ()
    rows: Tuple[Tuple[Any, ...], ...] = ()

    def column(self, name: str) -> Tuple[Any, ...]:
        try:
            i = self.fields.index(name)
        except ValueError:
            return ()
        return tuple(row[i] for row in self.rows if i < len(row))

    def numbers(self, name: str) -> Tuple[float, ...]:
        """The column without gaps (a value the agent could not read is None)."""
        return tuple(float(v) for v in self.column(name) if isinstance(v, (int, float)))

    @property
    def last_seq(self) -> int:
        return int(self.rows[-1][0]) if self.rows and self.fields[:1] == ("seq",) else 0

    def extended(self, fields: Sequence[str], rows: Iterable[Sequence[Any]],
                 capacity: int) -> "History":
        """This history with *rows* appended (a new field list starts over), at most *capacity*."""
        fields = tuple(fields)
        kept = self.rows if fields == self.fields else ()
        merged = kept + tuple(tuple(r) for r in rows)
        return History(fields, merged[-capacity:] if capacity > 0 else merged)


@dataclass(frozen=True)
class Connection:
    """The feed's view of the link to the agent."""

    state: str = "connecting"  # connecting | live | lost
    message: str = ""
    since: float = 0.0  # time.time() of the last change
    attempts: int = 0
    retry_in: float = 0.0


@dataclass(frozen=True)
class Sample:
    """Everything one poll saw. Never mutated; the next poll makes a new one."""

    seq: int
    received: float  # time.time() when the poll finished
    poll_ms: float
    info: Mapping[str, Any]
    stats: Mapping[str, Any]
    history: History = field(default_factory=History)
    events: Tuple[Mapping[str, Any], ...] = ()  # every event kept so far, oldest first
    recommendations: Tuple[Mapping[str, Any], ...] = ()
    snapshot_status: Optional[Mapping[str, Any]] = None  # while a snapshot is being taken

    # conveniences for the panes ----------------------------------------------------------
    @property
    def pid(self) -> Optional[int]:
        pid = self.stats.get("pid") or self.info.get("pid")
        return int(pid) if isinstance(pid, int) else None

    def components(self, kind: Optional[str] = None) -> Dict[str, Mapping[str, Any]]:
        """name → stats of each component (of one *kind*: cache, pool, workers, batch ...)."""
        found = self.stats.get("components") or EMPTY
        return {name: entry.get("stats") or EMPTY for name, entry in found.items()
                if isinstance(entry, Mapping) and (kind is None or entry.get("kind") == kind)}

    def kinds(self) -> Dict[str, str]:
        found = self.stats.get("components") or EMPTY
        return {name: str(entry.get("kind", "custom")) for name, entry in found.items()
                if isinstance(entry, Mapping)}

    def recommendations_for(self, component: str) -> List[Mapping[str, Any]]:
        return [r for r in self.recommendations if r.get("component") == component]


def component_bytes(stats: Mapping[str, Any]) -> Optional[int]:
    """Memory a component says it holds, all tiers included (None when it does not say)."""
    total: Optional[int] = None
    if isinstance(stats.get("bytes"), (int, float)):
        total = int(stats["bytes"])
    for tier in (stats.get("tiers") or EMPTY).values():
        if isinstance(tier, Mapping) and isinstance(tier.get("bytes"), (int, float)) \
                and "path" not in tier:  # a cold tier is on disk, not in memory
            total = (total or 0) + int(tier["bytes"])
    return total

