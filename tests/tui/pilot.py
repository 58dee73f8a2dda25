"""Small helpers for driving the dashboard in tests (Textual's Pilot, no pytest-asyncio)."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

FROZEN = 1795299350.0  # the clock every deterministic dashboard test runs with


async def wait_for(pilot: Any, condition: Callable[[], Any], timeout: float = 10.0,
                   what: str = "condition") -> Any:
    """Let the app run until *condition()* is truthy; fail with *what* after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        await pilot.pause(0.02)


def run(app: Any, body: Callable[[Any], Awaitable[None]], size: tuple = (120, 40)) -> None:
    """Run *app* headless at *size* and await ``body(pilot)`` inside it."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await body(pilot)

    asyncio.run(main())


def screen_text(app: Any) -> str:
    """Everything the app's current screen shows, as plain text (from its SVG export)."""
    import re
    from html import unescape

    svg = app.export_screenshot()
    rows = {}
    for y, chunk in re.findall(r'<text[^>]*y="([0-9.]+)"[^>]*>([^<]*)</text>', svg):
        rows.setdefault(float(y), []).append(unescape(chunk).replace("\xa0", " "))
    return "\n".join("".join(parts) for _, parts in sorted(rows.items()))
