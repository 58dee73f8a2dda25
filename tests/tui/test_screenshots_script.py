"""scripts/screenshots.py: its pane loop and its SVG -> PNG step, on the recorded fake agent at
80×24 (the real demo run is `make screenshots`)."""
from __future__ import annotations

import asyncio
import importlib.util
import re
import struct
import sys

import pytest

from memtui.tui.app import MemtuiApp

from .fake_client import FakeClient
from .pilot import FROZEN

from conftest import ROOT

spec = importlib.util.spec_from_file_location("screenshots_script",
                                              ROOT / "scripts" / "screenshots.py")
shots = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
spec.loader.exec_module(shots)


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "%s is not a PNG" % path
    return struct.unpack(">II", data[16:24])


def svg_size(svg):
    width, height = re.search(r'viewBox="0 0 ([0-9.]+) ([0-9.]+)"', svg).groups()
    return round(float(width)), round(float(height))


def test_png_svg_swaps_the_font_and_refuses_an_svg_without_it():
    svg = '<style>.r1 { font-family: Fira Code, monospace; }</style>'
    assert shots.png_svg(svg) == '<style>.r1 { font-family: "DejaVu Sans Mono"; }</style>'
    with pytest.raises(shots.ScreenshotError, match="Fira Code"):
        shots.png_svg('<style>.r1 { font-family: Menlo; }</style>')


def test_pane_loop_writes_svg_and_png_and_closes_screens(tmp_path):
    app = MemtuiApp(FakeClient(), clock=lambda: FROZEN, interval=0.25)
    lines = []
    overview = shots.PANES[0]
    todo = [shots.Shot("one", ((overview.KEY,),)),
            shots.Shot("help", (("question_mark",),), screen=True),
            shots.Shot("after-help", ((overview.KEY,),))]
    errors = asyncio.run(shots.shoot(app, todo, (80, 24), tmp_path, lines.append))
    assert errors == []
    assert lines == ["one.png", "help.png", "after-help.png"]
    for name in ("one", "help", "after-help"):
        svg = (tmp_path / (name + ".svg")).read_text()
        assert shots.TEXTUAL_FONT in svg  # the SVG on disk stays as Textual wrote it
        assert png_size(tmp_path / (name + ".png")) == svg_size(svg)
    assert "memtui keys" in shots.screen_text((tmp_path / "help.svg").read_text())
    # the help screen was closed again: the next picture is the dashboard
    after = shots.screen_text((tmp_path / "after-help.svg").read_text())
    assert "memtui keys" not in after and "PID 14607" in after


def test_a_step_that_opens_no_screen_is_reported_and_the_rest_still_taken(tmp_path):
    app = MemtuiApp(FakeClient(), clock=lambda: FROZEN, interval=0.25)
    overview = shots.PANES[0]
    todo = [shots.Shot("nothing", ((overview.KEY,),), screen=True, settle_s=0.5),
            shots.Shot("one", ((overview.KEY,),))]
    errors = asyncio.run(shots.shoot(app, todo, (80, 24), tmp_path, lambda line: None))
    assert len(errors) == 1 and "nothing: 1 opened no screen" in errors[0]
    assert not (tmp_path / "nothing.png").exists()
    assert (tmp_path / "one.png").exists()
