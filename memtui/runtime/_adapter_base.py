"""What every watch() adapter shares: the counters its hooks update, weak holding of the watched
object, the stats-shape filler and the instance attributes that shadow a method (and their undoing).
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Dict

from ._stats import SHAPES, LatencyWindow, RateMeter


class _Counts:
    """Counters shared by an adapter and the hooks it installed; updated under ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits = self.misses = self.size = self.expired = self.explicit = self.replaced = 0
        self.setting = self.popping = 0
        self.submitted = self.completed = self.failed = self.cancelled = self.rejected = 0
        self.puts = self.gets = self.waiting = 0
        self.created = self.destroyed = self.invalidated = self.checkouts = self.timeouts = 0
        self.latency = LatencyWindow(512)
        self.rate = RateMeter()


class _Adapter:
    kind = "custom"

    def __init__(self, obj: Any, name: str) -> None:
        self.name = name
        self._ref = weakref.ref(obj)
        self.counts = _Counts()

    def target(self) -> Any:
        return self._ref()

    def stats(self) -> Dict[str, Any]:
        obj = self._ref()
        return self.read(obj) if obj is not None else {}

    def read(self, obj: Any) -> Dict[str, Any]:
        raise NotImplementedError

    def detach(self, obj: Any) -> None:
        """Undo what attach did (default: nothing was attached)."""


def _shape(kind: str, **values: Any) -> Dict[str, Any]:
    """Every key of the kind's shape (None unless given) plus the extras given."""
    out: Dict[str, Any] = dict.fromkeys(SHAPES[kind])
    out.update(values)
    return out


def _mro_has(obj: Any, module: str, name: str) -> bool:
    return any(c.__module__.split(".")[0] == module and c.__name__ == name
               for c in type(obj).__mro__)


def _shadow(obj: Any, attr: str, wrapper: Callable[..., Any]) -> None:
    wrapper.__name__ = attr
    wrapper.__wrapped__ = getattr(type(obj), attr)  # type: ignore[attr-defined]
    obj.__dict__[attr] = wrapper


def _unshadow(obj: Any, *attrs: str) -> None:
    for attr in attrs:
        obj.__dict__.pop(attr, None)

