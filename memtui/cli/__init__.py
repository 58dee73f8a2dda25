"""The `memtui` command line: parses arguments, talks to agents through AgentClient and prints
with memtui.render, or opens the dashboard (memtui.cli.dashboard). Every AgentError becomes one
sentence on stderr and exit code 2."""
from __future__ import annotations

import enum
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from .. import discovery, launch, render
from ..agent.bootstrap import launch_environ
from ..client import AgentClient, process_name
from ..protocol import AgentError
from ..config import ConfigError
from . import config as config_cli
from . import dashboard
from . import snapshot as snapshot_cli
from .config import config_app
from ._common import EXIT_ERROR, UsageFailure, console, print_json, sentence

app = typer.Typer(name="memtui", help="See and tune the memory of running Python services. "
                  "Without a command: pick a process and open the dashboard on it.",
                  pretty_exceptions_enable=False, add_completion=False)


JsonOpt = typer.Option(False, "--json", help="Print JSON instead of tables.")
PidArg = typer.Argument(..., min=1, help="PID of a process running the agent.")
SocketOpt = typer.Option(None, "--socket", metavar="PATH",
                         help="The agent's socket, for agents started with runtime_dir= or "
                              "socket_path=; it must still be served by PID.")
IntervalOpt = typer.Option(1.0, "--interval", min=0.25, max=10.0,
                           help="Seconds between dashboard refreshes (+/- change it live).")
ProfilesOpt = typer.Option(None, "--profiles", "-p", metavar="DIR",
                           help="Profiles directory for the Profiles pane (default: the one the "
                                "agent read its profile from).")


def _connect(pid: int, path: Optional[str] = None) -> AgentClient:
    return AgentClient(pid=pid, path=path).connect()


def _profiles_dir(profiles: Optional[str]) -> Optional[str]:
    if profiles is not None and not os.path.isdir(profiles):
        raise UsageFailure("No profiles directory %s" % profiles)
    return os.path.abspath(profiles) if profiles is not None else None


@app.command()
def ps(json_: bool = JsonOpt) -> None:
    """List running agents and Python processes without one; remove stale sockets and files."""
    found = discovery.scan()
    if json_:
        print_json(found)
        return
    console.print(render.ps_tables(found["agents"], found["others"]))
    sockets = [c for c in found["cleaned"] if c["kind"] == "socket"]
    others = [c for c in found["cleaned"] if c["kind"] != "socket"]
    if sockets:
        console.print(Text("Removed %d stale socket(s): PID %s." % (
            len(sockets), ", ".join(str(c["pid"]) for c in sockets)), style="dim"))
    if others:
        console.print(Text("Removed %d leftover file(s) of exited processes or abandoned "
                           "injections: PID %s." % (len(others), ", ".join(
                               sorted({str(c["pid"]) for c in others}, key=int))), style="dim"))


# the dashboard -------------------------------------------------------------------------------
@app.callback(invoke_without_command=True)
def _picker(ctx: typer.Context) -> None:
    """Without a command: the process picker in a terminal, `memtui ps` output in a pipe."""
    if ctx.invoked_subcommand is not None:
        return
    if not dashboard.is_terminal():
        # Not a terminal (a pipe, a script): the same list the picker would show, as text.
        ps(json_=False)
        return
    raise typer.Exit(dashboard.pick(interval=1.0))


@app.command()
def attach(pid: int = typer.Argument(..., min=1, help="PID of any running process."),
           inject: bool = typer.Option(False, "--inject", help="If PID is CPython 3.9+ without "
                                       "an agent, start one in it (ptrace, or sys.remote_exec "
                                       "on 3.14+)."),
           no_tui: bool = typer.Option(False, "--no-tui", help="Get in, say how, and exit "
                                       "(the agent stays on)."),
           timeout: float = typer.Option(10.0, "--timeout", min=0.5, max=300.0,
                                         help="Seconds to wait for a woken or injected agent."),
           socket: Optional[str] = SocketOpt, interval: float = IntervalOpt,
           profiles: Optional[str] = ProfilesOpt) -> None:
    """Open the dashboard on PID, getting in the safest way there is: its agent, a dormant
    agent woken by its signal, an injected agent (--inject), or the external view."""
    raise typer.Exit(dashboard.attach(pid, socket, interval, _profiles_dir(profiles),
                                      inject=inject, no_tui=no_tui, timeout=timeout))


# stats / gc / trace --------------------------------------------------------------------------
@app.command()
def stats(pid: int = PidArg, socket: Optional[str] = SocketOpt, json_: bool = JsonOpt,
          follow: bool = typer.Option(False, "--follow", "-f", help="Repeat until Ctrl-C."),
          interval: float = typer.Option(1.0, "--interval", min=0.05,
                                         help="Seconds between polls with --follow."),
          external: bool = typer.Option(False, "--external",
                                        help="Read PID from outside instead (any process, "
                                             "Python or not, no agent needed): memory, "
                                             "threads, fds, children, mappings.")) -> None:
    """Process memory, heap and component stats of one agent (--external: of any process)."""
    if external:
        if socket is not None:
            raise UsageFailure("--socket names an agent's socket; --external reads the process "
                               "without one, so use one or the other.")
        from ..attach.external import ExternalClient  # noqa: PLC0415 - loads psutil

        client: Any = ExternalClient(pid).connect()
        read: Any = lambda: client.stats()["external"]  # noqa: E731
        view: Any = render.external_view
    else:
        client = _connect(pid, socket)
        command = process_name(pid)
        read = client.stats
        view = lambda result: render.stats_view(result, client.info, command)  # noqa: E731
    with client:
        if not follow:
            result = read()
            if json_:
                print_json(result)
            else:
                console.print(view(result))
            return
        try:
            if json_:
                while True:
                    print_json(read())
                    time.sleep(interval)
            else:
                render.live_loop(lambda: view(read()), interval, console)
        except KeyboardInterrupt:
            return


@app.command()
def gc(pid: int = PidArg,
       generation: int = typer.Option(2, "--generation", "-g", min=0, max=2),
       socket: Optional[str] = SocketOpt, json_: bool = JsonOpt) -> None:
    """Run gc.collect(GENERATION) inside the process."""
    with _connect(pid, socket) as client:
        result = client.gc_collect(generation)
    if json_:
        print_json(result)
    else:
        console.print(render.gc_text(pid, result))


class TraceAction(str, enum.Enum):
    start = "start"
    stop = "stop"
    top = "top"


@app.command()
def trace(pid: int = PidArg,
          action: TraceAction = typer.Argument(..., help="start, stop, or top (largest sites)."),
          frames: Optional[int] = typer.Option(None, "--frames", min=1, max=100,
                                               help="Frames per traceback (start)."),
          limit: int = typer.Option(20, "--limit", min=1, max=500, help="Sites shown (top)."),
          socket: Optional[str] = SocketOpt, json_: bool = JsonOpt) -> None:
    """Start or stop tracemalloc in the process, or show its top allocation sites."""
    with _connect(pid, socket) as client:
        if action is TraceAction.start:
            result = client.trace_start(frames)
            text = "tracemalloc %s in PID %d with %s frame(s)." % (
                "was already tracing" if result.get("already") else "started", pid,
                result.get("nframes"))
        elif action is TraceAction.stop:
            result = client.trace_stop()
            text = "tracemalloc stopped in PID %d." % pid if result.get("was_tracing") \
                else "tracemalloc was not tracing in PID %d." % pid
        else:
            result = client.heap_top(limit=limit)
    if json_:
        print_json(result)
    elif action is TraceAction.top:
        console.print(render.heap_top_table(result))
    else:
        console.print(text)


@app.command(help=snapshot_cli.HELP, context_settings={"allow_interspersed_args": True})
def snapshot(args: List[str] = typer.Argument(None, metavar="PID | show FILE | diff A B | "
                                                            "suspects PID|FILE..."),
             output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE",
                                                  help="Also copy the new snapshot here "
                                                  "(an existing FILE only with --force)."),
             force: bool = typer.Option(False, "--force", help="Let -o replace an existing "
                                        "FILE."),
             trace_: bool = typer.Option(False, "--trace", help="Start tracemalloc first (and "
                                         "keep it on) so the snapshot has allocation sites."),
             budget: Optional[float] = typer.Option(None, "--budget", min=0.05, max=600,
                                                    help="Census time budget in seconds."),
             limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Rows per table."),
             socket: Optional[str] = SocketOpt, json_: bool = JsonOpt) -> None:
    snapshot_cli.run(list(args or []), output, trace_, budget, socket, json_, limit,
                     force)


# run -----------------------------------------------------------------------------------------
class ChildAgentView:
    """`run`'s plain view when there is no terminal for the dashboard: the stats of the agent
    in CMD or a descendant (found by dashboard.ChildAgentClient), redrawn until CMD exits."""

    def __init__(self, proc: subprocess.Popen, wait_s: float = 10.0) -> None:
        self.proc = proc
        self.client = dashboard.ChildAgentClient(proc, wait_s=wait_s)
        self.last: Optional[RenderableType] = None

    def frame(self) -> RenderableType:
        if not self.client.connected:
            try:
                self.client.connect()
            except AgentError as exc:
                note = Text(sentence(exc), style="yellow")
                return Group(self.last, note) if self.last else note
        try:
            self.last = render.stats_view(self.client.stats(), self.client.info,
                                          process_name(self.client.server_pid or self.proc.pid))
            return self.last
        except AgentError as exc:
            self.close()
            try:
                self.proc.wait(0.5)  # the agent usually goes because CMD is exiting
                return self.last or Text("PID %d exited." % self.proc.pid)
            except subprocess.TimeoutExpired:
                note = Text("%s Looking for the agent again…" % sentence(exc), style="yellow")
                return Group(self.last, note) if self.last else note

    def close(self) -> None:
        self.client.close()


@app.command(context_settings={"allow_interspersed_args": False})
def run(cmd: List[str] = typer.Argument(..., metavar="CMD",
                                        help="The command to run with the agent started in it."),
        no_tui: bool = typer.Option(False, "--no-tui", help="Only run CMD; show nothing."),
        interval: Optional[float] = typer.Option(None, "--interval", min=0.01,
                                                 help="Agent sampling and view refresh (s)."),
        memory_limit: Optional[str] = typer.Option(None, "--memory-limit",
                                                   help="Alert limit, e.g. 512MiB."),
        trace_: bool = typer.Option(False, "--trace", help="Start tracemalloc with the agent."),
        env: Optional[str] = typer.Option(None, "--env", "-e",
                                          help="Profile to configure the agent and components "
                                               "from (default: $MEMTUI_ENV, else dev)."),
        profiles: Optional[str] = typer.Option(None, "--profiles", "-p", metavar="DIR",
                                               help="Profiles directory (default: "
                                                    "$MEMTUI_PROFILES, else ./profiles).")
        ) -> None:
    """Run CMD with the agent started in it, watch it in the dashboard; exit with CMD's code."""
    values: Dict[str, Any] = {}
    if interval is not None:
        values["interval"] = interval
    if memory_limit is not None:
        values["memory_limit"] = memory_limit
    if trace_:
        values["trace"] = True
    if env is not None:
        values["env"] = env
    try:
        options_json = launch.agent_options_json(values)
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    child_env = launch_environ(dict(os.environ), options_json)
    if env is not None:
        child_env["MEMTUI_ENV"] = env
    profiles = _profiles_dir(profiles)
    if profiles is not None:
        child_env["MEMTUI_PROFILES"] = profiles
    if not no_tui and dashboard.is_terminal():
        raise typer.Exit(dashboard.run(cmd, child_env, interval, profiles))
    with launch.SignalForwarder() as forwarder:
        try:
            proc = subprocess.Popen(cmd, env=child_env, preexec_fn=forwarder.child_preexec)
        except OSError as exc:
            raise UsageFailure("Cannot run %s: %s." % (cmd[0], exc.strerror or exc)) from None
        forwarder.attach(proc)
        if not no_tui:
            exited = threading.Event()

            def reap() -> None:
                proc.wait()
                exited.set()

            threading.Thread(target=reap, name="memtui-reaper", daemon=True).start()
            view = ChildAgentView(proc)
            try:
                render.live_loop(view.frame, interval or 1.0, console, stop=exited)
            except (OSError, SystemExit):
                # The view's output broke (rich turns a closed pipe into SystemExit(1)): stop
                # showing, but CMD still runs to its own end and its exit code is ours.
                pass
            finally:
                view.close()
        returncode = proc.wait()
    raise typer.Exit(launch.exit_code(returncode))


# demo ----------------------------------------------------------------------------------------
@app.command()
def demo(no_tui: bool = typer.Option(False, "--no-tui", help="Print stats instead of the "
                                      "dashboard."),
         duration: Optional[float] = typer.Option(None, "--duration", min=0.0,
                                                  help="Stop after this many seconds."),
         interval: Optional[float] = typer.Option(None, "--interval", min=0.05,
                                                  help="Seconds between updates (default 2 "
                                                       "headless, 1 live)."),
         json_: bool = typer.Option(False, "--json", help="Print JSON lines (implies --no-tui).")
         ) -> None:
    """Run the bundled demo service (caches, a pool, workers, a leak) and open the dashboard."""
    from ..demo import DemoProcess  # noqa: PLC0415

    headless = no_tui or json_
    every = interval or (2.0 if headless else 1.0)
    service = DemoProcess(["--interval", str(min(every, 0.5)), "--exit-with-parent"])
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)  # unwind through `with service` so it is stopped
    try:
        with service, _connect(service.pid) as client:
            if headless:
                _demo_headless(client, every, duration, json_)
            elif dashboard.is_terminal():
                code = dashboard.demo(client, every, duration)
                if code:
                    raise SystemExit(code)
            else:  # no terminal for the dashboard: the plain stats view
                stop = threading.Event()
                if duration is not None:
                    timer = threading.Timer(duration, stop.set)
                    timer.daemon = True
                    timer.start()
                render.live_loop(lambda: render.stats_view(client.stats(), client.info, "demo"),
                                 every, console, stop=stop)
    except KeyboardInterrupt:
        return


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _demo_headless(client: AgentClient, every: float, duration: Optional[float],
                   json_: bool) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    while True:
        result = client.stats()
        if json_:
            print_json(result)
        else:
            console.print(render.stats_view(result, client.info, "demo"))
        if deadline is None:
            time.sleep(every)
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(every, remaining))


app.add_typer(config_app, name="config")


def main() -> None:
    """Console entry point: typer handles usage errors; agent errors become one sentence;
    profile problems one line each (``FILE::$.path: message``)."""
    try:
        app()
    except (AgentError, UsageFailure) as exc:
        sys.stderr.write(sentence(exc) + "\n")
        sys.exit(EXIT_ERROR)
    except (ConfigError, config_cli.CheckFailed) as exc:
        sys.exit(config_cli.handle(exc))


if __name__ == "__main__":
    main()
