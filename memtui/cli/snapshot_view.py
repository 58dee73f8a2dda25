"""How `memtui snapshot` shows things: a snapshot document, a diff of two, and a leak-suspects
report, as rich tables. Documents come from disk, so every field is checked where it is read."""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..render import fmt_bytes


def size_text(n: Optional[float]) -> str:
    return "–" if n is None else fmt_bytes(n)


def _delta(n: Optional[float], size: bool = True) -> Text:
    if n is None:
        return Text("–")
    text = ("+" if n > 0 else "") + (size_text(n) if size else "{:,}".format(int(n)))
    return Text(text, style="red" if n > 0 else ("green" if n < 0 else "dim"))


# Rendering reads documents that come from disk: any file that passed snapshots.load, perhaps
# damaged or written by another version. Every field is checked where it is read; a wrong one is
# a ValueError naming it, which `snapshot._usable` turns into one line and exit 2. Every data
# cell is a Text: strings from the heap ("Dict[str, Any]", "[/oops]") are shown as they are,
# never parsed as rich markup.
UNUSABLE = (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _wrong(row: Dict[str, Any], key: str, where: str, want: str) -> ValueError:
    if key not in row:
        return ValueError("%s.%s is missing" % (where, key))
    return ValueError("%s.%s is %s, not %s" % (where, key, _short(row[key]), want))


def _section(node: Dict[str, Any], key: str, where: str) -> Dict[str, Any]:
    value = node.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("%s is %s, not an object" % (where, _short(value)))
    return value


def _rows(value: Any, where: str) -> List[Dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("%s is %s, not a list" % (where, _short(value)))
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise ValueError("%s[%d] is %s, not an object" % (where, i, _short(row)))
    return value


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _text(row: Dict[str, Any], key: str, where: str, default: Optional[str] = None) -> Text:
    value = row.get(key, default)
    if not isinstance(value, str):
        raise _wrong(row, key, where, "a string")
    return Text(value)


def _whole(row: Dict[str, Any], key: str, where: str) -> Text:
    value = row.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(row, key, where, "a whole number")
    return Text("{:,}".format(value))


def _bytes(row: Dict[str, Any], key: str, where: str, optional: bool = False) -> Text:
    value = row.get(key)
    if value is None and optional:
        return Text("–")
    if not _is_num(value):
        raise _wrong(row, key, where, "a number of bytes")
    return Text(size_text(value))


def _when(doc: Dict[str, Any]) -> str:
    value = doc.get("taken_at")
    if value is None:
        return "(no time)"
    try:
        if not _is_num(value):
            raise ValueError
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    except (ValueError, OverflowError, OSError):
        raise ValueError("taken_at is %s, not a time" % _short(value)) from None


def _table(title: str, columns: List[str], left: tuple) -> Table:
    t = Table(title=Text(title), title_justify="left", show_edge=False, pad_edge=False)
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right")
    return t


def show_doc(doc: Dict[str, Any], limit: int) -> RenderableType:
    """What a snapshot document holds; ValueError naming the first field of the wrong shape."""
    census = _section(doc, "census", "census")
    proc = _section(doc, "process", "process")
    complete = census.get("complete", True) is not False
    budget = census.get("budget_s")
    pid, reason = doc.get("pid"), doc.get("reason")
    head = Text.assemble(
        ("PID %s" % (pid if isinstance(pid, int) else "?"), "bold"), "  %s  " % _when(doc),
        "reason %s  rss %s  " % (reason if isinstance(reason, str) else "–",
                                 _bytes(proc, "rss", "process", optional=True).plain),
        "census %s objects, %s%s" % (
            _whole(census, "objects", "census").plain if "objects" in census else "?",
            _bytes(census, "bytes", "census", optional=True).plain,
            "" if complete else " (stopped at the %ss budget)" % (
                budget if _is_num(budget) else "?")))
    types = _table("largest types", ["type", "count", "size"], ("type",))
    for i, row in enumerate(_rows(census.get("types"), "census.types")[:limit]):
        where = "census.types[%d]" % i
        types.add_row(_text(row, "type", where), _whole(row, "count", where),
                      _bytes(row, "size", where))
    parts: List[RenderableType] = [head, types]
    containers = _rows(doc.get("containers"), "containers")
    if containers:
        t = _table("largest containers", ["type", "len", "size", "what"], ("type", "what"))
        for i, c in enumerate(containers[:min(limit, 10)]):
            where = "containers[%d]" % i
            t.add_row(_text(c, "type", where), _whole(c, "len", where), _bytes(c, "size", where),
                      _text(c, "repr", where, default=""))
        parts.append(t)
    dup = _section(doc, "duplicates", "duplicates")
    values = _rows(dup.get("values"), "duplicates.values")
    if values:
        t = _table("duplicate values: %s wasted" % _bytes(dup, "wasted_bytes", "duplicates",
                                                           optional=True).plain,
                   ["value", "copies", "each", "wasted"], ("value",))
        for i, v in enumerate(values[:min(limit, 10)]):
            where = "duplicates.values[%d]" % i
            t.add_row(_text(v, "preview", where), _whole(v, "count", where),
                      _bytes(v, "size", where), _bytes(v, "wasted", where))
        parts.append(t)
    tm = _section(doc, "tracemalloc", "tracemalloc")
    sites = _rows(tm.get("by_line"), "tracemalloc.by_line")
    if sites:
        t = _table("top allocation sites (tracemalloc)", ["site", "count", "size"], ("site",))
        for i, site in enumerate(sites[:limit]):
            where = "tracemalloc.by_line[%d]" % i
            t.add_row(Text.assemble(_text(site, "file", where), ":",
                                    _whole(site, "line", where).plain.replace(",", "")),
                      _whole(site, "count", where), _bytes(site, "size", where))
        parts.append(t)
    return Group(*parts)


# -- diff and suspects ---------------------------------------------------------------------------
def diff_view(d: Dict[str, Any], limit: int) -> RenderableType:
    seconds = d.get("seconds")
    head = Text("%s → %s  (%s)  rss %s" % (
        d.get("a"), d.get("b"), "%.0f s apart" % seconds if _is_num(seconds) else "time unknown",
        _delta(d.get("rss_delta")).plain))
    types = _table("growth by type", ["type", "count", "Δ count", "size", "Δ size"], ("type",))
    for r in (d.get("types") or [])[:limit]:
        types.add_row(Text(str(r["type"])), Text("{:,}".format(r["count"])),
                      _delta(r["count_delta"], size=False), Text(size_text(r["size"])),
                      _delta(r["size_delta"]))
    parts: List[RenderableType] = [head, types]
    if d.get("sites"):
        sites = _table("growth by allocation site",
                       ["site", "count", "Δ count", "size", "Δ size"], ("site",))
        for r in d["sites"][:limit]:
            sites.add_row(Text("%s:%s" % (r["file"], r["line"])),
                          Text("{:,}".format(r["count"])), _delta(r["count_delta"], size=False),
                          Text(size_text(r["size"])), _delta(r["size_delta"]))
        parts.append(sites)
    else:
        parts.append(Text("No allocation sites: take both snapshots with --trace to see them.",
                          style="dim"))
    return Group(*parts)


def _plural(n: int, word: str) -> str:
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def judged(report: Dict[str, Any]) -> bool:
    return report["comparable"] >= report["min_snapshots"]


def cannot_judge(report: Dict[str, Any]) -> str:
    """The one line for "not enough snapshots to compare" (exit 2)."""
    why = []
    cut = len(report["incomplete"])
    if cut:
        why.append("%d %s stopped at the time budget" % (cut, "census" if cut == 1
                                                          else "censuses"))
    if report["skipped"]:
        why.append("%s unreadable" % _plural(len(report["skipped"]), "snapshot"))
    return "Cannot judge leaks: %s comparable, at least %d needed%s; take more with `memtui " \
           "snapshot PID`%s" % (_plural(report["comparable"], "snapshot"),
                                report["min_snapshots"], " (%s)" % "; ".join(why) if why else "",
                                " and a larger --budget" if cut else "")


def suspects_view(report: Dict[str, Any]) -> RenderableType:
    found, ids = report["suspects"], report["snapshots"]
    compared, minimum = report["comparable"], report["min_snapshots"]
    across = "%d snapshots" % len(ids) if not minimum <= compared < len(ids) else \
        "the last %d of %d snapshots" % (compared, len(ids))
    parts: List[RenderableType] = []
    if found:
        parts.append(Text("Leak suspects: grew at every step across %s (a run of %d or more):"
                          % (across, minimum), style="bold"))
        t = Table(show_edge=False, pad_edge=False)
        for col in ("#", "kind", "what", "steps", "Δ count", "Δ size"):
            t.add_column(col, justify="left" if col in ("kind", "what") else "right")
        for i, s in enumerate(found, 1):
            t.add_row(Text(str(i)), Text(str(s["kind"])), Text(str(s["name"])),
                      Text(str(s["steps"])),
                      _delta(s["count_delta"], size=False), _delta(s["size_delta"]))
        parts.append(t)
    else:
        parts.append(Text("No leak suspects across %s: nothing grew at every step over %d or "
                          "more snapshots." % (across, minimum), style="green"))
    if report["incomplete"]:
        parts.append(Text("Not compared by type (census stopped at its time budget): %s" %
                          ", ".join(str(i) for i in report["incomplete"]), style="yellow"))
    for skip in report["skipped"]:
        parts.append(Text("Skipped, unreadable: %s (%s)" % (skip.get("id"), skip.get("error")),
                          style="yellow"))
    return Group(*parts)
