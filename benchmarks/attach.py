"""attach: how fast `memtui.attach.attach(PID)` gets a working client each way in, and how long
an injection stops the target, measured inside it, next to the peer `memray attach`.

  (a) latency: attach() until the returned client has answered one stats(), for each way in:
      agent (the target called memtui.start()), signal (memtui.install(); woken by SIGUSR2),
      inject (a plain CPython without memtui; attach(pid, inject=True)) and external (the same
      plain target, psutil from outside). Every round is a fresh target (after a wake or an
      injection the agent listens); ways interleaved; one untimed warm-up round per way.
  (b) pause: benchmarks/targets/attach_ticker.py reports every 0.5 s the largest gap between two
      wake-ups of a 1 ms ticker (time.sleep(0.001)). The largest gap in the windows around the
      attach (from its start to 0.5 s after it returned) vs the largest before it, same process.
      Targets: `sleep` (the main thread is the ticker: thread route), `loop` (main thread in a
      tight pure-Python loop, ticker on a second thread) and `loop1` (one spinning thread that
      times its own iterations; no thread asleep in a system call: pending route). Peer:
      `memray attach --method gdb -o FILE --duration 1 PID` (memray from this venv; the target
      then runs under the venv's python, the same CPython binary), with a 60 s timeout; what it
      printed, its exit code, and whether the target survived and kept ticking are the result.
All targets and this process use one private MEMTUI_RUNTIME_DIR.
"""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional

from memtui.attach import attach as memtui_attach
from memtui.protocol import AgentError

from . import _common as c

LATENCY_WAYS = [("agent", "agent"), ("signal", "install"), ("inject", "plain"),
                ("external", "plain")]
PAUSE_MODES = ["sleep", "loop", "loop1"]
MEMRAY = os.path.join(os.path.dirname(c.PYTHON), "memray")
MEMRAY_TIMEOUT = 60.0


def pyenv_311() -> str:
    """A CPython 3.11 outside the venv (so a plain target cannot import memtui or psutil)."""
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11.*/bin/python3.11")))
    return found[-1] if found else os.path.realpath(c.PYTHON)


class Target:
    """One target process; a thread collects its ``ready`` and ``tick`` lines as they arrive."""

    def __init__(self, argv: List[str], env: Dict[str, str], rd: str, live: List["Target"]):
        self.err_path = os.path.join(rd, "stderr-%d-%d.txt" % (len(live), time.monotonic_ns()))
        self.err = open(self.err_path, "w")
        self.ticks: List[tuple] = []  # (t0, t1, max gap ms, loops per s)
        self.is_ready = False
        self.ready = threading.Event()
        self.proc = subprocess.Popen(argv, env=env, cwd=rd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, text=True, bufsize=1)
        live.append(self)
        self.pid = self.proc.pid
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("ready"):
                self.is_ready = True
                self.ready.set()
            elif line.startswith("tick "):
                t0, t1, gap, loops = line.split()[1:5]
                self.ticks.append((float(t0), float(t1), float(gap), float(loops)))
        self.ready.set()

    def wait_ready(self, timeout: float = 30.0) -> "Target":
        if not self.ready.wait(timeout) or not self.is_ready:
            raise RuntimeError("target %s did not print ready (rc=%s): %s"
                               % (self.proc.args, self.proc.poll(), self.stderr()[-500:]))
        return self

    def wait_ticks(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ticks) < n:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("target %d stopped ticking: %s"
                                   % (self.pid, self.stderr()[-500:]))
            time.sleep(0.05)

    def stderr(self) -> str:
        self.err.flush()
        with open(self.err_path) as fh:
            return fh.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        if not self.err.closed:
            self.err.close()


def plain_env(rd: str, memtui: bool) -> Dict[str, str]:
    e = c.env(rd)
    if not memtui:
        e.pop("PYTHONPATH", None)
    else:
        e["PYTHONPATH"] = c.ROOT
    return e


# -- (a) latency --------------------------------------------------------------------------------
def latency_round(way: str, mode: str, rd: str, live: List[Target]) -> tuple:
    t = Target([pyenv_311(), c.target("attach_target.py"), mode], plain_env(rd, mode != "plain"),
               rd, live)
    try:
        t.wait_ready()
        t0 = time.perf_counter()
        got = memtui_attach(t.pid, inject=(way == "inject"))
        try:
            got.client.stats()
            ms = (time.perf_counter() - t0) * 1000.0
        finally:
            got.client.close()
        if got.way != way:
            raise RuntimeError("expected way %s, attach() took %s: %s"
                               % (way, got.way, got.message))
        return ms, got.details
    finally:
        t.stop()


def latency(rounds: int, rd: str, live: List[Target]) -> tuple:
    times: Dict[str, List[float]] = {w: [] for w, _ in LATENCY_WAYS}
    details: List[dict] = []
    for r in range(rounds + 1):  # round 0 warms this process (imports, caches), not counted
        order = LATENCY_WAYS[r % len(LATENCY_WAYS):] + LATENCY_WAYS[:r % len(LATENCY_WAYS)]
        for way, mode in order:
            ms, det = latency_round(way, mode, rd, live)
            if r:
                times[way].append(ms)
                if way == "inject":
                    details.append(det)
    base = c.median(times["agent"])
    rows = []
    for way, mode in LATENCY_WAYS:
        xs = times[way]
        how = {"agent": "connect", "signal": "SIGUSR2, agent thread starts",
               "external": "psutil from outside"}.get(way, "")
        if way == "inject":
            routes = sorted({d.get("route") for d in details})
            how = "%s route; main held %.1f ms, inject+agent start %.0f ms" % (
                "/".join(map(str, routes)),
                c.median(d.get("main_held_s", 0) for d in details) * 1e3,
                c.median(d.get("elapsed_s", 0) for d in details) * 1e3)
        rows.append([way + (" [baseline]" if way == "agent" else ""), mode,
                     "%.1f" % c.median(xs), "%.1f" % min(xs), "%.1f" % max(xs), len(xs),
                     "%.1fx" % (c.median(xs) / base), how])
    text = c.table("attach: attach() until the client answered one stats(), ms (lower is better)",
                   ["way", "target", "median", "min", "max", "n", "vs agent", "how"], rows, [
                       "fresh target per round (%s, main thread blocked reading stdin), ways "
                       "interleaved, %d rounds + 1 untimed warm-up; load average %s" % (
                           pyenv_311(), rounds, c.loadavg()),
                       "inject: 'main held' = how long ptrace kept the borrowed thread stopped; "
                       "'inject+agent start' = injector call until the agent's status file."])
    return text, times


# -- (b) pause ----------------------------------------------------------------------------------
def run_memray(pid: int, rd: str) -> Dict[str, Any]:
    out = os.path.join(rd, "memray-%d.bin" % pid)
    argv = [MEMRAY, "attach", "--verbose", "--method", "gdb", "-o", out, "-f", "--duration", "1",
            str(pid)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=rd, start_new_session=True)
    try:
        printed, _ = proc.communicate(timeout=MEMRAY_TIMEOUT)
        rc: Any = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # memray and its gdb: the session we started
        printed, _ = proc.communicate()
        rc = "timeout"
    lines = [x.strip() for x in (printed or "").splitlines() if x.strip()]
    why = [x for x in lines if "Couldn't" in x] or [x for x in lines if "rror" in x]
    return {"ok": rc == 0, "rc": rc, "printed": lines[-1] if lines else "",
            "why": why[0] if why else "", "file": os.path.exists(out)}


def pause_run(method: str, mode: str, rd: str, live: List[Target], base_n: int) -> Dict[str, Any]:
    py = pyenv_311() if method == "memtui" else c.PYTHON
    t = Target([py, c.target("attach_ticker.py"), mode, "90"], plain_env(rd, False), rd, live)
    res: Dict[str, Any] = {"method": method, "mode": mode, "route": "", "held": None}
    try:
        t.wait_ready()
        t.wait_ticks(base_n + 1)  # the first window is warm-up
        t0 = time.monotonic()
        if method == "memtui":
            try:
                got = memtui_attach(t.pid, inject=True)
                got.client.stats()
                got.client.close()
                det = got.details
                res.update(ok=True, rc=0, held=det.get("held_s", 0.0) * 1e3,
                           route="%s/%s" % (det.get("route"),
                                            "main" if det.get("tid") == t.pid else "other"))
            except AgentError as exc:
                res.update(ok=False, rc="error", printed=str(exc))
        else:
            res.update(run_memray(t.pid, rd), route="gdb")
        t1 = time.monotonic()
        time.sleep(1.6)
        res["alive"] = t.proc.poll() is None
        ticks = list(t.ticks)[1:]
        base = [x for x in ticks if x[1] <= t0]
        around = [x for x in ticks if x[1] > t0 and x[0] < t1 + 0.5]
        res.update(took=t1 - t0, base=max(x[2] for x in base),
                   around=max((x[2] for x in around), default=None) if res["alive"] else None,
                   kept=sum(1 for x in ticks if x[0] >= t1))
        if mode != "sleep" and around:
            res["rate"] = min(x[3] for x in around) / c.median(x[3] for x in base)
        err = [x for x in t.stderr().strip().splitlines() if x.strip()]
        res["stderr"] = err[-1] if err else ""
        return res
    finally:
        t.stop()


def fmt_ms(xs: List[Optional[float]]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return "%.1f" % xs[0] if len(xs) == 1 else "%.1f (%.1f)" % (c.median(xs), max(xs))


def pause(runs: int, base_n: int, rd: str, live: List[Target]) -> str:
    results: Dict[tuple, List[dict]] = {}
    for _ in range(runs):
        for mode in PAUSE_MODES:
            for method in ("memtui", "memray"):
                c.progress("pause: %s %s" % (method, mode))
                results.setdefault((method, mode), []).append(
                    pause_run(method, mode, rd, live, base_n))
    rows, notes = [], []
    for method in ("memtui", "memray"):
        for mode in PAUSE_MODES:
            rs = results[(method, mode)]
            ok = [r for r in rs if r["ok"]]
            rates = [r["rate"] for r in rs if r.get("rate") is not None]
            rows.append([
                "memtui inject" if method == "memtui" else "memray attach gdb [peer]", mode,
                "/".join(sorted({str(r["route"]) for r in rs})),
                fmt_ms([r["held"] for r in rs]), fmt_ms([r["base"] for r in rs]),
                fmt_ms([r["around"] for r in rs]) if any(r["alive"] for r in rs) else "died",
                ("%.0f%%" % (100 * min(rates))) if rates else "-",
                "%d/%d" % (len(ok), len(rs)), "%.2f" % c.median(r["took"] for r in rs),
                "%d/%d" % (sum(r["alive"] for r in rs), len(rs)),
                "%d/%d" % (sum(r["kept"] > 0 for r in rs), len(rs))])
            for key in ("printed", "why", "stderr"):
                seen = sorted({"%s (rc=%s)" % (r[key], r["rc"]) if key == "printed" else r[key]
                               for r in rs if r.get(key)})
                label = {"printed": "printed last", "why": "its error line",
                         "stderr": "target stderr last line"}[key]
                notes += ["%s %s: %s: %s" % (method, mode, label, s) for s in seen]
    for mode in PAUSE_MODES:
        mt = [r for r in results[("memtui", mode)] if r["ok"] and r["alive"]]
        mr = [r for r in results[("memray", mode)] if r["ok"] and r["alive"]]
        if mt and mr:
            notes.append("ratio memtui/memray, %s: max gap around %.2fx, attach time %.2fx" % (
                mode, c.median(r["around"] for r in mt) / c.median(r["around"] for r in mr),
                c.median(r["took"] for r in mt) / c.median(r["took"] for r in mr)))
        else:
            notes.append("ratio memtui/memray, %s: none, memray attach worked (target alive) in "
                         "%d/%d runs, memtui inject in %d/%d" % (
                             mode, len(mr), len(results[("memray", mode)]), len(mt),
                             len(results[("memtui", mode)])))
            stopped = [r["around"] for r in results[("memray", mode)] if r["around"] is not None
                       and r["alive"]]
            if mt and stopped:  # failed, yet it did stop the target: say by how much
                notes.append("  (memray failed but its gdb still stopped the surviving target: "
                             "gap around %.1f ms vs memtui's %.1f ms)" % (
                                 c.median(stopped), c.median(r["around"] for r in mt)))
    notes = [
        "gaps in ms, 'median (worst)' over %d runs; baseline = largest gap of %d x 0.5 s windows "
        "before the attach, around = windows from its start to 0.5 s after it returned" % (
            runs, base_n),
        "route: thread/main|other = which thread ptrace borrowed; held = how long it was "
        "stopped (median (worst) ms)",
        "loop rate = slowest window around / median baseline of the busy loop's iterations per s",
        "died: the target exited, so the gap of its stop was never reported (its own "
        "stderr below)",
        "kept ticking = windows that began after the attach returned (within 1.6 s)",
        "memtui targets: %s; memray targets: %s (same binary)" % (
            pyenv_311(), os.path.realpath(c.PYTHON))] + notes
    return c.table("attach pause: the target's own 1 ms ticker, largest gap in ms (lower is "
                   "better)", ["method", "target", "route", "held", "baseline gap",
                               "gap around", "loop rate", "attach ok", "took s", "alive",
                               "kept ticking"], rows, notes)


def main(quick: bool = False) -> List[str]:
    rounds, runs, base_n = (3, 1, 2) if quick else (5, 3, 4)
    live: List[Target] = []
    saved = os.environ.get("MEMTUI_RUNTIME_DIR")
    try:
        with c.RuntimeDir() as rd:
            os.environ["MEMTUI_RUNTIME_DIR"] = rd  # attach() looks for sockets here
            try:
                c.progress("attach latency, %d rounds" % rounds)
                text, _ = latency(rounds, rd, live)
                return [text, pause(runs, base_n, rd, live)]
            finally:
                for t in live:
                    t.stop()
    finally:
        if saved is None:
            os.environ.pop("MEMTUI_RUNTIME_DIR", None)
        else:
            os.environ["MEMTUI_RUNTIME_DIR"] = saved


if __name__ == "__main__":
    main()
