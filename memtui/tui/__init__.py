"""The Textual dashboard. Only this package imports textual; ``MemtuiApp(client)`` is the app."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # lazy: importing memtui.tui.model must not load textual
    if name == "MemtuiApp":
        from .app import MemtuiApp

        return MemtuiApp
    raise AttributeError(name)
