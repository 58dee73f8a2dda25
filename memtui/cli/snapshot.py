"""``memtui snapshot``: take a heap snapshot of a running process (with progress), show one, diff
two, and list leak suspects from a live agent or from snapshot files. The work is in
``memtui.agent.snapshots`` and ``memtui.agent.heapdiff``; this is the surface."""
from __future__ import annotations

import errno
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

import typer
from rich.console import Group, RenderableType
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..agent.snapshot_files import fsync_dir
from ..client import AgentClient
from ..protocol import AgentError
from ._common import EXIT_CHECK, UsageFailure, console, print_json

HELP = """Heap snapshots: take, show, diff, and leak suspects.

\b
  memtui snapshot PID [-o FILE] [--trace]  take one, with progress
  memtui snapshot show FILE                what it holds
  memtui snapshot diff A B                 growth by type and by site
  memtui snapshot suspects PID | FILE...   what grew at every step: exit 1 if
                                           any, 2 if too few to judge
"""


def _size(n: Optional[float]) -> str:
    if n is None:
        return "–"
    sign = "-" if n < 0 else ""
    n = abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return "%s%.0f %s" % (sign, n, unit) if unit == "B" else "%s%.1f %s" % (sign, n, unit)
        n /= 1024.0
    return "%s%.1f TiB" % (sign, n)


def _delta(n: Optional[float], size: bool = True) -> Text:
    if n is None:
        return Text("–")
    text = ("+" if n > 0 else "") + (_size(n) if size else "{:,}".format(int(n)))
    return Text(text, style="red" if n > 0 else ("green" if n < 0 else "dim"))


def _load(path: str) -> Dict[str, Any]:
    from ..agent import snapshots  # noqa: PLC0415

    try:
        return snapshots.load(path)
    except FileNotFoundError:
        raise UsageFailure("No snapshot file %s" % path) from None
    except (OSError, ValueError) as exc:
        raise UsageFailure("Cannot read %s: %s" % (path, exc)) from None
    except RecursionError:  # json nested deeper than the interpreter's stack
        raise UsageFailure("Cannot read %s: its JSON is nested too deeply to be a memtui "
                           "snapshot" % path) from None


# -- take ----------------------------------------------------------------------------------------
TRACE_COST = "~10x"  # what tracemalloc adds to each allocation (benchmarks/heap)


def _check_output(output: str, force: bool) -> str:
    """Refuse -o FILE before the snapshot is taken: an existing file (unless --force), a
    directory, a missing parent directory."""
    path = os.path.abspath(output)
    if os.path.isdir(path):
        raise UsageFailure("%s is a directory; give -o a file name" % output)
    if os.path.lexists(path) and not force:
        raise UsageFailure("%s exists; give --force to replace it" % output)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise UsageFailure("No directory %s for -o %s" % (parent, output))
    return path


_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS)


def copy_out(src: str, dst: str, force: bool = False) -> None:
    """Copy snapshot *src* to *dst* as the agent writes its own: a 0600 temporary file created
    with O_EXCL next to *dst*, fsynced, then put in place in one step, so *dst* is never seen
    half written. Without *force* an existing *dst* is never replaced, even one that appeared
    meanwhile (os.link fails on it); with *force* os.replace swaps it atomically.
    FileExistsError: *dst* exists and not *force*."""
    directory, base = os.path.split(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % base, suffix=".tmp", dir=directory)  # 0600, EXCL
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if force:
            os.replace(tmp, dst)
        else:
            try:
                os.link(tmp, dst)  # fails if dst exists: no check-then-write race
            except OSError as exc:  # EEXIST re-raised; else a file system without hard links
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                if os.path.lexists(dst):  # vfat, some FUSE: check, then rename (a small race)
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
                os.rename(tmp, dst)
        fsync_dir(directory)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def take(pid: int, output: Optional[str], trace: bool, budget: Optional[float],
         socket: Optional[str], json_: bool, force: bool = False) -> None:
    dest = _check_output(output, force) if output else None
    args: Dict[str, Any] = {"trace": trace}
    if budget is not None:
        args["budget_s"] = budget
    result: Dict[str, Any] = {}
    failure: List[BaseException] = []
    with AgentClient(pid=pid, path=socket, timeout=300.0).connect() as client, \
            AgentClient(pid=pid, path=socket).connect() as watcher:

        def run() -> None:
            try:
                result.update(client.snapshot_take(**args))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                failure.append(exc)

        worker = threading.Thread(target=run, name="memtui-snapshot", daemon=True)
        worker.start()
        show = console.is_terminal and not json_
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                      console=console, transient=True, disable=not show) as bar:
            task = bar.add_task("snapshot of PID %d" % pid, total=None, count="")
            while worker.is_alive():
                try:
                    st = watcher.snapshot_status()
                except AgentError:
                    st = {}
                if st.get("running"):
                    done, total = st.get("done") or 0, st.get("total")
                    bar.update(task, description="%s (PID %d)" % (st.get("phase") or "…", pid),
                               completed=done, total=total,
                               count="{:,} objects".format(done) if done else "")
                worker.join(0.1)
    if failure:
        raise failure[0]
    if dest:
        try:
            copy_out(result["path"], dest, force)
        except FileExistsError:
            raise UsageFailure("Snapshot %s taken but not copied: %s appeared meanwhile; give "
                               "--force to replace it" % (result.get("path"), output)) from None
        except OSError as exc:
            raise UsageFailure("Snapshot %s taken but not copied to %s: %s" % (
                result.get("path"), output, exc.strerror or exc)) from None
        result["copied_to"] = dest
    # --trace starts tracemalloc and leaves it on for the next snapshots: say so, it is not free
    note = ("Tracing stays on in PID %d (tracemalloc: every allocation costs %s more); stop it "
            "with: memtui trace %d stop" % (pid, TRACE_COST, pid)) if trace else None
    if json_:
        print_json(result)
        if note:
            sys.stderr.write(note + "\n")
        return
    where = result.get("copied_to") or result.get("path")
    console.print("Snapshot %s: %s, %s objects in %.2f s%s → %s" % (
        result.get("id"), _size(result.get("bytes")), "{:,}".format(result.get("objects") or 0),
        result.get("elapsed_s") or 0.0,
        "" if result.get("complete", True) else " (census stopped at its time budget)", where),
        highlight=False, markup=False)
    if note:
        console.print(Text(note, style="yellow"))


# -- show ----------------------------------------------------------------------------------------
# Rendering reads documents that come from disk: any file that passed snapshots.load, perhaps
# damaged or written by another version. Every field is checked where it is read; a wrong one is
# a ValueError naming it, which `_usable` turns into one line and exit 2. Every data cell is a
# Text: strings from the heap ("Dict[str, Any]", "[/oops]") are shown as they are, never parsed
# as rich markup.
UNUSABLE = (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError)


def _usable(what: str, render: Any, *args: Any) -> Any:
    try:
        return render(*args)
    except UNUSABLE as exc:
        text = str(exc) if isinstance(exc, ValueError) else "%s: %s" % (type(exc).__name__, exc)
        raise UsageFailure("%s is not a usable snapshot: %s" % (what, text)) from None


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
    return Text(_size(value))


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
                      _delta(r["count_delta"], size=False), Text(_size(r["size"])),
                      _delta(r["size_delta"]))
    parts: List[RenderableType] = [head, types]
    if d.get("sites"):
        sites = _table("growth by allocation site",
                       ["site", "count", "Δ count", "size", "Δ size"], ("site",))
        for r in d["sites"][:limit]:
            sites.add_row(Text("%s:%s" % (r["file"], r["line"])),
                          Text("{:,}".format(r["count"])), _delta(r["count_delta"], size=False),
                          Text(_size(r["size"])), _delta(r["size_delta"]))
        parts.append(sites)
    else:
        parts.append(Text("No allocation sites: take both snapshots with --trace to see them.",
                          style="dim"))
    return Group(*parts)


def _plural(n: int, word: str) -> str:
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def _judged(report: Dict[str, Any]) -> bool:
    return report["comparable"] >= report["min_snapshots"]


def _cannot_judge(report: Dict[str, Any]) -> str:
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


def _trailing_complete(ids: List[Any], incomplete: List[Any]) -> int:
    n = 0
    for ident in reversed(ids):
        if ident in incomplete:
            break
        n += 1
    return n


def _report_from_agent(result: Dict[str, Any]) -> Dict[str, Any]:
    from ..agent import heapdiff  # noqa: PLC0415

    ids = list(result.get("snapshots") or [])
    incomplete = list(result.get("incomplete") or [])
    skipped = [s if isinstance(s, dict) else {"id": s, "error": "?"}
               for s in result.get("skipped") or []]
    minimum = result.get("min_snapshots")
    minimum = minimum if isinstance(minimum, int) else heapdiff.MIN_SNAPSHOTS
    comparable = result.get("comparable")
    if not isinstance(comparable, int):
        # types are compared over the complete censuses since the last cut one (sites may
        # reach further, but the agent does not say which snapshots were traced)
        comparable = _trailing_complete(ids, incomplete)
    report = dict(result)  # and the rest the agent said (its directory)
    report.update({"suspects": list(result.get("suspects") or []), "snapshots": ids,
                   "min_snapshots": minimum, "comparable": comparable,
                   "incomplete": incomplete, "skipped": skipped})
    return report


def _report_from_files(paths: List[str]) -> Dict[str, Any]:
    from ..agent import heapdiff  # noqa: PLC0415

    docs = sorted((_load(p) for p in paths), key=lambda d: heapdiff.taken_at(d) or 0.0)
    ids = [d.get("id") if isinstance(d.get("id"), (str, int)) else str(d.get("id"))
           for d in docs]
    incomplete = [i for i, d in zip(ids, docs)
                  if isinstance(d.get("census"), dict) and d["census"].get("complete") is False]
    return {"suspects": heapdiff.suspects(docs), "snapshots": ids,
            "min_snapshots": heapdiff.MIN_SNAPSHOTS, "comparable": heapdiff.comparable(docs),
            "incomplete": incomplete, "skipped": []}


def suspects(rest: List[str], socket: Optional[str], json_: bool) -> None:
    """Exit 1: suspects found; 0: judged and clean; 2 (one line): fewer comparable snapshots
    than a judgement needs, which is not "clean"."""
    if len(rest) == 1 and rest[0].isdigit() and not os.path.exists(rest[0]):
        with AgentClient(pid=int(rest[0]), path=socket, timeout=60.0).connect() as client:
            report = _report_from_agent(client.snapshot_suspects())
    else:
        report = _usable(" or ".join(rest), _report_from_files, rest)
    found = report["suspects"]
    report["judged"] = bool(found) or _judged(report)
    if json_:
        print_json(report)
    elif report["judged"]:
        console.print(suspects_view(report))
    if not report["judged"]:
        raise UsageFailure(_cannot_judge(report))
    if found:
        raise typer.Exit(EXIT_CHECK)


def run(args: List[str], output: Optional[str], trace: bool, budget: Optional[float],
        socket: Optional[str], json_: bool, limit: int, force: bool = False) -> None:
    if not args:
        raise UsageFailure("Give a PID, or show FILE, diff A B, suspects PID|FILE...")
    verb, rest = args[0], args[1:]
    if verb.isdigit():
        if rest:
            raise UsageFailure("Unexpected %s after the PID" % " ".join(rest))
        take(int(verb), output, trace, budget, socket, json_, force)
    elif verb == "show":
        if len(rest) != 1:
            raise UsageFailure("Usage: memtui snapshot show FILE")
        doc = _load(rest[0])
        if json_:
            print_json(doc)
        else:
            console.print(_usable(rest[0], show_doc, doc, limit))
    elif verb == "diff":
        if len(rest) != 2:
            raise UsageFailure("Usage: memtui snapshot diff A B")
        from ..agent import heapdiff  # noqa: PLC0415

        a, b = _load(rest[0]), _load(rest[1])
        d = _usable("%s or %s" % tuple(rest), heapdiff.diff, a, b)
        if json_:
            print_json(d)
        else:
            console.print(_usable("%s or %s" % tuple(rest), diff_view, d, limit))
    elif verb == "suspects":
        if not rest:
            raise UsageFailure("Usage: memtui snapshot suspects PID | FILE...")
        suspects(rest, socket, json_)
    else:
        raise UsageFailure("Unknown snapshot action %r: give a PID, show, diff or suspects" % verb)
