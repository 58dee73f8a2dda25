"""Opening the dashboard from the command line: `memtui` (the picker), `attach`, `run` and `demo`
build a client, then run MemtuiApp until it is closed. Textual is imported only when a dashboard
opens, so every other command starts as quickly as before."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List, Optional, Sequence

from .. import launch
from ..client import AgentClient, find_socket, no_agent_message, process_name, runtime_dir_problem
from ..protocol import AgentError, AgentGone, NoAgent
from ._common import UsageFailure

CLOSING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
CLOSE_GRACE = 3.0  # seconds the dashboard gets to close after such a signal


def is_terminal() -> bool:
    """Whether the dashboard can run: Textual reads keys from stdin and draws on stderr, and
    a redirected stdout asks for text, not a screen."""
    try:
        return all(s is not None and s.isatty() for s in (sys.stdin, sys.stdout, sys.stderr))
    except ValueError:  # a closed stream
        return False


def ended(returncode: int) -> str:
    """How a process ended, as the end of a sentence: "exited with code 3"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "signal %d" % -returncode
        return "was killed by %s" % name
    return "exited with code %d" % returncode


class ChildAgentClient(AgentClient):
    """The agent `memtui run` started: in CMD or in one of its descendants, looked for on each
    connect(). Until it serves, and once CMD has exited, connect() fails with a sentence saying
    why; the dashboard shows it and tries again."""

    def __init__(self, proc: subprocess.Popen, wait_s: float = 10.0,
                 timeout: float = 3.0) -> None:
        super().__init__(pid=proc.pid, timeout=timeout)
        self.proc = proc
        self.deadline = time.monotonic() + wait_s
        self.pids: List[int] = [proc.pid]
        self.agent_pid: Optional[int] = None  # where it was last found

    def connect(self) -> "ChildAgentClient":
        returncode = self.proc.poll()
        if returncode is not None:
            raise AgentGone("PID %d %s." % (self.proc.pid, ended(returncode)))
        found = self._find()
        if found is None:
            raise NoAgent(self._why_not())
        self.pid, self.path = found, None
        super().connect()
        self.agent_pid = found
        return self

    def _find(self) -> Optional[int]:
        import psutil  # noqa: PLC0415 - like `ps`, only `run` needs it

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        self.pids = [self.proc.pid] + [c.pid for c in children]
        for pid in self.pids:
            try:
                if find_socket(pid):
                    return pid
            except AgentError:
                continue
        return None

    def _why_not(self) -> str:
        for pid in self.pids:
            if runtime_dir_problem(pid):  # the agent refuses it: it will not come, say why
                return no_agent_message(pid)
        if self.agent_pid is not None:
            return "The agent in PID %d has gone; looking for it again." % self.agent_pid
        if time.monotonic() < self.deadline:
            return "Waiting for the agent to start in PID %d." % self.proc.pid
        return ("No memtui agent has appeared in PID %d or its children; still looking."
                % self.proc.pid)


class SignalsCloseDashboard:
    """While the dashboard runs (:meth:`run_app`), SIGTERM and SIGHUP (a supervisor stopping
    us, the terminal going away) close it, after ``also(signum)`` (for `run`: pass it on to
    CMD). Closing writes to the terminal; when it is gone Textual can hang doing so, so a
    dashboard still open CLOSE_GRACE seconds later ends the process with 128+N."""

    def __init__(self, app: Any, also: Optional[Callable[[int], None]] = None) -> None:
        self.app = app
        self.also = also
        self.received: Optional[int] = None
        self._closed = threading.Event()
        self._before: dict = {}

    def run_app(self) -> None:
        try:
            self.app.run()
        finally:
            self._closed.set()

    def __enter__(self) -> "SignalsCloseDashboard":
        for sig in CLOSING_SIGNALS:
            self._before[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        if self.also is not None:
            self.also(signum)
        # A handler runs on the app's own thread, between two of its steps: ask from another.
        threading.Thread(target=self._close, args=(signum,), name="memtui-close",
                         daemon=True).start()

    def _close(self, signum: int) -> None:
        close_app(self.app)
        if not self._closed.wait(CLOSE_GRACE):
            # An injection (the picker's, on a worker thread) may be holding a thread of its
            # target mid-call: exiting now would leave that thread running our registers.
            ptrace = sys.modules.get("memtui.attach.ptrace")
            if ptrace is not None:
                ptrace.wait_released(ptrace.STOP_GRACE + 5)
            os._exit(128 + signum)  # noqa: SLF001 - the terminal is gone; nothing to restore

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)

    @property
    def exit_code(self) -> Optional[int]:
        return None if self.received is None else 128 + self.received


def close_app(app: Any) -> None:
    """Close *app* from a thread other than its own (a no-op once it has stopped)."""
    try:
        app.call_from_thread(app.exit)
    except Exception:  # noqa: BLE001 - not running (any more): nothing to close
        pass


def run_app(app: Any, duration: Optional[float] = None) -> int:
    """Run *app* in this terminal until it is closed (or *duration* seconds have passed);
    its exit code, or 128+N after signal N closed it."""
    with SignalsCloseDashboard(app) as signals:
        if duration is not None:
            timer = threading.Timer(duration, close_app, (app,))
            timer.daemon = True
            timer.start()
        signals.run_app()
    return signals.exit_code or app.return_code or 0


def dashboard_app(client: Any, **kwargs: Any) -> Any:
    from ..tui.app import MemtuiApp  # noqa: PLC0415 - textual only when a dashboard opens

    return MemtuiApp(client, **kwargs)


def need_terminal(instead: str) -> None:
    if not is_terminal():
        raise UsageFailure("The dashboard needs a terminal (stdin, stdout and stderr); %s."
                           % instead)


# the entry points ----------------------------------------------------------------------------
def pick(interval: float) -> int:
    """`memtui`: the picker, then the dashboard on the chosen agent."""
    from ..tui.screens.picker import PickerApp  # noqa: PLC0415

    return run_app(PickerApp(None, interval=interval))


def attach(pid: int, socket: Optional[str], interval: float, profiles: Optional[str],
           inject: bool = False, no_tui: bool = False, timeout: float = 10.0) -> int:
    """`memtui attach PID`: get in first (memtui.attach chooses the way), so that a wrong PID
    is one sentence and no TUI. Without *profiles* the Profiles pane uses the directory of the
    profile the agent read."""
    planned = None
    if not no_tui and socket is None:
        from ..attach import plan  # noqa: PLC0415

        planned = plan(pid, inject=inject)  # a wrong PID, another user's: one sentence first
        need_terminal("in a pipe, use `memtui attach %d --no-tui`" % pid)
    if socket is not None:
        client = AgentClient(pid=pid, path=socket).connect()
        way = None
        if not no_tui and not is_terminal():
            client.close()
            need_terminal("in a pipe, use `memtui stats %d --follow`" % pid)
    else:
        from ..attach import attach as get_in  # noqa: PLC0415

        got = get_in(pid, inject=inject, timeout=timeout, planned=planned)
        client, way = got.client, got
    try:
        if no_tui:
            print(way.message if way is not None else "PID %d: an agent is listening (%s)."
                  % (pid, socket))
            if way is not None and way.way == "external":
                from ..render import external_view  # noqa: PLC0415
                from ._common import console  # noqa: PLC0415

                console.print(external_view(client.stats()["external"]))
            return 0
        if way is not None:
            sys.stderr.write("memtui: %s\n" % way.message)
        app = dashboard_app(client, interval=interval, command=process_name(pid),
                            target=str(pid), profiles=profiles)
        return run_app(app)
    finally:
        client.close()


def demo(client: AgentClient, interval: float, duration: Optional[float]) -> int:
    """`memtui demo`: the dashboard on the demo service (the caller starts and stops it); its
    Profiles pane shows the directory of the profile the service read (./profiles)."""
    pid = client.server_pid or client.pid or 0
    app = dashboard_app(client, interval=interval, command=process_name(pid), target=str(pid))
    return run_app(app, duration)


def run(cmd: Sequence[str], env: dict, interval: Optional[float],
        profiles: Optional[str]) -> int:
    """`memtui run -- CMD` in a terminal: CMD runs with its output captured (the dashboard owns
    the screen) and no stdin; the dashboard attaches once CMD's agent serves. Closing the
    dashboard while CMD runs sends it SIGINT (what Ctrl-C would have done) and waits for it;
    its captured output is written out first. Returns CMD's exit code."""
    from ..tui.run_output import ChildOutput  # noqa: PLC0415

    command = " ".join(" ".join(cmd).split())  # one line for the header (argv may hold "\n")
    # SIGWINCH is the dashboard's own (CMD's output is no terminal); TERM and HUP close it too.
    relayed = tuple(s for s in launch.FORWARDED_SIGNALS
                    if s not in CLOSING_SIGNALS + (signal.SIGWINCH,))
    output = ChildOutput()
    with launch.SignalForwarder(relayed) as forwarder:
        try:
            proc = subprocess.Popen(list(cmd), env=env, stdin=subprocess.DEVNULL,
                                    stdout=output.stdout, stderr=output.stderr,
                                    preexec_fn=forwarder.child_preexec)
        except OSError as exc:
            output.abandon()
            raise UsageFailure("Cannot run %s: %s." % (cmd[0], exc.strerror or exc)) from None
        output.started()
        forwarder.attach(proc)
        client = ChildAgentClient(proc)
        app = dashboard_app(client, interval=interval or 1.0, command=command,
                        target=str(proc.pid), profiles=profiles, output=output)
        try:
            with SignalsCloseDashboard(app, also=lambda sig: _send(proc, sig)) as signals:
                signals.run_app()
                output.release()
                if proc.poll() is None and signals.received is None:
                    _send(proc, signal.SIGINT)
                    sys.stderr.write("memtui: sent SIGINT to PID %d (%s); waiting for it to "
                                     "exit.\n" % (proc.pid, command))
                    sys.stderr.flush()
                returncode = proc.wait()
        finally:
            output.close()
            client.close()
    return launch.exit_code(returncode)


def _send(proc: subprocess.Popen, signum: int) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(signum)
        except OSError:
            pass
