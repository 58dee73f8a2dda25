"""Component registry: what the agent reports besides the process and the heap.

Components are held by weak reference so registering one never keeps it alive.
"""
from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import protocol

KINDS = ("cache", "pool", "workers", "batch", "custom")

try:  # typing.Protocol exists on every supported Python; keep the import cheap and optional
    from typing import Protocol, runtime_checkable
except ImportError:  # pragma: no cover
    Protocol = object  # type: ignore

    def runtime_checkable(cls):  # type: ignore
        return cls


@runtime_checkable
class Component(Protocol):
    """What a component offers. ``configure(values)`` and ``shrink(fraction) -> bytes_freed``
    are optional extras the agent uses when present."""

    name: str
    kind: str

    def stats(self) -> Dict[str, Any]: ...


class _Entry:
    __slots__ = ("name", "kind", "ref", "strong", "errors", "last_error", "last_ms")

    def __init__(self, name: str, kind: str, ref: Callable[[], Any], strong: Any) -> None:
        self.name = name
        self.kind = kind
        self.ref = ref
        self.strong = strong
        self.errors = 0
        self.last_error: Optional[str] = None
        self.last_ms = 0.0


class ComponentRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: Dict[str, _Entry] = {}
        self._dead: List[Any] = []
        # told (name, kind, component) when one is added, in the registering thread, so a
        # block can be configured before its constructor returns
        self.listeners: List[Callable[[str, str, Any], None]] = []

    def register(self, component: Any, name: Optional[str] = None, kind: Optional[str] = None,
                 strong: bool = False) -> str:
        """Register *component*; returns the name it is listed under (suffixed if taken).

        Raises TypeError when the object has no ``stats()`` or cannot be weakly referenced and
        ``strong`` was not asked for: failing loudly at registration beats leaking silently.
        """
        if not callable(getattr(component, "stats", None)):
            raise TypeError("a component needs a stats() method; got %r" % type(component).__name__)
        base = str(name or getattr(component, "name", None) or type(component).__name__)
        kind = str(kind or getattr(component, "kind", None) or "custom")
        if kind not in KINDS:
            kind = "custom"
        if strong:
            obj = component
            ref: Callable[[], Any] = lambda: obj  # noqa: E731
        else:
            try:
                ref = weakref.ref(component, self._on_dead)
            except TypeError:
                raise TypeError(
                    "%s objects cannot be weakly referenced; pass strong=True to keep it alive "
                    "explicitly" % type(component).__name__
                ) from None
        self._purge()
        with self._lock:
            for entry in list(self._entries.values()):
                if entry.ref() is component:
                    return entry.name
            unique, n = base, 1
            while unique in self._entries:
                n += 1
                unique = "%s#%d" % (base, n)
            self._entries[unique] = _Entry(unique, kind, ref, component if strong else None)
        for listener in list(self.listeners):
            try:
                listener(unique, kind, component)
            except Exception:
                pass
        return unique

    def unregister(self, component_or_name: Any) -> bool:
        with self._lock:
            for key, entry in list(self._entries.items()):
                if key == component_or_name or entry.ref() is component_or_name:
                    del self._entries[key]
                    return True
        return False

    def _on_dead(self, ref: Any) -> None:
        # Runs inside the GC, possibly while this thread holds self._lock: take no lock, only
        # note it (list.append is atomic) and let the next reader purge.
        self._dead.append(ref)

    def _purge(self) -> None:
        if not self._dead:
            return
        with self._lock:
            dead, self._dead = self._dead, []
            for key, entry in list(self._entries.items()):
                if entry.ref in dead or entry.ref() is None:
                    del self._entries[key]

    def __len__(self) -> int:
        self._purge()
        return len(self._entries)

    def names(self) -> List[str]:
        self._purge()
        with self._lock:
            return list(self._entries)

    def live(self) -> List[Tuple[_Entry, Any]]:
        self._purge()
        with self._lock:
            entries = list(self._entries.values())
        out = []
        for entry in entries:
            obj = entry.ref()
            if obj is not None:
                out.append((entry, obj))
        return out

    def get(self, name: str) -> Any:
        entry = self._entries.get(name)
        return entry.ref() if entry else None

    def collect(self) -> Dict[str, Dict[str, Any]]:
        """Every live component's stats. A component that raises is reported, never propagated."""
        out: Dict[str, Dict[str, Any]] = {}
        for entry, obj in self.live():
            t0 = time.perf_counter()
            try:
                stats = obj.stats()
                if not isinstance(stats, dict):
                    raise TypeError("stats() returned %s, not dict" % type(stats).__name__)
                if not protocol.is_flat_json(stats):
                    # made safe here, per component: one odd value (a cycle, a 10**5000, an
                    # object whose str() raises) must not break the whole reply
                    stats = protocol.json_safe(stats, max_nodes=2000)
                item: Dict[str, Any] = {"kind": entry.kind, "stats": stats}
            except Exception as exc:  # a broken component must not break the agent
                entry.errors += 1
                entry.last_error = "%s: %s" % (type(exc).__name__, exc)
                item = {"kind": entry.kind, "stats": {}, "error": entry.last_error}
            entry.last_ms = (time.perf_counter() - t0) * 1000.0
            if entry.errors:
                item["errors"] = entry.errors
            out[entry.name] = item
        return out

    def maintain(self) -> Dict[str, str]:
        """Give every component with a ``maintain()`` its periodic tick (idle cleanup, scaling);
        returns {name: error} for those that raised, which never propagate."""
        errors: Dict[str, str] = {}
        for entry, obj in self.live():
            tick = getattr(obj, "maintain", None)
            if not callable(tick):
                continue
            try:
                tick()
            except Exception as exc:
                errors[entry.name] = "%s: %s" % (type(exc).__name__, exc)
        return errors

    def clone(self) -> "ComponentRegistry":
        """A registry with the same entries and fresh locks, for a forked child."""
        new = ComponentRegistry()
        for key, entry in list(self._entries.items()):
            obj = entry.ref()
            if obj is None:
                continue
            if entry.strong is not None:
                new._entries[key] = _Entry(key, entry.kind, entry.ref, entry.strong)
            else:
                new._entries[key] = _Entry(key, entry.kind, weakref.ref(obj, new._on_dead), None)
        return new
