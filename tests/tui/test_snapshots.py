"""Layout snapshots of every pane at 80×24 and 120×40 (pytest-textual-snapshot), with the
recorded fake agent, a frozen clock, UTC and a fixed copy of the profiles, so that a change in
what the screen shows is a reviewed change (`pytest --snapshot-update`, then look at the SVGs)."""
from __future__ import annotations

from pathlib import Path

import pytest

from memtui.tui.app import PANES, MemtuiApp

from .fake_client import FakeClient
from .pilot import FROZEN, wait_for

PROFILES = Path(__file__).parent / "data" / "profiles"
SIZES = [(80, 24), (120, 40)]


@pytest.fixture(autouse=True)
def fixed_world(no_memtui_env):
    """UTC (the conftest's) and none of the developer's MEMTUI* settings."""


def _app():
    return MemtuiApp(FakeClient(), clock=lambda: FROZEN, profiles=str(PROFILES),
                     command="python -m memtui.demo.service")


async def _settled(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: app.last_sample is not None, what="first sample")
    app.feed.set_paused(True)  # nothing changes under the camera
    await pilot.pause(0.3)
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)


def _then(keys):
    async def run_before(pilot):
        await _settled(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.1)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.2)
    return run_before


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
@pytest.mark.parametrize("pane", [p.PANE_ID for p in PANES])
def test_pane_layout(snap_compare, pane, size):
    key = next(p.KEY for p in PANES if p.PANE_ID == pane)
    assert snap_compare(_app(), terminal_size=size, run_before=_then([key]))


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
def test_help_layout(snap_compare, size):
    assert snap_compare(_app(), terminal_size=size, run_before=_then(["question_mark"]))
