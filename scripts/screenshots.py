"""`make screenshots`: the dashboard attached to the real demo service, saved as SVG and PNG in
screenshots/ — every pane, the help screen, a cache's detail and a heap diff at 120×40, and the
Overview at 80×24.

Usage: .venv/bin/python scripts/screenshots.py [--out DIR] [--samples N] [--only NAME ...]

The demo runs with tracemalloc on and collects N samples of history first, so graphs and heap
tables have something to show. Every step waits for a condition (a fresh sample on the pane,
the agent actions it started finished, its tables filled); the one fixed pause lets the demo's
leak grow between the heap baseline and its diff. The demo is always stopped, however the
script ends."""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from memtui import paths  # noqa: E402
from memtui.client import AgentClient, process_name  # noqa: E402
from memtui.demo import DemoProcess  # noqa: E402
from memtui.tui.app import PANES, MemtuiApp  # noqa: E402

# Textual's SVG asks for Fira Code; cairosvg has no web fonts and ignores textLength, so with a
# fallback font the block characters of the graphs drift apart. DejaVu Sans Mono is a local
# monospace font with those glyphs.
TEXTUAL_FONT = "font-family: Fira Code, monospace;"
PNG_FONT = 'font-family: "DejaVu Sans Mono";'
SIZE = (120, 40)
SMALL = (80, 24)
FIRST_SAMPLE_S = 20.0
SETTLE_S = 20.0  # longest wait for a pane's data before its picture is taken anyway
SNAPSHOT_S = 90.0  # a heap snapshot with tracing on takes a while in a busy process


class ScreenshotError(Exception):
    """A picture could not be taken as asked: says which and why."""


@dataclass(frozen=True)
class Shot:
    """One picture: press each group of *steps* in turn (settling after each), then save
    *name*.svg/.png. *screen*: the last step opens a screen over the dashboard (closed after).
    *gap_s*: let the demo run this long before the last step (a diff then has growth to show)."""

    name: str
    steps: Tuple[Tuple[str, ...], ...]
    screen: bool = False
    settle_s: float = SETTLE_S
    gap_s: float = 0.0


def pane_shots() -> List[Shot]:
    shots = [Shot("%d-%s" % (i + 1, pane.PANE_ID), ((pane.KEY,),)) for i, pane in
             enumerate(PANES)]
    n = len(shots)
    keys = {pane.PANE_ID: pane.KEY for pane in PANES}
    shots.append(Shot("%d-help" % (n + 1), ((PANES[0].KEY,), ("question_mark",)), screen=True))
    shots.append(Shot("%d-cache-detail" % (n + 2), ((keys["caches"],), ("enter",)), screen=True))
    # b takes the baseline snapshot, d a second one and opens the diff against it
    shots.append(Shot("%d-heap-diff" % (n + 3), ((keys["heap"],), ("b",), ("d",)), screen=True,
                      settle_s=SNAPSHOT_S, gap_s=10.0))
    return shots


def small_shots() -> List[Shot]:
    overview = PANES[0]
    return [Shot("%s-%dx%d" % (overview.PANE_ID, SMALL[0], SMALL[1]), ((overview.KEY,),))]


# SVG -> PNG ----------------------------------------------------------------------------------
def png_svg(svg: str) -> str:
    """The SVG as cairosvg should draw it (see TEXTUAL_FONT)."""
    if TEXTUAL_FONT not in svg:
        raise ScreenshotError("the SVG does not declare %r any more (a new Textual?): the PNG "
                              "would be drawn with a misaligned fallback font" % TEXTUAL_FONT)
    return svg.replace(TEXTUAL_FONT, PNG_FONT)


def svg_to_png(svg: str, png: Path) -> None:
    import cairosvg  # noqa: PLC0415 - a dev dependency, only needed here

    cairosvg.svg2png(bytestring=png_svg(svg).encode("utf-8"), write_to=str(png))


def save(app: Any, name: str, out: Path) -> Path:
    title = "memtui  %s" % name
    svg = app.export_screenshot(title=title)
    text = screen_text(svg)
    if "Traceback" in text:
        raise ScreenshotError("%s: a traceback is on screen:\n%s" % (name, text))
    (out / (name + ".svg")).write_text(svg, encoding="utf-8")
    png = out / (name + ".png")
    svg_to_png(svg, png)
    return png


def screen_text(svg: str) -> str:
    """The characters of an exported screen, row by row (enough to look for a traceback)."""
    rows: dict = {}
    for y, chunk in re.findall(r'<text[^>]*y="([0-9.]+)"[^>]*>([^<]*)</text>', svg):
        rows.setdefault(float(y), []).append(unescape(chunk).replace("\xa0", " "))
    return "\n".join("".join(parts) for _, parts in sorted(rows.items()))


# waiting -------------------------------------------------------------------------------------
async def wait_until(pilot: Any, condition: Callable[[], Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await pilot.pause(0.05)
    return True


def actions_running(app: Any) -> bool:
    """Agent actions (heap tables, snapshots ...) still out, or a snapshot being followed."""
    busy = any(w.group == "agent-action" and not w.is_finished for w in app.workers)
    return busy or bool(app.feed is not None and app.feed.want_snapshot_status)


def empty_tables(app: Any) -> List[str]:
    """Visible tables on the current screen (the active pane's, on the dashboard) with no row."""
    from textual.widgets import DataTable  # noqa: PLC0415

    root = app.active_pane if len(app.screen_stack) == 1 else app.screen
    if root is None:
        return []
    return ["#%s" % (t.id or type(t).__name__) for t in root.query(DataTable)
            if t.display and t.visible and t.row_count == 0]


async def settle(pilot: Any, app: Any, timeout: float) -> List[str]:
    """Wait for a sample newer than now to be shown, the actions to finish and the tables to
    fill. Returns what was still missing when *timeout* ran out (empty: all there)."""
    seq = app.last_sample.seq if app.last_sample is not None else 0
    deadline = time.monotonic() + timeout
    await wait_until(pilot, lambda: app.last_sample is not None and app.last_sample.seq > seq,
                     timeout)
    left = max(0.5, deadline - time.monotonic())
    done = await wait_until(pilot, lambda: not actions_running(app) and not empty_tables(app),
                            left)
    await pilot.pause(0.2)  # let the last refresh paint
    if done:
        return []
    return (["agent actions still running"] if actions_running(app) else []) + [
        "%s empty" % t for t in empty_tables(app)]


async def close_screens(pilot: Any, app: Any) -> None:
    for _ in range(5):
        if len(app.screen_stack) == 1:
            return
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(app.screen_stack) == 1, 2.0)


async def take(pilot: Any, app: Any, shot: Shot, out: Path) -> Tuple[Path, List[str]]:
    missing: List[str] = []
    for i, keys in enumerate(shot.steps):
        last = i == len(shot.steps) - 1
        if last and shot.gap_s:
            await pilot.pause(shot.gap_s)
        depth = len(app.screen_stack)
        await pilot.press(*keys)
        if last and shot.screen:
            if not await wait_until(pilot, lambda: len(app.screen_stack) > depth, shot.settle_s):
                raise ScreenshotError("%s: %s opened no screen within %.0f s"
                                      % (shot.name, "+".join(keys), shot.settle_s))
        missing = await settle(pilot, app, shot.settle_s)
    png = save(app, shot.name, out)
    if shot.screen:
        await close_screens(pilot, app)
    return png, missing


async def shoot(app: Any, shots: Sequence[Shot], size: Tuple[int, int], out: Path,
                report: Callable[[str], None]) -> List[str]:
    """Run *app* headless at *size* and take *shots*; returns the errors (empty: all taken)."""
    errors: List[str] = []
    async with app.run_test(size=size) as pilot:
        if not await wait_until(pilot, lambda: app.last_sample is not None, FIRST_SAMPLE_S):
            raise ScreenshotError("the dashboard had no sample from the agent after %.0f s (%s)"
                                  % (FIRST_SAMPLE_S, app.connection.message or
                                     app.connection.state))
        for shot in shots:
            try:
                png, missing = await take(pilot, app, shot, out)
            except ScreenshotError as exc:
                errors.append(str(exc))
                report("FAILED %s" % exc)
                await close_screens(pilot, app)
                continue
            report("%s%s" % (png.name, "  (taken anyway: %s)" % ", ".join(missing)
                             if missing else ""))
    return errors


# the demo ------------------------------------------------------------------------------------
def wait_for_history(client: AgentClient, samples: int, timeout: float) -> int:
    """Until the agent's history holds *samples* rows (so the graphs are full)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = len(client.history().get("rows") or ())
        if rows >= samples or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def make_app(client: AgentClient) -> MemtuiApp:
    """The app as `memtui attach PID` builds it (refreshing twice a second)."""
    pid = client.pid or 0
    return MemtuiApp(client, interval=0.5, command=process_name(pid), target=str(pid))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/screenshots.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "screenshots"), help="where to write")
    ap.add_argument("--samples", type=int, default=60,
                    help="history samples to wait for before the first picture (0.5 s each)")
    ap.add_argument("--only", nargs="*", metavar="NAME", help="only these pictures (names as "
                    "written, without .png: 1-overview, overview-80x24 ...)")
    args = ap.parse_args(argv)
    big, small = pane_shots(), small_shots()
    if args.only:
        known = {s.name for s in big + small}
        unknown = sorted(set(args.only) - known)
        if unknown:
            ap.error("no picture named %s; there are: %s" % (", ".join(unknown),
                                                            ", ".join(sorted(known))))
        big = [s for s in big if s.name in args.only]
        small = [s for s in small if s.name in args.only]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    def report(line: str) -> None:
        print("  " + line, flush=True)

    os.chdir(ROOT)  # the demo reads ./profiles, as `memtui demo` run from the repository does
    errors: List[str] = []
    with tempfile.TemporaryDirectory(prefix="memtui-shots-") as rd:
        os.chmod(rd, 0o700)
        env = dict(os.environ, MEMTUI_RUNTIME_DIR=rd)
        env.pop("MEMTUI_DISABLE", None)
        with DemoProcess(["--interval", "0.5", "--exit-with-parent"], env=env) as demo:
            path = paths.socket_path(demo.pid, rd)
            with AgentClient(pid=demo.pid, path=path) as client:
                client.trace_start()  # the Heap pane's allocation sites
                print("demo PID %d: collecting %d samples of history ..."
                      % (demo.pid, args.samples), flush=True)
                rows = wait_for_history(client, args.samples, timeout=args.samples * 0.5 + 30)
                print("  %d samples; taking pictures into %s" % (rows, out), flush=True)
            for shots, size in ((big, SIZE), (small, SMALL)):
                if not shots:
                    continue
                client = AgentClient(pid=demo.pid, path=path).connect()
                try:
                    errors += asyncio.run(shoot(make_app(client), shots, size, out, report))
                except ScreenshotError as exc:  # no picture at this size could be taken
                    errors.append(str(exc))
                finally:
                    client.close()
    if errors:
        print("screenshots: %d picture(s) failed:\n  %s" % (len(errors), "\n  ".join(errors)),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
