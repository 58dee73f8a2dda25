"""A small multi-row bar chart of one series, labelled with its latest value, range and span —
readable at 80×24 where a one-line sparkline says little."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual.reactive import reactive
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"


def resample(values: Sequence[float], width: int) -> Tuple[float, ...]:
    """At most *width* points; each the largest of the values it stands for (peaks survive)."""
    if width <= 0 or not values:
        return ()
    if len(values) <= width:
        return tuple(values)
    out = []
    step = len(values) / width
    for i in range(width):
        chunk = values[int(i * step):max(int((i + 1) * step), int(i * step) + 1)]
        out.append(max(chunk))
    return tuple(out)


def bar_rows(values: Sequence[float], height: int, low: float, high: float) -> Tuple[str, ...]:
    """*height* lines of block characters, top line first, one column per value."""
    if height <= 0:
        return ()
    span = high - low
    flat = height * 8 if high > 0 else 0  # a constant series: full if it holds something
    eighths = [flat if span <= 0 else
               max(1, round((v - low) / span * height * 8)) for v in values]
    rows = []
    for level in range(height - 1, -1, -1):
        base = level * 8
        rows.append("".join(BLOCKS[max(0, min(8, e - base))] for e in eighths))
    return tuple(rows)


class ChartRenderable:
    def __init__(self, values: Sequence[float], height: int, style: str,
                 axis: Callable[[float], str]) -> None:
        self.values = values
        self.height = height
        self.style = Style.parse(style)
        self.axis = axis

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        if not self.values:
            for i in range(self.height):
                yield Segment("no data yet" if i == self.height // 2 else "", Style(dim=True))
                yield Segment.line()
            return
        low, high = min(self.values), max(self.values)
        label_w = max(len(self.axis(high)), len(self.axis(low))) + 1
        points = resample(self.values, max(1, width - label_w))
        rows = bar_rows(points, self.height, low * 0.98 if low > 0 else low, high)
        dim = Style(dim=True)
        for i, row in enumerate(rows):
            label = self.axis(high) if i == 0 else self.axis(low) if i == len(rows) - 1 else ""
            yield Segment(label.rjust(label_w - 1) + " ", dim)
            yield Segment(row, self.style)
            yield Segment.line()


class Graph(Widget):
    """``Graph(title, fmt)``; set ``.series`` (a tuple of numbers) to redraw."""

    DEFAULT_CSS = """
    Graph { height: 6; border: round $panel-lighten-2; border-title-style: bold; }
    """

    series: reactive[Tuple[float, ...]] = reactive(tuple, layout=False)
    caption: reactive[str] = reactive("")

    def __init__(self, title: str, fmt: Callable[[float], str], style: str = "green",
                 *, id: Optional[str] = None, classes: Optional[str] = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.fmt = fmt
        self.bar_style = style

    def render(self) -> ChartRenderable:
        return ChartRenderable(self.series, max(1, self.content_size.height), self.bar_style,
                               self.fmt)

    def watch_series(self) -> None:
        self.border_title = self._title_text()

    def watch_caption(self) -> None:
        self.border_title = self._title_text()

    def _title_text(self) -> str:
        if not self.series:
            return self.title
        return "%s %s%s" % (self.title, self.fmt(self.series[-1]),
                            ("  " + self.caption) if self.caption else "")
