"""components: the building blocks against named peers, one ratio table.

Rows come from benchmarks/_components_cache.py (Cache vs cachetools / functools.lru_cache),
benchmarks/_components_pool.py (WorkerPool vs ThreadPoolExecutor, ResourcePool vs a queue.Queue
pool) and the memory-bound scenario below (an unbounded dict cache vs Cache(max_bytes=...) under
the same Zipf traffic: peak RSS and hit rate, both measured).
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Dict, List

from . import _common as c

SCENARIO_MAX_BYTES = 48 * 1024 * 1024


def _scenario(mode: str, requests: int, seed: int) -> Dict[str, Any]:
    out = subprocess.run([sys.executable, c.target("bounded_cache_service.py"), mode,
                          str(SCENARIO_MAX_BYTES), str(requests), str(seed)],
                         capture_output=True, text=True, timeout=600, env=c.env())
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError("scenario %s failed: %s" % (mode, out.stderr[-2000:]))


def scenario_rows(quick: bool) -> List[List[Any]]:
    requests = 150_000 if quick else 400_000
    runs = {m: [_scenario(m, requests, seed) for seed in (1, 2, 3)] for m in ("dict", "memtui")}
    peak = {m: c.median(r["peak_rss"] - r["base_rss"] for r in runs[m]) for m in runs}
    rate = {m: c.median(r["hit_rate"] for r in runs[m]) for m in runs}
    reduction = 1.0 - peak["memtui"] / peak["dict"]
    gap = (rate["dict"] - rate["memtui"]) * 100.0
    ok = reduction >= 0.25 and gap <= 5.0
    return [
        ["unbounded dict cache [peer]", c.mib(peak["dict"]), "%.1f%%" % (100 * rate["dict"]),
         "", "", ""],
        ["Cache(lru, max_bytes=%s)" % c.mib(SCENARIO_MAX_BYTES), c.mib(peak["memtui"]),
         "%.1f%%" % (100 * rate["memtui"]), "-%.0f%% peak RSS" % (100 * reduction),
         ">= 25%% less, hit rate within 5 pts (%.1f pts)" % gap, c.verdict(ok)],
    ]


def main(quick: bool = False) -> List[str]:
    tables = []
    rows: List[List[Any]] = []
    for modname in ("_components_cache", "_components_pool"):
        try:
            mod = __import__("benchmarks." + modname, fromlist=["run"])
        except ImportError as exc:
            rows.append([modname, "", "", "", "", "", "not available: %s" % exc, ""])
            continue
        for r in mod.run(quick):
            target = r.get("target")
            ok = None
            if target:
                limit = float(target.strip("<=x ").strip())
                ok = r["ratio"] <= limit
            rows.append([r["what"], r["peer"], "%.0f" % r["ns_per_op_ours"],
                         "%.0f" % r["ns_per_op_peer"], "%.2fx" % r["ratio"], target or "",
                         r.get("note", ""), c.verdict(ok) if target else "-"])
    tables.append(c.table("components: cost per operation vs peers (ns/op, lower is better)",
                          ["operation", "peer", "ours ns", "peer ns", "ours/peer", "target",
                           "note", "verdict"], rows,
                          ["one process, same run; ratio = ours / peer (below 1.0x: we are faster)."]))
    tables.append(c.table(
        "components: memory-bound scenario, same Zipf(1.1) traffic over 100k keys of ~2 KiB",
        ["cache", "peak RSS added", "hit rate", "change", "target", "verdict"],
        scenario_rows(quick),
        ["median of 3 seeds; peak RSS = VmHWM minus the process's own at start; "
         "each run a fresh subprocess."]))
    return tables


if __name__ == "__main__":
    main()
