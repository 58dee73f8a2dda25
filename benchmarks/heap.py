"""heap: census of a process holding ~1M live objects, next to pympler's muppy summary and
objgraph's most_common_types on the same heap in the same run; and the cost of tracing an
allocation-heavy workload with tracemalloc next to `memray run`.

Census: one process builds a deterministic heap (benchmarks/targets/heap_probe.py: class
instances with their __dict__, atomic-only dicts that gc does not track, duplicate strings, small
lists) and runs every variant on it in turn; before each it collects and resets VmHWM, so "extra
MB" is VmHWM after minus VmRSS before. Each round is a fresh process with the variants in a rotated
order, so no variant always runs first or last. Targets: counts-only no slower than objgraph; full
census (sizes, untracked referents, duplicates) <= 1.5 s, >= 5x faster than muppy, <= 50 MB extra.

Tracing: benchmarks/targets/alloc_workload.py times its own loop (so interpreter and tool start-up
are not counted) plain, with tracemalloc started (1 frame), and under `python -m memray run`.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from typing import Dict, List

from . import _common as c

VARIANTS = ["objgraph", "muppy", "memtui-counts", "memtui-full", "memtui-snapshot"]
LABELS = {"objgraph": "objgraph.most_common_types [peer]",
          "muppy": "pympler muppy + summarize [peer]",
          "memtui-counts": "memtui count_types (heap.types)",
          "memtui-full": "memtui full census",
          "memtui-snapshot": "memtui snapshot (census + gzip JSON file)"}


def _probe(args: List[str], timeout: float = 600) -> Dict:
    out = subprocess.run(args, env=c.env(), cwd=c.ROOT, capture_output=True, text=True,
                         timeout=timeout)
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError("%s failed: %s" % (args, out.stderr[-1500:]))
    return json.loads(lines[-1][7:])


def _probe_all(args: List[str], timeout: float = 900) -> List[Dict]:
    out = subprocess.run(args, env=c.env(), cwd=c.ROOT, capture_output=True, text=True,
                         timeout=timeout)
    rows = [json.loads(x[7:]) for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not rows:
        raise RuntimeError("%s failed: %s" % (args, out.stderr[-1500:]))
    return rows


def census_table(quick: bool) -> None:
    n_items = 100_000  # ~1.2M objects counted by a full census
    rounds = 3 if not quick else 1
    results: Dict[str, List[Dict]] = {v: [] for v in VARIANTS}
    alone: Dict[str, List[Dict]] = {v: [] for v in VARIANTS}
    probe = [c.PYTHON, c.target("heap_probe.py"), str(n_items)]
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        c.progress("census round %d/%d: %s" % (r + 1, rounds, ", ".join(order)))
        for row in _probe_all(probe + order):
            results[row["variant"]].append(row)
        for v in order:  # memory: a variant after another reuses the arenas that one freed
            alone[v] += _probe_all(probe + [v])
    med = {v: c.median(x["elapsed_s"] for x in results[v]) for v in VARIANTS}
    mem = {v: c.median(x["extra_bytes"] for x in alone[v]) for v in VARIANTS}
    objects = results["memtui-full"][0].get("objects")
    tracked = results["memtui-full"][0].get("tracked")
    rows = []
    for v in VARIANTS:
        vs_objgraph = med[v] / med["objgraph"] if med["objgraph"] else None
        vs_muppy = med["muppy"] / med[v] if med[v] else None
        if v == "memtui-counts":
            ok = med[v] <= med["objgraph"] * 1.05
        elif v == "memtui-full":
            ok = med[v] <= 1.5 and (vs_muppy or 0) >= 5 and mem[v] <= 50 * 1024 * 1024
        elif v == "memtui-snapshot":
            ok = mem[v] <= 50 * 1024 * 1024
        else:
            ok = None
        rows.append([LABELS[v], "%.3f" % med[v], "%.1f" % (mem[v] / 1048576.0),
                     "%.2f" % vs_objgraph if vs_objgraph else "",
                     "%.1fx" % vs_muppy if vs_muppy and v.startswith("memtui") else "",
                     c.verdict(ok)])
    c.table("heap census of ~%s live objects (%s gc-tracked)" % (
        "{:,}".format(objects or 0), "{:,}".format(tracked or 0)),
        ["variant", "seconds", "extra MB", "x objgraph", "muppy / this", "target"], rows,
        ["seconds: all variants on the same heap in one process per round (rotated order); "
         "extra MB: each variant alone in a fresh process on the same heap (a variant run after "
         "another reuses the memory that one freed); median of %d rounds; load %s"
         % (rounds, c.loadavg()),
         "full census complete: %s; objects counted by memtui include untracked referents "
         "(atomic dicts, str, int) that objgraph does not see" % (
             all(x.get("complete") for x in results["memtui-full"]))])


def tracing_table(quick: bool) -> None:
    rounds_work = 30 if quick else 80
    reps = 1 if quick else 3
    out: Dict[str, List[float]] = {"plain": [], "tracemalloc": [], "memray": [], "memray-py": []}
    with tempfile.TemporaryDirectory(prefix="memtui-bench-memray-") as tmp:
        for r in range(reps):
            for mode in out:
                c.progress("tracing %s round %d/%d" % (mode, r + 1, reps))
                script = [c.target("alloc_workload.py")]
                if mode.startswith("memray"):
                    extra = ["--trace-python-allocators"] if mode == "memray-py" else []
                    args = [c.PYTHON, "-m", "memray", "run", "-q", "-f", *extra, "-o",
                            os.path.join(tmp, "w.bin"), *script, "plain", str(rounds_work)]
                else:
                    args = [c.PYTHON, *script, mode, str(rounds_work)]
                out[mode].append(_probe(args)["elapsed_s"])
    base = c.median(out["plain"])
    rows = [[{"plain": "no tracing", "tracemalloc": "tracemalloc (1 frame)",
              "memray": "memray run [peer]",
              "memray-py": "memray run --trace-python-allocators [peer]"}[m], "%.3f" % c.median(ts),
             "%.2fx" % (c.median(ts) / base)] for m, ts in out.items()]
    c.table("tracing cost on an allocation-heavy workload", ["mode", "seconds", "slowdown"],
            rows, ["workload: build 2000 dicts, json round-trip, %d rounds; median of %d" % (
                rounds_work, reps),
                "memray by default sees only what reaches the system allocator (not pymalloc's "
                "small objects); --trace-python-allocators is the like-for-like comparison",
                "tracemalloc is off unless asked for (memtui trace PID start, snapshot --trace, "
                "profiler.trace); the dashboard shows when it is on"])


def main(quick: bool = False) -> None:
    census_table(quick)
    tracing_table(quick)
