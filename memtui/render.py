"""Pure functions turning agent replies (`hello`, `stats`, `gc.collect`, `heap.top`) into rich
renderables, plus the small Live loop shared by `stats --follow`, `run` and `demo`."""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

LEVEL_STYLE = {"ok": "green", "warning": "yellow", "critical": "bold red"}
# Stats shown first for each component kind; the rest fill up to MAX_COMPONENT_STATS.
KEY_STATS = {
    "cache": ("entries", "size", "hit_rate", "hits", "misses", "evictions", "bytes"),
    "pool": ("size", "in_use", "idle", "waiters", "timeouts"),
    "workers": ("active", "queued", "completed", "failed", "latency_ms"),
    "batch": ("pending", "batches", "batch_size", "latency_ms"),
}
MAX_COMPONENT_STATS = 5
MIN_WIDTH = {"pid": 7, "rss": 10, "uptime": 7, "python": 7}


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return "%d %s" % (value, unit) if unit == "B" else "%.1f %s" % (value, unit)
        value /= 1024.0
    return "-"  # unreachable: the loop always returns


def fmt_pct(p: Optional[float]) -> str:
    return "-" if p is None else "%.1f%%" % p


def fmt_ms(ms: Optional[float]) -> str:
    if ms is None:
        return "-"
    return "%.0f µs" % (ms * 1000.0) if ms < 1.0 else "%.1f ms" % ms


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return "%.1fs" % seconds if seconds < 10 else "%ds" % s
    if s < 3600:
        return "%dm%02ds" % (s // 60, s % 60)
    if s < 86400:
        return "%dh%02dm" % (s // 3600, s % 3600 // 60)
    return "%dd%02dh" % (s // 86400, s % 86400 // 3600)


def fmt_value(key: str, value: Any) -> str:
    """One component stat, formatted by what its name says it is."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (int, float)):
        if key.endswith("bytes"):
            return fmt_bytes(value)
        if key.endswith("_ms"):
            return fmt_ms(value)
        if key.endswith("rate") or key.endswith("ratio"):
            return fmt_pct(value * 100.0) if value <= 1.0 else "%.1f" % value
        return "%.2f" % value if isinstance(value, float) else str(value)
    if isinstance(value, dict):  # e.g. evictions by cause: only what happened, "size 137 expired 4"
        shown = ["%s %s" % (k, fmt_value(k, v)) for k, v in value.items()
                 if v not in (0, None, {}, "") and not isinstance(v, dict)]
        return ("(" + " ".join(shown) + ")") if shown else "0"
    text = str(value)
    return text if len(text) <= 24 else text[:23] + "…"


def key_stats(kind: str, stats: Mapping[str, Any]) -> List[str]:
    preferred = [k for k in KEY_STATS.get(kind, ()) if k in stats]
    rest = [k for k in stats if k not in preferred and not isinstance(stats[k], (dict, list))]
    return (preferred + rest)[:MAX_COMPONENT_STATS]


def short_command(command: Any, width: Optional[int] = None) -> str:
    """A command line to show: on one line, its program by name only (``python3.11 app.py``,
    not ``/root/.pyenv/versions/3.11.7/bin/python3.11 app.py``) so that what tells processes
    apart survives a narrow column; cut to *width* characters with an ellipsis."""
    words = str(command or "").split()
    if words and "/" in words[0].rstrip("/"):
        words[0] = words[0].rstrip("/").rsplit("/", 1)[1]
    line = " ".join(words)
    if width is not None and len(line) > width:
        line = line[:width - 1] + "…"
    return line


def header_text(info: Mapping[str, Any], command: str = "") -> Text:
    py = info.get("python") or {}
    text = Text()
    text.append("PID %s" % info.get("pid", "?"), style="bold")
    if command:
        text.append("  " + short_command(command, 60), style="cyan")
    text.append("  env %s  Python %s  agent %s" % (info.get("env", "?"), py.get("version", "?"),
                                                    info.get("agent_version", "?")))
    return text


def _kv_table(title: str, rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def process_table(stats: Mapping[str, Any]) -> Table:
    p = stats.get("process") or {}
    m = stats.get("memory") or {}
    level = str(m.get("level", "ok"))
    return _kv_table("Process", [
        ("RSS", fmt_bytes(p.get("rss"))), ("RSS peak", fmt_bytes(p.get("rss_peak"))),
        ("USS", fmt_bytes(p.get("uss"))), ("PSS", fmt_bytes(p.get("pss"))),
        ("VMS", fmt_bytes(p.get("vms"))), ("swap", fmt_bytes(p.get("swap"))),
        ("threads", str(p.get("threads", "-"))), ("fds", str(p.get("fds", "-"))),
        ("limit", "%s (%s)" % (fmt_bytes(m.get("limit")), m.get("limit_source", "?"))),
        ("used", Text("%s %s" % (fmt_pct(m.get("percent")), level),
                      style=LEVEL_STYLE.get(level, ""))),
        ("uptime", fmt_duration(stats.get("uptime"))),
    ])


def heap_table(stats: Mapping[str, Any]) -> Table:
    heap = stats.get("heap") or {}
    gc_ = heap.get("gc") or {}
    tm = heap.get("tracemalloc") or {}
    pause = gc_.get("pause_ms") or {}
    table = Table(title="Heap", title_justify="left", box=None, padding=(0, 2))
    for name in ("gc", "count", "threshold", "collections", "collected", "uncollectable",
                 "max pause"):
        table.add_column(name, justify="left" if name == "gc" else "right")
    n = lambda key, i: str((gc_.get(key) or [None] * 3)[i])  # noqa: E731
    for gen in range(3):
        table.add_row("gen %d" % gen, n("counts", gen), n("thresholds", gen), n("collections", gen),
                      n("collected", gen), n("uncollectable", gen),
                      fmt_ms((pause.get("max") or [None] * 3)[gen]))
    state = "on" if gc_.get("enabled", True) else "DISABLED"
    table.caption = "gc %s · pause last %s · p95 %s · garbage %s · " % (
        state, fmt_ms(pause.get("last")), fmt_ms(pause.get("p95")), gc_.get("garbage", 0))
    if tm.get("tracing"):
        table.caption += "tracemalloc %s (peak %s, %s frame(s))" % (
            fmt_bytes(tm.get("current")), fmt_bytes(tm.get("peak")), tm.get("frames"))
    else:
        table.caption += "tracemalloc off"
    table.caption_justify = "left"
    return table


def components_table(stats: Mapping[str, Any]) -> RenderableType:
    comps: Mapping[str, Any] = stats.get("components") or {}
    if not comps:
        return Text("No components registered.", style="dim")
    table = Table(title="Components", title_justify="left", box=None, padding=(0, 2))
    table.add_column("name", style="bold")
    table.add_column("kind")
    table.add_column("stats")
    for name, item in sorted(comps.items()):
        kind = str(item.get("kind", "custom"))
        values = item.get("stats") or {}
        shown = Text("  ".join("%s %s" % (k, fmt_value(k, values[k]))
                               for k in key_stats(kind, values)))
        if item.get("error"):
            shown = Text("error: %s" % item["error"], style="red")
        table.add_row(name, kind, shown)
    return table


def health_text(stats: Mapping[str, Any]) -> Optional[RenderableType]:
    """``health 75/100`` and one line per open alert (critical first), or None without a score."""
    health = stats.get("health")
    if not isinstance(health, Mapping) or health.get("score") is None:
        return None
    score = int(health["score"])
    style = "green" if score >= 90 else ("yellow" if score >= 60 else "bold red")
    lines = [Text.assemble(("health %d/100" % score, style))]
    for alert in stats.get("alerts") or []:
        sev = str(alert.get("severity", "warning"))
        lines.append(Text("  %s: %s" % (sev, alert.get("message", "")),
                          style=LEVEL_STYLE.get(sev, "")))
    return Group(*lines)


def stats_view(stats: Mapping[str, Any], info: Optional[Mapping[str, Any]] = None,
               command: str = "") -> RenderableType:
    parts: List[RenderableType] = []
    if info:
        parts.append(header_text(info, command))
    health = health_text(stats)
    if health is not None:
        parts.append(health)
    parts += [process_table(stats), heap_table(stats), components_table(stats)]
    return Group(*parts)


def _command_cell(command: Any) -> Text:
    """A command cell, cut with an ellipsis rather than wrapped when the column shrinks."""
    return Text(short_command(command) or "?", no_wrap=True, overflow="ellipsis")


def ps_tables(agents: Sequence[Mapping[str, Any]], others: Sequence[Mapping[str, Any]]) -> Group:
    table = Table(title="Agents", title_justify="left", box=None, padding=(0, 2))
    for name in ("pid", "command", "rss", "env", "python", "uptime"):
        # Only the command may shrink; the figures keep their width however long it is.
        table.add_column(name, justify="right" if name in ("pid", "rss", "uptime") else "left",
                         no_wrap=name != "command",
                         min_width=None if name == "command" else MIN_WIDTH.get(name, 6))
    for a in agents:
        if a.get("error"):
            table.add_row(str(a["pid"]), _command_cell(a.get("command")),
                          Text(a["error"], style="red"), "", "", "")
        else:
            table.add_row(str(a["pid"]), _command_cell(a.get("command")), fmt_bytes(a.get("rss")),
                          str(a.get("env", "?")), str(a.get("python", "?")),
                          fmt_duration(a.get("uptime")))
    parts: List[RenderableType] = [table if agents else Text("No agents running.", style="dim")]
    if others:
        other = Table(title="Python processes without an agent", title_justify="left", box=None,
                      padding=(0, 2))
        other.add_column("pid", justify="right", no_wrap=True, min_width=MIN_WIDTH["pid"])
        other.add_column("command")
        other.add_column("rss", justify="right", no_wrap=True, min_width=MIN_WIDTH["rss"])
        other.add_column("agent", no_wrap=True)
        for o in others:
            state = Text("dormant (%s)" % o["dormant"], style="yellow") if o.get("dormant") \
                else Text("none", style="dim")
            other.add_row(str(o["pid"]), _command_cell(o.get("command")), fmt_bytes(o.get("rss")),
                          state)
        parts.append(other)
    return Group(*parts)


def gc_text(pid: int, result: Mapping[str, Any]) -> Text:
    return Text("gc.collect(%s) in PID %d: %s unreachable objects in %s; RSS %s → %s (%s freed)" % (
        result.get("generation"), pid, result.get("collected"), fmt_ms(result.get("duration_ms")),
        fmt_bytes(result.get("rss_before")), fmt_bytes(result.get("rss_after")),
        fmt_bytes(max(0, result.get("rss_freed") or 0))))


def heap_top_table(result: Mapping[str, Any]) -> Table:
    table = Table(title="Top allocation sites (tracemalloc)", title_justify="left", box=None,
                  padding=(0, 2))
    table.add_column("site", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("count", justify="right")
    table.add_column("avg", justify="right")
    for e in result.get("entries") or []:
        site = e.get("file", "?") + (":%s" % e["line"] if e.get("line") is not None else "")
        table.add_row(site, fmt_bytes(e.get("size")), str(e.get("count")), fmt_bytes(e.get("avg")))
    table.caption = "%s sites, %s in %s blocks" % (result.get("sites"),
                                                  fmt_bytes(result.get("total_size")),
                                                  result.get("total_count"))
    table.caption_justify = "left"
    return table


# the external view (memtui.attach.external: figures of a process without an agent) -------------
MAPPING_LABELS = {"heap": "heap", "anon": "anonymous", "stack": "stacks", "files": "files",
                  "other": "other"}
MAPPING_COLUMNS = ("count", "size", "rss", "pss", "swap", "private")
NARROW_MAPPING_COLUMNS = ("count", "rss", "private")  # for an 80-column dashboard
TOP_CHILDREN = 5


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


def external_banner(fig: Mapping[str, Any]) -> Text:
    """What an external view lacks and how to get it (memtui.attach.external.missing_text)."""
    from .attach.external import missing_text  # noqa: PLC0415 - psutil-free, loads nothing

    return Text(missing_text(int(fig.get("pid") or 0), fig.get("python")), style="yellow")


def external_header(fig: Mapping[str, Any]) -> Text:
    """``PID 123  command  Python 3.11  user root  up 3m02s`` (no agent: no env, no version)."""
    text = Text()
    text.append("PID %s" % fig.get("pid", "?"), style="bold")
    command = short_command(fig.get("command"), 40)
    if command:
        text.append("  " + command, style="cyan")
    python = fig.get("python")
    if python:
        text.append("  Python %s" % python)
    else:
        text.append("  Python ?" if "python" in (fig.get("unavailable") or {}) else
                    "  no Python found")
    if fig.get("username"):
        text.append("  user %s" % fig["username"])
    started, now = fig.get("create_time"), fig.get("time")
    if isinstance(started, (int, float)) and isinstance(now, (int, float)):
        text.append("  up %s" % fmt_duration(now - started))
    return text


def external_process_rows(fig: Mapping[str, Any]) -> List[Sequence[str]]:
    p = fig.get("process") or {}
    children = p.get("children")
    kids = _count(children)
    if children:
        kids += " (%s)" % fmt_bytes(p.get("children_rss"))
    return [("RSS", fmt_bytes(p.get("rss"))), ("RSS peak", fmt_bytes(p.get("rss_peak"))),
            ("USS", fmt_bytes(p.get("uss"))), ("PSS", fmt_bytes(p.get("pss"))),
            ("VMS", fmt_bytes(p.get("vms"))), ("swap", fmt_bytes(p.get("swap"))),
            ("threads", _count(p.get("threads"))), ("fds", _count(p.get("fds"))),
            ("children", kids)]


def external_process_table(fig: Mapping[str, Any], title: Optional[str] = "Process") -> Table:
    return _kv_table(title or "", external_process_rows(fig))


def mappings_table(fig: Mapping[str, Any], columns: Sequence[str] = MAPPING_COLUMNS,
                   title: Optional[str] = "Mappings") -> RenderableType:
    """One row per class of mapping (heap, anonymous, stacks, files, other) and their total;
    the reason instead when /proc/PID/smaps could not be read."""
    maps = fig.get("mappings")
    if not isinstance(maps, Mapping):
        why = (fig.get("unavailable") or {}).get("mappings") or "not read"
        return Text("Mappings: %s." % why, style="dim")
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1),
                  show_footer=True)
    table.add_column("mappings", "total", style="bold", footer_style="bold", no_wrap=True,
                     min_width=9)
    totals = {c: sum(int((m or {}).get(c) or 0) for m in maps.values()) for c in columns}
    for c in columns:
        table.add_column(c, str(totals[c]) if c == "count" else fmt_bytes(totals[c]),
                         justify="right", no_wrap=True)
    for name, label in MAPPING_LABELS.items():
        m = maps.get(name) or {}
        table.add_row(label, *(_count(m.get(c)) if c == "count" else fmt_bytes(m.get(c))
                               for c in columns))
    return table


def children_table(fig: Mapping[str, Any], limit: int = TOP_CHILDREN) -> Optional[Table]:
    """The largest children (recursive) by RSS, or None without children."""
    children = list(fig.get("children") or ())[:limit]
    if not children:
        return None
    total = (fig.get("process") or {}).get("children") or len(children)
    table = Table(title="Children (%d, largest first)" % total, title_justify="left",
                  box=None, padding=(0, 1))
    table.add_column("pid", justify="right", no_wrap=True, min_width=MIN_WIDTH["pid"])
    table.add_column("rss", justify="right", no_wrap=True, min_width=MIN_WIDTH["rss"])
    table.add_column("command", ratio=1)
    for child in children:
        table.add_row(str(child.get("pid")), fmt_bytes(child.get("rss")),
                      _command_cell(child.get("command")))
    return table


def unavailable_text(fig: Mapping[str, Any]) -> Optional[Text]:
    """``uss, pss, swap: permission denied reading …`` — one line per reason, or None."""
    by_reason: dict = {}
    for field, why in (fig.get("unavailable") or {}).items():
        by_reason.setdefault(str(why), []).append(str(field))
    if not by_reason:
        return None
    return Text("\n".join("%s: %s." % (", ".join(fields), why)
                          for why, fields in by_reason.items()), style="dim")


def external_view(fig: Mapping[str, Any]) -> RenderableType:
    """`memtui stats PID --external`: the banner, who it is, then process figures, mappings by
    class and the largest children, and what could not be read."""
    parts: List[RenderableType] = [external_banner(fig), external_header(fig),
                                   external_process_table(fig)]
    if isinstance(fig.get("mappings"), Mapping):  # else the unavailable lines say why
        parts.append(mappings_table(fig))
    for part in (children_table(fig), unavailable_text(fig)):
        if part is not None:
            parts.append(part)
    return Group(*parts)


def live_loop(frame: Callable[[], Optional[RenderableType]], interval: float,
              console: Optional[Console] = None, stop: Optional[threading.Event] = None) -> None:
    """Redraw ``frame()`` every *interval* seconds until it returns None or *stop* is set.

    Exceptions from ``frame`` (agent gone) and KeyboardInterrupt propagate after Live has
    restored the terminal.
    """
    stop = stop or threading.Event()
    live = Live(console=console, auto_refresh=False, redirect_stderr=False)
    try:
        with live:
            while not stop.is_set():
                renderable = frame()
                if renderable is None:
                    return
                live.update(renderable, refresh=True)
                stop.wait(interval)
    finally:
        if not live.console.is_terminal:
            live.console.line()  # Live ends a non-terminal's final frame without a newline


__all__ = ["children_table", "components_table", "external_banner", "external_header",
           "external_process_table", "external_view", "fmt_bytes", "fmt_duration", "fmt_ms",
           "fmt_pct", "gc_text", "heap_table", "heap_top_table", "live_loop", "mappings_table",
           "process_table", "ps_tables", "stats_view", "unavailable_text"]
