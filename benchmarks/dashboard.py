"""dashboard: how soon `memtui attach PID` shows live numbers, what the dashboard costs itself,
and what it costs the process it watches.

Everything runs for real: the demo service (`python -m memtui.demo.service --components 50`,
its own agent), and the dashboard as a user starts it, `memtui attach PID`, in a terminal — a
private tmux server (120×40) whose screen is read with `tmux capture-pane`.
  (a) time to live numbers: from launching the command to the screen showing the target's PID
      and its RSS, polled every 10 ms; median of N interleaved runs. Peers in the same harness,
      until they have printed and exited: `memtui stats PID` (the one-shot CLI) and
      `python -c pass` (interpreter start-up plus the harness itself). Target <= 1.5 s.
  (b) the dashboard's own CPU (user+sys of the `memtui attach` process) attached at 1 Hz to the
      demo with 50 components, on the Overview and on the Caches pane. Target <= 5% of a core.
  (c) the demo's throughput (requests completed per second, read from the agent's `requests`
      worker pool) with the dashboard attached vs nothing attached, in windows taken in turn on
      one demo process, driven above its capacity so the figure is what it can do, not what it
      is offered. A control runs the dashboard's feed alone (the same polls, no screen).
      Target >= 99%.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import psutil

from memtui import paths
from memtui.client import AgentClient
from memtui.demo import DemoProcess

from . import _common as c

COMPONENTS = 50
TARGET_ATTACH_S = 1.5
TARGET_CPU = 0.05
TARGET_THROUGHPUT = 0.99
SIZE = (120, 40)
POLL_S = 0.01
# the demo's offered load in (c): its 30 s wave never dips below 300 requests/s, above what its
# 4-connection pool can serve (~250/s with 2-30 ms queries), so completions measure capacity
SATURATING_RATE = 600.0
LIVE_RSS = re.compile(r"\brss \d+(\.\d)? (B|KiB|MiB|GiB|TiB)\b")
EXITED_OK = "[exited 0]"  # what the pane's shell prints after a command that succeeded


def memtui_argv(*args: str) -> List[str]:
    """The `memtui` console script of this environment, as a user runs it (else -m memtui)."""
    script = os.path.join(os.path.dirname(c.PYTHON), "memtui")
    return ([script] if os.access(script, os.X_OK) else [c.PYTHON, "-m", "memtui"]) + list(args)


def check_attach() -> None:
    out = subprocess.run(memtui_argv("attach", "--help"), capture_output=True, text=True,
                         env=c.env(), cwd=c.ROOT, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("`memtui attach` is not available here (%s): the dashboard benchmark "
                           "needs it." % (out.stderr.strip().splitlines() or ["?"])[-1])


class Tmux:
    """A private tmux server (its own socket, no user config) running one command per session."""

    def __init__(self, runtime_dir: str) -> None:
        self.name = "memtui-bench-%d" % os.getpid()
        self.env = c.env(runtime_dir)
        self.runtime_dir = runtime_dir

    def run(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["tmux", "-L", self.name, "-f", os.devnull, *args],
                             capture_output=True, text=True, env=self.env, timeout=30)
        if check and out.returncode != 0:
            raise RuntimeError("tmux %s failed: %s" % (args[0], out.stderr.strip()))
        return out.stdout

    def start(self, session: str, argv: Sequence[str]) -> None:
        """Run *argv* in a new detached session of SIZE. A shell around it keeps the pane (and
        any error the command printed) on screen after it exits."""
        command = " ".join(shlex.quote(a) for a in argv)
        self.run("new-session", "-d", "-s", session, "-x", str(SIZE[0]), "-y", str(SIZE[1]),
                 "-e", "MEMTUI_RUNTIME_DIR=" + self.runtime_dir, "-c", c.ROOT,
                 "%s; rc=$?; echo; echo \"[exited $rc]\"; sleep 600" % command)

    def screen(self, session: str) -> str:
        return self.run("capture-pane", "-p", "-t", session, check=False)

    def keys(self, session: str, *keys: str) -> None:
        self.run("send-keys", "-t", session, *keys, check=False)

    def command_process(self, session: str, needle: str, timeout: float = 10.0) -> psutil.Process:
        """The process started by the session's shell whose command line contains *needle*
        (the shell's own command line contains it too, so it is not a candidate)."""
        shell = int(self.run("display-message", "-p", "-t", session, "#{pane_pid}").strip())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for proc in psutil.Process(shell).children(recursive=True):
                    if needle in " ".join(proc.cmdline()):
                        return proc
            except psutil.Error:
                pass
            time.sleep(0.02)
        raise RuntimeError("no %r process in tmux session %s; screen:\n%s"
                           % (needle, session, self.screen(session)))

    def kill(self, session: str) -> None:
        self.run("kill-session", "-t", session, check=False)

    def close(self) -> None:
        """Stop the server and remove its socket file (tmux leaves it behind when killed)."""
        socket = self.run("display-message", "-p", "#{socket_path}", check=False).strip()
        self.run("kill-server", check=False)
        if socket and os.path.basename(socket) == self.name:
            try:
                os.unlink(socket)
            except OSError:
                pass


def time_to_screen(tmux: Tmux, session: str, argv: Sequence[str],
                   shown: Callable[[str], bool], timeout: float = 20.0) -> float:
    """Seconds from launching *argv* in a fresh session until shown(screen text) is true."""
    t0 = time.monotonic()
    tmux.start(session, argv)
    while True:
        text = tmux.screen(session)
        elapsed = time.monotonic() - t0
        if shown(text):
            return elapsed
        if "[exited " in text or elapsed > timeout:
            raise RuntimeError("%s %s; screen:\n%s" % (
                " ".join(argv), "exited" if "[exited " in text else
                "did not show live numbers within %.0f s" % timeout, text.rstrip()))
        time.sleep(POLL_S)


def quit_dashboard(tmux: Tmux, session: str, proc: Optional[psutil.Process]) -> None:
    tmux.keys(session, "q")
    if proc is not None:
        try:
            proc.wait(5)
        except (psutil.TimeoutExpired, psutil.Error):
            pass
    tmux.kill(session)


# (a) ---------------------------------------------------------------------------------------
def attach_times(tmux: Tmux, pid: int, runs: int) -> Dict[str, List[float]]:
    attach = memtui_argv("attach", str(pid))
    variants: Dict[str, Tuple[List[str], Callable[[str], bool]]] = {
        "attach": (attach, lambda s: ("PID %d " % pid) in s and bool(LIVE_RSS.search(s))),
        "stats": (memtui_argv("stats", str(pid)), lambda s: EXITED_OK in s),
        "python": ([c.PYTHON, "-c", "pass"], lambda s: EXITED_OK in s),
    }
    times: Dict[str, List[float]] = {v: [] for v in variants}
    for i in range(runs + 1):  # the first round warms the page cache and is not counted
        order = list(variants)[i % 3:] + list(variants)[:i % 3]
        for v in order:
            argv, shown = variants[v]
            session = "a%d-%s" % (i, v)
            t = time_to_screen(tmux, session, argv, shown)
            if v == "attach":
                proc = tmux.command_process(session, " attach ")
                quit_dashboard(tmux, session, proc)
            else:
                tmux.kill(session)
            if i:
                times[v].append(t)
        if i:
            c.progress("attach run %d/%d: %s" % (i, runs, "  ".join(
                "%s %.0f ms" % (v, 1000 * times[v][-1]) for v in variants)))
    return times


# (b) ---------------------------------------------------------------------------------------
def dashboard_cpu(tmux: Tmux, pid: int, seconds: float, pane_key: str) -> Dict[str, float]:
    session = "cpu-" + pane_key
    argv = memtui_argv("attach", str(pid), "--interval", "1")
    time_to_screen(tmux, session, argv, lambda s: bool(LIVE_RSS.search(s)))
    proc = tmux.command_process(session, " attach ")
    try:
        tmux.keys(session, pane_key)
        time.sleep(2.0)  # past the pane's first render
        target = psutil.Process(pid)
        watch = c.Contention([proc.pid, pid])
        cpu0, tcpu0, t0 = _cpu(proc), _cpu(target), time.monotonic()
        time.sleep(seconds)
        cpu1, tcpu1, t1 = _cpu(proc), _cpu(target), time.monotonic()
        screen = tmux.screen(session)
        if "Traceback" in screen or "[exited " in screen:
            raise RuntimeError("the dashboard failed while measured; screen:\n" + screen)
        return {"cpu": (cpu1 - cpu0) / (t1 - t0), "target_cpu": (tcpu1 - tcpu0) / (t1 - t0),
                "rss": proc.memory_info().rss, "others": watch.cores(), "secs": t1 - t0}
    finally:
        quit_dashboard(tmux, session, proc)


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


# (c) ---------------------------------------------------------------------------------------
# the dashboard's own polling (memtui.tui.feed.Feed at 1 Hz) without a screen: what the agent
# answers for a dashboard, apart from the CPU the dashboard and its terminal take on this host
FEED_ONLY = """
import sys, threading
from memtui.client import AgentClient
from memtui.tui.feed import Feed
live = threading.Event()
feed = Feed(AgentClient(pid=int(sys.argv[1]), path=sys.argv[2]), lambda s: live.set(),
            lambda c: None, interval=1.0).start()
print("LIVE" if live.wait(30) else "NOT LIVE", flush=True)
sys.stdin.read()
feed.stop()
"""
MODES = ["alone", "feed", "attached"]


def throughput(tmux: Tmux, demo: DemoProcess, client: AgentClient, runtime_dir: str,
               rounds: int, seconds: float) -> Dict[str, List[Dict[str, float]]]:
    """Windows on one demo process, modes in turn (order rotated every round): nothing
    attached; the dashboard's feed alone, headless; the dashboard in tmux at 1 Hz. Completions
    come from the agent's live stats, read by the benchmark's own otherwise idle connection at
    both ends of every window in every mode."""
    target = psutil.Process(demo.pid)
    out: Dict[str, List[Dict[str, float]]] = {m: [] for m in MODES}

    def window(watcher: Optional[psutil.Process]) -> Dict[str, float]:
        watch = c.Contention([demo.pid] + ([watcher.pid] if watcher else []))
        w0 = _cpu(watcher) if watcher else 0.0
        a = _completed(client), _cpu(target), time.monotonic()
        time.sleep(seconds)
        b = _completed(client), _cpu(target), time.monotonic()
        secs = b[2] - a[2]
        return {"rps": (b[0] - a[0]) / secs, "target_cpu": (b[1] - a[1]) / secs,
                "watcher_cpu": ((_cpu(watcher) - w0) / secs) if watcher else 0.0,
                "others": watch.cores(), "secs": secs}

    for r in range(rounds):
        for mode in MODES[r % len(MODES):] + MODES[:r % len(MODES)]:
            if mode == "alone":
                time.sleep(2.0)  # as long as the other modes settle after starting
                out[mode].append(window(None))
            elif mode == "feed":
                proc = subprocess.Popen([c.PYTHON, "-c", FEED_ONLY, str(demo.pid),
                                         paths.socket_path(demo.pid, runtime_dir)],
                                        env=c.env(runtime_dir), cwd=c.ROOT, text=True, bufsize=1,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                try:
                    c.expect(proc, "LIVE")
                    time.sleep(2.0)
                    out[mode].append(window(psutil.Process(proc.pid)))
                finally:
                    c.finish(proc)
            else:
                session = "tp%d" % r
                time_to_screen(tmux, session, memtui_argv("attach", str(demo.pid), "--interval",
                                                          "1"), lambda s: bool(LIVE_RSS.search(s)))
                dash = tmux.command_process(session, " attach ")
                try:
                    time.sleep(2.0)
                    out[mode].append(window(dash))
                finally:
                    quit_dashboard(tmux, session, dash)
        c.progress("throughput round %d/%d: %s" % (r + 1, rounds, "  ".join(
            "%s %.1f/s" % (m, out[m][-1]["rps"]) for m in MODES)))
    return out


def _completed(client: AgentClient) -> int:
    s = client.stats(fresh=True)["components"]["requests"]["stats"]
    return s["completed"] + s["failed"]


# report ------------------------------------------------------------------------------------
def main(quick: bool = False) -> List[str]:
    if shutil.which("tmux") is None:
        raise RuntimeError("the dashboard benchmark runs the dashboard in tmux; install tmux")
    check_attach()
    runs, cpu_s, rounds, window_s = (3, 10.0, 2, 6.0) if quick else (5, 30.0, 3, 15.0)
    tables = []
    with c.RuntimeDir() as rd:
        tmux = Tmux(rd)
        try:
            load0 = c.loadavg()
            with DemoProcess(["--components", str(COMPONENTS), "--exit-with-parent"],
                             env=c.env(rd)) as demo:
                with AgentClient(pid=demo.pid, path=paths.socket_path(demo.pid, rd)) as client:
                    ncomp = len(client.stats()["components"])
                times = attach_times(tmux, demo.pid, runs)
                cpu = {key: dashboard_cpu(tmux, demo.pid, cpu_s, key) for key in ("1", "3")}
                c.progress("dashboard CPU: overview %.2f%%  caches %.2f%%" % (
                    100 * cpu["1"]["cpu"], 100 * cpu["3"]["cpu"]))
            tables.append(report_attach(times, ncomp, runs))
            tables.append(report_cpu(cpu, ncomp, cpu_s))
            with DemoProcess(["--components", str(COMPONENTS), "--rate", str(SATURATING_RATE),
                              "--exit-with-parent"], env=c.env(rd)) as demo:
                with AgentClient(pid=demo.pid, path=paths.socket_path(demo.pid, rd)) as client:
                    time.sleep(3.0)  # pool connected, workers spawned, queue full
                    tp = throughput(tmux, demo, client, rd, rounds, window_s)
            tables.append(report_throughput(tp, rounds, window_s, load0, c.loadavg()))
        finally:
            tmux.close()
    return tables


def report_attach(times: Dict[str, List[float]], ncomp: int, runs: int) -> str:
    med = {v: c.median(x) for v, x in times.items()}
    labels = {"attach": "memtui attach PID", "stats": "memtui stats PID [peer]",
              "python": "python -c pass [floor]"}
    rows = []
    for v in ("attach", "stats", "python"):
        rows.append([labels[v], "%.0f" % (1000 * med[v]),
                     "%.0f-%.0f" % (1000 * min(times[v]), 1000 * max(times[v])),
                     "%.2fx" % (med[v] / med["stats"]), "%.2fx" % (med[v] / med["python"]),
                     "<= %.1f s" % TARGET_ATTACH_S if v == "attach" else "",
                     c.verdict(med[v] <= TARGET_ATTACH_S) if v == "attach" else "-"])
    notes = [
        "median of %d runs each, interleaved (order rotated; a first uncounted round warms the"
        " caches);" % runs,
        "each run: a new session of a private tmux server (%dx%d), the command run by the pane's"
        " shell;" % SIZE,
        "time from `tmux new-session` until `tmux capture-pane` shows the target's PID and"
        " 'rss <size>' (attach),",
        "or the shell's note that the command exited 0 (stats: everything printed; python);"
        " the screen is read",
        "every %.0f ms (+ a capture's own cost, a few ms)." % (1000 * POLL_S),
        "target: the demo service with %d components, default rate." % ncomp,
    ]
    return c.table("dashboard (a): time to live numbers on screen (ms, lower is better)",
                   ["command", "median ms", "range", "vs stats", "vs python", "target",
                    "verdict"], rows, notes)


def report_cpu(cpu: Dict[str, Dict[str, float]], ncomp: int, seconds: float) -> str:
    rows = []
    for key, label in (("1", "Overview pane (1)"), ("3", "Caches pane (3)")):
        r = cpu[key]
        rows.append(["memtui attach PID --interval 1, " + label, "%.2f%%" % (100 * r["cpu"]),
                     c.mib(r["rss"]), "%.2f%%" % (100 * r["target_cpu"]), "%.2f" % r["others"],
                     "<= %.0f%%" % (100 * TARGET_CPU), c.verdict(r["cpu"] <= TARGET_CPU)])
    notes = [
        "user+sys CPU of the dashboard process (psutil) over %.0f s, after 2 s on the pane, as %%"
        " of one core;" % seconds,
        "'target CPU' = the demo's own CPU meanwhile (%d components, default rate)." % ncomp,
        "'others' = cores used by everything else (incl. the tmux server drawing the screen).",
    ]
    return c.table("dashboard (b): the dashboard's own CPU at 1 Hz (lower is better)",
                   ["process", "CPU", "RSS", "target CPU", "others", "target", "verdict"],
                   rows, notes)


def report_throughput(tp: Dict[str, List[Dict[str, float]]], rounds: int, seconds: float,
                      load0: str, load1: str) -> str:
    med = {m: c.median(x["rps"] for x in tp[m]) for m in MODES}
    alone = sorted(x["rps"] for x in tp["alone"])
    labels = {"alone": "demo, nothing attached [peer]",
              "feed": "demo + the dashboard's feed, headless [control]",
              "attached": "demo + memtui attach PID --interval 1"}
    rows = []
    for m in MODES:
        ratio = med[m] / med["alone"]
        pairs = sorted(b["rps"] / a["rps"] for a, b in zip(tp["alone"], tp[m]))
        judged = m == "attached"
        rows.append([labels[m], "%.1f" % med[m], " ".join("%.1f" % x["rps"] for x in tp[m]),
                     "" if m == "alone" else "%.1f%%" % (100 * ratio),
                     "" if m == "alone" else "%.1f%% [%.1f-%.1f]" % (
                         100 * c.median(pairs), 100 * pairs[0], 100 * pairs[-1]),
                     "%.1f%%" % (100 * c.median(x["target_cpu"] for x in tp[m])),
                     "" if m == "alone" else
                     "%.1f%%" % (100 * c.median(x["watcher_cpu"] for x in tp[m])),
                     "%.2f" % c.median(x["others"] for x in tp[m]),
                     ">= %.0f%%" % (100 * TARGET_THROUGHPUT) if judged else "",
                     c.verdict(ratio >= TARGET_THROUGHPUT) if judged else "-"])
    notes = [
        "%d rounds of one %.0f s window per mode on one demo process (%d components, offered %.0f"
        " requests/s)," % (rounds, seconds, COMPONENTS, SATURATING_RATE),
        "modes in turn, order rotated each round; requests/s = completed+failed of its"
        " `requests` pool per second,",
        "read from the agent (stats fresh=True) at both ends of a window in every mode.",
        "'vs alone' = ratio of medians (judged); 'paired' = median [min-max] of per-round ratios"
        " to the same round's",
        "nothing-attached window. The nothing-attached windows span %.1f%% among themselves"
        " (max/min - 1):" % (100 * (alone[-1] / alone[0] - 1)),
        "differences below that are noise (few windows understate it: the feed control makes"
        " the same polls as the",
        "dashboard with less CPU, so a feed row below the dashboard's is noise too)."
        " 'watcher CPU' = the feed's or",
        "the dashboard's own CPU, % of a core.",
        "The demo is bounded by its 4-connection pool's query sleeps, not by its CPU; what a"
        " watcher costs it shows",
        "as its own CPU ('target CPU') and as threads woken late while the host's 2 CPUs are"
        " busy ('others' = cores",
        "used by other processes, the tmux server included). load avg before/after: %s / %s."
        % (load0, load1),
    ]
    return c.table("dashboard (c): the watched demo's throughput (requests/s, higher is better)",
                   ["mode", "median/s", "per window", "vs alone", "paired [range]",
                    "target CPU", "watcher CPU", "others", "target", "verdict"], rows, notes)


if __name__ == "__main__":
    main()
