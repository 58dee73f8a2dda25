"""config_cli: wall time of `memtui config validate --all` and `memtui config diff` per call,
interpreter start and imports included, next to check-jsonschema validating the same files
against the same schema in the same run.

Each command is a fresh process; the variants are interleaved round by round and the table shows
medians and p90 of N rounds. Bytecode caches are warmed first (a private PYTHONPYCACHEPREFIX).
check-jsonschema checks each file alone against the schema; memtui also follows `extends`,
applies the cross-field rules and range-checks sizes and durations written with units, so it
does more work per call. Target: <= 300 ms per memtui call.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Dict, List

from . import _common as c

TARGET_MS = 300.0
PYCACHE = os.path.join(tempfile.gettempdir(), "memtui-bench-pycache")


def _bin(name: str) -> str:
    return shutil.which(name, path=os.path.dirname(c.PYTHON)) or ""


def commands(pdir: str) -> Dict[str, List[str]]:
    files = sorted(os.path.join(pdir, f) for f in os.listdir(pdir) if f.endswith(".toml"))
    schema = os.path.join(c.ROOT, "memtui", "config", "schema.json")
    memtui = _bin("memtui")
    out = {
        "python -c pass [floor]": [c.PYTHON, "-c", "pass"],
        "memtui config validate --all": [memtui, "config", "validate", "--all", "-p", pdir],
        "memtui config diff (3 envs)": [memtui, "config", "diff", "-p", pdir, "-f", "json"],
        "memtui config get KEY": [memtui, "config", "get", "cache.max_bytes", "-p", pdir],
    }
    cjs = _bin("check-jsonschema")
    if cjs:
        out["check-jsonschema (same files) [peer]"] = [cjs, "--schemafile", schema, *files]
    return out


def run_once(argv: List[str], env: Dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, cwd=c.ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    elapsed = (time.perf_counter() - t) * 1000.0
    if p.returncode not in (0, 1):  # diff exits 1 when environments differ
        raise RuntimeError("%s failed (%d): %s" % (argv, p.returncode, p.stderr[-500:]))
    return elapsed


def main(quick: bool = False) -> None:
    rounds = 7 if quick else 25
    env = c.env(None, PYTHONPYCACHEPREFIX=PYCACHE, COLUMNS="120")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for key in [k for k in env if k.startswith("MEMTUI__") or k == "MEMTUI_PROFILES"]:
        env.pop(key)
    with tempfile.TemporaryDirectory(prefix="memtui-bench-profiles-") as tmp:
        pdir = os.path.join(tmp, "profiles")
        shutil.copytree(os.path.join(c.ROOT, "profiles"), pdir)
        cmds = commands(pdir)
        for argv in cmds.values():  # warm bytecode caches and the page cache
            run_once(argv, env)
        times: Dict[str, List[float]] = {name: [] for name in cmds}
        contention = c.Contention([])
        for i in range(rounds):
            c.progress("round %d/%d" % (i + 1, rounds))
            for name, argv in cmds.items():
                times[name].append(run_once(argv, env))
        busy = contention.cores()
    peer = next((n for n in cmds if n.endswith("[peer]")), None)
    peer_ms = c.median(times[peer]) if peer else None
    rows = []
    for name, ts in times.items():
        ts = sorted(ts)
        med = c.median(ts)
        is_memtui = name.startswith("memtui")
        rows.append([name, "%.0f" % med, "%.0f" % c.percentile(ts, 90),
                     "%.2f" % (med / peer_ms) if peer_ms and is_memtui else "",
                     c.verdict(med <= TARGET_MS) if is_memtui else ""])
    notes = ["%d rounds, variants interleaved; wall ms per call incl. interpreter start; "
             "load %s; other processes used %.2f cores meanwhile" % (rounds, c.loadavg(), busy),
             "files: profiles/base,dev,test,prod.toml; target <= %.0f ms" % TARGET_MS]
    if not peer:
        notes.append("check-jsonschema not installed: pip install check-jsonschema for the peer")
    c.table("config CLI: wall time per call (ms)",
            ["command", "median", "p90", "x peer", "target"], rows, notes)
