"""The two-line status header: who we are attached to and how the link is doing."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from ...render import fmt_bytes, fmt_duration, short_command
from ..model import Connection, Sample

CONNECTION_STYLE = {"live": "green", "connecting": "yellow", "lost": "bold red"}


def health_style(score: Optional[int]) -> str:
    if score is None:
        return "dim"
    return "green" if score >= 80 else "yellow" if score >= 50 else "bold red"


def header_lines(sample: Optional[Sample], connection: Connection, interval: float,
                 paused: bool, command: str = "", target: str = "") -> Group:
    """Line 1: pid, command, Python, env. Line 2: health, rss, uptime, connection, refresh.
    In the external view (no agent) "external view" stands for the env and "no agent" for
    the health score."""
    info: Mapping[str, Any] = sample.info if sample else {}
    stats: Mapping[str, Any] = sample.stats if sample else {}
    one = Text(no_wrap=True, overflow="ellipsis")
    pid = (sample.pid if sample else None) or info.get("pid")
    one.append(" PID %s " % (pid if pid else (target or "?")), style="bold reverse")
    py = info.get("python") or {}
    external = info.get("mode") == "external"  # no agent: read from outside (attach.external)
    if py.get("version"):
        one.append("  Python %s" % py["version"])
    if external:
        one.append("  ")
        one.append("external view", style="bold yellow")
    else:
        one.append("  env ")
        one.append(str(info.get("env") or "-"), style="bold")
    if command:
        one.append("  " + short_command(command), style="cyan")
    two = Text(no_wrap=True, overflow="ellipsis")
    health = (stats.get("health") or {}).get("score")
    if external:
        two.append(" no agent", style="yellow")
    else:
        two.append(" health ")
        two.append("%s" % (health if health is not None else "-"), style=health_style(health))
    rss = (stats.get("process") or {}).get("rss")
    two.append("  rss %s" % fmt_bytes(rss) if rss is not None else "  rss -")
    two.append("  up %s" % fmt_duration(stats.get("uptime")) if stats else "  up -")
    two.append("  ")
    state = connection.state
    two.append("● %s" % state, style=CONNECTION_STYLE.get(state, ""))
    two.append("  every %gs" % interval)
    if paused:
        two.append("  ")
        two.append(" PAUSED ", style="bold black on yellow")
    return Group(one, two)


class StatusHeader(Static):
    DEFAULT_CSS = """
    StatusHeader { height: 2; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    """
