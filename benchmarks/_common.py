"""Shared helpers: subprocess environment, statistics and plain aligned tables."""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "targets")
PYTHON = sys.executable


def target(name: str) -> str:
    return os.path.join(TARGETS, name)


class RuntimeDir:
    """A private MEMTUI_RUNTIME_DIR per benchmark so sockets never collide with tests or users."""

    def __enter__(self) -> str:
        self.path = tempfile.mkdtemp(prefix="memtui-bench-")
        os.chmod(self.path, 0o700)
        return self.path

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def env(runtime_dir: Optional[str] = None, **extra: str) -> Dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    for key in ("MEMTUI_AGENT_OPTIONS", "MEMTUI_DISABLE", "MEMTUI_ENV", "MEMTUI_DEBUG"):
        e.pop(key, None)
    if runtime_dir:
        e["MEMTUI_RUNTIME_DIR"] = runtime_dir
    e.update(extra)
    return e


def spawn(script: str, args: Sequence[str] = (), runtime_dir: Optional[str] = None,
          **kw: Any) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, target(script), *args], env=kw.pop("env", None) or env(runtime_dir),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                            cwd=ROOT, **kw)


def send(proc: subprocess.Popen, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def expect(proc: subprocess.Popen, prefix: str, timeout: float = 30.0) -> str:
    """Read lines from proc's stdout until one starts with prefix; return the rest of it."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("%s exited (rc=%s) before printing %r" % (proc.args, proc.poll(), prefix))
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError("timed out waiting for %r from %s" % (prefix, proc.args))


def expect_json(proc: subprocess.Popen, prefix: str, timeout: float = 60.0) -> Any:
    return json.loads(expect(proc, prefix, timeout))


def finish(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    try:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def percentile(sorted_xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_xs:
        return float("nan")
    k = max(0, min(len(sorted_xs) - 1, int(round(p / 100.0 * len(sorted_xs) + 0.5)) - 1))
    return sorted_xs[k]


def verdict(ok: Optional[bool]) -> str:
    return "-" if ok is None else ("PASS" if ok else "MISS")


def table(title: str, headers: List[str], rows: List[List[Any]], notes: Iterable[str] = ()) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(r: List[str]) -> str:
        out = []
        for i, c in enumerate(r):
            out.append(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]))
        return "  ".join(out).rstrip()

    rule = "-" * len(fmt(cells[0]))
    lines = ["", title, rule, fmt(cells[0]), rule] + [fmt(r) for r in cells[1:]] + [rule]
    lines += ["  " + n for n in notes]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def mib(n: float) -> str:
    return "%.2f MiB" % (n / 1048576.0)


def progress(msg: str) -> None:
    print("  .. " + msg, file=sys.stderr, flush=True)


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_jiffies() -> tuple:
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    busy = f[0] + f[1] + f[2] + f[5] + f[6]
    steal = f[7] if len(f) > 7 else 0
    return busy, steal


def _proc_jiffies(pid: int) -> int:
    try:
        with open("/proc/%d/stat" % pid) as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


class Contention:
    """How much CPU *other* processes used while we measured, in cores (0.0 = machine to ourselves).

    Machine-wide busy jiffies from /proc/stat minus those of our own processes; hypervisor steal
    is counted as contention too."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self.t0 = time.monotonic()
        self.m0 = _machine_jiffies()
        self.p0 = sum(_proc_jiffies(p) for p in self.pids) + self._self()

    @staticmethod
    def _self() -> int:
        t = os.times()
        return int(round((t.user + t.system) * _TCK))

    def cores(self) -> float:
        wall = time.monotonic() - self.t0
        busy, steal = _machine_jiffies()
        mine = sum(_proc_jiffies(p) for p in self.pids) + self._self() - self.p0
        others = (busy - self.m0[0]) - mine + (steal - self.m0[1])
        return max(0.0, others / _TCK / wall) if wall > 0 else 0.0
