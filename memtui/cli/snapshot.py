"""``memtui snapshot``: take a heap snapshot of a running process (with progress), show one, diff
two, and list leak suspects from a live agent or from snapshot files. The work is in
``memtui.agent.snapshots`` and ``memtui.agent.heapdiff``; this is the surface."""
from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
import threading
from typing import Any, Dict, List, Optional

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from ..agent.snapshot_files import fsync_dir
from ..client import AgentClient
from ..protocol import AgentError
from ._common import EXIT_CHECK, UsageFailure, console, print_json
from .snapshot_view import (UNUSABLE, cannot_judge, diff_view, judged, show_doc, size_text,
                            suspects_view)

HELP = """Heap snapshots: take, show, diff, and leak suspects.

\b
  memtui snapshot PID [-o FILE] [--trace]  take one, with progress
  memtui snapshot show FILE                what it holds
  memtui snapshot diff A B                 growth by type and by site
  memtui snapshot suspects PID | FILE...   what grew at every step: exit 1 if
                                           any, 2 if too few to judge
"""


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
        result.get("id"), size_text(result.get("bytes")), "{:,}".format(result.get("objects") or 0),
        result.get("elapsed_s") or 0.0,
        "" if result.get("complete", True) else " (census stopped at its time budget)", where),
        highlight=False, markup=False)
    if note:
        console.print(Text(note, style="yellow"))


# -- show ----------------------------------------------------------------------------------------
def _usable(what: str, render: Any, *args: Any) -> Any:
    try:
        return render(*args)
    except UNUSABLE as exc:
        text = str(exc) if isinstance(exc, ValueError) else "%s: %s" % (type(exc).__name__, exc)
        raise UsageFailure("%s is not a usable snapshot: %s" % (what, text)) from None


# -- suspects ------------------------------------------------------------------------------------
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
    report["judged"] = bool(found) or judged(report)
    if json_:
        print_json(report)
    elif report["judged"]:
        console.print(suspects_view(report))
    if not report["judged"]:
        raise UsageFailure(cannot_judge(report))
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
