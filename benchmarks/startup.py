"""startup: wall time and RSS of `import memtui; memtui.start()` in a fresh interpreter vs peers.

Each measurement is a fresh subprocess (benchmarks/targets/startup_probe.py); variants are
interleaved and each reported value is the median of N runs. Peer: `import json, socket, threading`
(a minimal stdlib baseline); for context `import psutil` and `import logging`; and `import memtui`
alone to split import from start(). Bytecode caches are warmed first and kept in a private
PYTHONPYCACHEPREFIX so no run compiles source and nothing is written into the repo.
Targets: memtui.start() path <= 50 ms and <= 4 MB RSS added.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from typing import Dict, List

from . import _common as c

VARIANTS = ["stdlib", "memtui", "memtui-import", "psutil", "logging"]
LABELS = {
    "stdlib": "import json, socket, threading [peer]",
    "memtui": "import memtui; memtui.start()",
    "memtui-import": "import memtui (no start)",
    "psutil": "import psutil",
    "logging": "import logging",
}
TARGET_MS = 50.0
TARGET_RSS = 4 * 1000 * 1000  # "4 MB"
PYCACHE = os.path.join(tempfile.gettempdir(), "memtui-bench-pycache")


def probe(variant: str, runtime_dir: str, importtime: bool = False):
    e = c.env(runtime_dir, PYTHONPYCACHEPREFIX=PYCACHE)
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    args = [c.PYTHON] + (["-X", "importtime"] if importtime else []) + [
        c.target("startup_probe.py"), variant]
    out = subprocess.run(args, env=e, cwd=c.ROOT, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("startup probe %s failed: %s" % (variant, out.stderr[-2000:]))
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    import json
    return json.loads(line[7:]), out.stderr


def heaviest(stderr: str, new: List[str], k: int = 6) -> str:
    """Top-k newly loaded modules by self import time, from -X importtime output."""
    newset = set(new)
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s+(\s*)(\S+)", line)
        if m and m.group(4) in newset:
            rows.append((int(m.group(1)), m.group(4)))
    rows.sort(reverse=True)
    return ", ".join("%s %.1f" % (name, us / 1000.0) for us, name in rows[:k])


def main(quick: bool = False) -> List[str]:
    runs = 5 if quick else 10
    data: Dict[str, List[dict]] = {v: [] for v in VARIANTS}
    with c.RuntimeDir() as rd:
        for v in VARIANTS:  # warm the bytecode cache and the page cache
            probe(v, rd)
        for i in range(runs):
            for v in VARIANTS:
                data[v].append(probe(v, rd)[0])
        timed, err = probe("memtui", rd, importtime=True)
    med = {v: (c.median(x["ms"] for x in data[v]), c.median(x["rss"] for x in data[v]),
               c.median(x["modules"] for x in data[v])) for v in VARIANTS}
    assert all(x["ok"] for x in data["memtui"])
    base_ms, base_rss = med["stdlib"][0], med["stdlib"][1]
    rows = []
    for v in VARIANTS:
        ms, rss, mods = med[v]
        lo = min(x["ms"] for x in data[v])
        hi = max(x["ms"] for x in data[v])
        if v == "memtui":
            tgt = "<= %.0f ms, <= 4 MB" % TARGET_MS
            verdict = "%s / %s" % (c.verdict(ms <= TARGET_MS), c.verdict(rss <= TARGET_RSS))
        else:
            tgt, verdict = "", "-" if v == "stdlib" else ""
        rows.append([LABELS[v], "%.1f" % ms, "%.1f-%.1f" % (lo, hi),
                     "%.1fx" % (ms / base_ms) if v != "stdlib" else "1.0x",
                     "%.2f MB" % (rss / 1e6), "%+.2f MB" % ((rss - base_rss) / 1e6) if v != "stdlib" else "",
                     "%d" % mods, tgt, verdict or "-"])
    new = data["memtui"][-1]["new"]
    own = [m for m in new if m.split(".")[0] == "memtui"]
    notes = [
        "median of %d fresh interpreters per variant, interleaved; wall ms from before the import to"
        " start() returning" % runs,
        "with the socket present; RSS = /proc/self/statm resident bytes added (memtui: after the"
        " first sample).",
        "MB = 10^6 bytes. 'new modules' = len(sys.modules) delta.",
        "memtui.start() loaded %d new modules, %d of them memtui's own; heaviest by self import"
        " time (ms, -X importtime, inflated):" % (len(new), len(own)),
        "  " + heaviest(err, timed["new"]),
        "stdlib modules memtui loads beyond the peer: " + ", ".join(
            sorted(m for m in new if m.split(".")[0] != "memtui"
                   and m not in set(data["stdlib"][-1]["new"]) and not m.startswith("_"))),
    ]
    return [c.table("startup: fresh interpreter, time and memory added (lower is better)",
                    ["what", "median ms", "range", "vs peer", "RSS added", "vs peer",
                     "new modules", "target", "verdict"], rows, notes)]


if __name__ == "__main__":
    main()
