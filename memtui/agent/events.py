"""A bounded, sequenced event log: alerts, actions and agent notices, read by ``events`` since a seq."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Optional

SEVERITIES = ("debug", "info", "warning", "error", "critical")  # error: an action that failed


class EventLog:
    def __init__(self, maxlen: int = 1000) -> None:
        self._lock = threading.Lock()
        self._items: Deque[Dict[str, Any]] = deque(maxlen=maxlen)
        self._seq = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    def emit(self, kind: str, severity: str, message: str, **data: Any) -> Dict[str, Any]:
        with self._lock:
            self._seq += 1
            event = {
                "seq": self._seq,
                "t": time.time(),
                "kind": kind,
                "severity": severity if severity in SEVERITIES else "info",
                "message": message,
                "data": data,
            }
            self._items.append(event)
        return event

    def since(self, seq: int = 0, limit: Optional[int] = None) -> Dict[str, Any]:
        """Events with seq > *seq*, oldest first; ``missed`` counts those already evicted."""
        with self._lock:
            items = [e for e in self._items if e["seq"] > seq]
            first = self._items[0]["seq"] if self._items else self._seq + 1
            last = self._seq
        missed = max(0, first - seq - 1) if seq < first else 0
        if limit is not None and len(items) > limit:
            items = items[:limit]
        return {"events": items, "last_seq": last, "missed": missed}
