"""``memtui snapshot``: take a heap snapshot of a running process (with progress), show one, diff
two, and list leak suspects from a live agent or from snapshot files. The work is in
``memtui.agent.snapshots`` and ``memtui.agent.heapdiff``; this is the surface."""
from __future__ import annotations

import os
import shutil
import threading
import time
from typing import Any, Dict, List, Optional

import typer
from rich.console import Group, RenderableType
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..client import AgentClient
from ..protocol import AgentError
from ._common import EXIT_CHECK, UsageFailure, console, print_json

HELP = """Heap snapshots: take, show, diff, and leak suspects.

\b
  memtui snapshot PID [-o FILE] [--trace]  take one, with progress
  memtui snapshot show FILE                what it holds
  memtui snapshot diff A B                 growth by type and by site
  memtui snapshot suspects PID | FILE...   what grew at every step (exit 1 if any)
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


# -- take ----------------------------------------------------------------------------------------
def take(pid: int, output: Optional[str], trace: bool, budget: Optional[float],
         socket: Optional[str], json_: bool) -> None:
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
    if output:
        try:
            shutil.copyfile(result["path"], output)
        except OSError as exc:
            raise UsageFailure("Snapshot %s taken but not copied to %s: %s" % (
                result.get("path"), output, exc.strerror or exc)) from None
        result["copied_to"] = os.path.abspath(output)
    if json_:
        print_json(result)
        return
    where = result.get("copied_to") or result.get("path")
    console.print("Snapshot %s: %s, %s objects in %.2f s%s → %s" % (
        result.get("id"), _size(result.get("bytes")), "{:,}".format(result.get("objects") or 0),
        result.get("elapsed_s") or 0.0,
        "" if result.get("complete", True) else " (census stopped at its time budget)", where),
        highlight=False, markup=False)


# -- show ----------------------------------------------------------------------------------------
def show_doc(doc: Dict[str, Any], limit: int) -> RenderableType:
    census = doc.get("census") or {}
    proc = doc.get("process") or {}
    head = Text.assemble(
        ("PID %s" % doc.get("pid"), "bold"), "  %s  " % time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(doc.get("taken_at") or 0)),
        "reason %s  rss %s  " % (doc.get("reason"), _size(proc.get("rss"))),
        "census %s objects, %s%s" % ("{:,}".format(census.get("objects") or 0),
                                      _size(census.get("bytes")),
                                      "" if census.get("complete", True)
                                      else " (stopped at the %ss budget)" % census.get("budget_s")))
    types = Table(title="largest types", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("type", "count", "size"):
        types.add_column(col, justify="left" if col == "type" else "right")
    for row in (census.get("types") or [])[:limit]:
        types.add_row(row["type"], "{:,}".format(row["count"]), _size(row["size"]))
    parts: List[RenderableType] = [head, types]
    containers = doc.get("containers") or []
    if containers:
        t = Table(title="largest containers", title_justify="left", show_edge=False, pad_edge=False)
        for col in ("type", "len", "size", "what"):
            t.add_column(col, justify="right" if col in ("len", "size") else "left")
        for c in containers[:min(limit, 10)]:
            t.add_row(c["type"], "{:,}".format(c["len"]), _size(c["size"]), c.get("repr", ""))
        parts.append(t)
    dup = doc.get("duplicates") or {}
    if dup.get("values"):
        t = Table(title="duplicate values: %s wasted" % _size(dup.get("wasted_bytes")),
                  title_justify="left", show_edge=False, pad_edge=False)
        for col in ("value", "copies", "each", "wasted"):
            t.add_column(col, justify="left" if col == "value" else "right")
        for v in dup["values"][:min(limit, 10)]:
            t.add_row(v["preview"], "{:,}".format(v["count"]), _size(v["size"]), _size(v["wasted"]))
        parts.append(t)
    tm = doc.get("tracemalloc")
    if tm and tm.get("by_line"):
        t = Table(title="top allocation sites (tracemalloc)", title_justify="left", show_edge=False,
                  pad_edge=False)
        for col in ("site", "count", "size"):
            t.add_column(col, justify="left" if col == "site" else "right")
        for s in tm["by_line"][:limit]:
            t.add_row("%s:%s" % (s["file"], s["line"]), "{:,}".format(s["count"]), _size(s["size"]))
        parts.append(t)
    return Group(*parts)


# -- diff and suspects ---------------------------------------------------------------------------
def diff_view(d: Dict[str, Any], limit: int) -> RenderableType:
    head = Text("%s → %s  (%.0f s apart)  rss %s" % (
        d.get("a"), d.get("b"), d.get("seconds") or 0, _delta(d.get("rss_delta")).plain))
    types = Table(title="growth by type", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("type", "count", "Δ count", "size", "Δ size"):
        types.add_column(col, justify="left" if col == "type" else "right")
    for r in (d.get("types") or [])[:limit]:
        types.add_row(r["type"], "{:,}".format(r["count"]), _delta(r["count_delta"], size=False),
                      _size(r["size"]), _delta(r["size_delta"]))
    parts: List[RenderableType] = [head, types]
    if d.get("sites"):
        sites = Table(title="growth by allocation site", title_justify="left", show_edge=False,
                      pad_edge=False)
        for col in ("site", "count", "Δ count", "size", "Δ size"):
            sites.add_column(col, justify="left" if col == "site" else "right")
        for r in d["sites"][:limit]:
            sites.add_row("%s:%s" % (r["file"], r["line"]), "{:,}".format(r["count"]),
                          _delta(r["count_delta"], size=False), _size(r["size"]),
                          _delta(r["size_delta"]))
        parts.append(sites)
    else:
        parts.append(Text("No allocation sites: take both snapshots with --trace to see them.",
                          style="dim"))
    return Group(*parts)


def suspects_view(found: List[Dict[str, Any]], ids: List[str]) -> RenderableType:
    if not found:
        return Text("No leak suspects across %d snapshots: nothing grew at every step." % len(ids),
                    style="green")
    t = Table(title="leak suspects: grew at every step across %d snapshots" % len(ids),
              title_justify="left", show_edge=False, pad_edge=False)
    for col in ("#", "kind", "what", "steps", "Δ count", "Δ size"):
        t.add_column(col, justify="left" if col in ("kind", "what") else "right")
    for i, s in enumerate(found, 1):
        t.add_row(str(i), s["kind"], s["name"], str(s["steps"]),
                  _delta(s["count_delta"], size=False), _delta(s["size_delta"]))
    return t


def run(args: List[str], output: Optional[str], trace: bool, budget: Optional[float],
        socket: Optional[str], json_: bool, limit: int) -> None:
    if not args:
        raise UsageFailure("Give a PID, or show FILE, diff A B, suspects PID|FILE...")
    verb, rest = args[0], args[1:]
    if verb.isdigit():
        if rest:
            raise UsageFailure("Unexpected %s after the PID" % " ".join(rest))
        take(int(verb), output, trace, budget, socket, json_)
    elif verb == "show":
        if len(rest) != 1:
            raise UsageFailure("Usage: memtui snapshot show FILE")
        doc = _load(rest[0])
        print_json(doc) if json_ else console.print(show_doc(doc, limit))
    elif verb == "diff":
        if len(rest) != 2:
            raise UsageFailure("Usage: memtui snapshot diff A B")
        from ..agent import heapdiff  # noqa: PLC0415

        d = heapdiff.diff(_load(rest[0]), _load(rest[1]))
        print_json(d) if json_ else console.print(diff_view(d, limit))
    elif verb == "suspects":
        if not rest:
            raise UsageFailure("Usage: memtui snapshot suspects PID | FILE...")
        if len(rest) == 1 and rest[0].isdigit() and not os.path.exists(rest[0]):
            with AgentClient(pid=int(rest[0]), path=socket, timeout=60.0).connect() as client:
                result = client.snapshot_suspects()
            found, ids = result.get("suspects") or [], result.get("snapshots") or []
        else:
            from ..agent import heapdiff  # noqa: PLC0415

            docs = sorted((_load(p) for p in rest), key=lambda d: d.get("taken_at") or 0)
            found, ids = heapdiff.suspects(docs), [d.get("id") for d in docs]
        if json_:
            print_json({"suspects": found, "snapshots": ids})
        else:
            console.print(suspects_view(found, ids))
        if found:
            raise typer.Exit(EXIT_CHECK)
    else:
        raise UsageFailure("Unknown snapshot action %r: give a PID, show, diff or suspects" % verb)
