"""Attach anywhere: find the safest way into a running process and take it.

In order: an agent already listening (connect); a dormant agent left by ``memtui.install()``
(send its signal — only when its marker names this very process and /proc shows the signal
caught and not ignored); a CPython 3.9+ process without one (inject the agent, when asked); and
for anything else the external view (psutil figures from outside). :func:`plan` only looks;
:func:`attach` does it. Errors are one sentence (AttachError or the client's AgentErrors).
"""
from __future__ import annotations

import json
import os
import platform
import signal as _signal
import time
from dataclasses import dataclass
from typing import Any, Optional

from .. import paths
from ..client import AgentClient, find_socket, process_name, process_uid
from ..protocol import AgentError, NoAgent, NoSuchProcess
from . import procinfo

WAYS = ("agent", "signal", "inject", "external")
MIN_PYTHON = (3, 9)
NO_PTRACE_WAYS = ("start the agent from the program instead — memtui.install() (then `memtui "
                  "attach PID` wakes it by signal) or memtui.start() — or run it under "
                  "`memtui run`")


def _no_ptrace(pid: int) -> str:
    return NO_PTRACE_WAYS.replace("PID", str(pid))


class AttachError(AgentError):
    """No way in, in one sentence."""


@dataclass(frozen=True)
class Plan:
    pid: int
    way: str
    reason: str
    python: Optional[str] = None  # "3.11"
    cpython: bool = False
    socket: Optional[str] = None
    signal: Optional[int] = None
    inject_problem: Optional[str] = None  # why injection is impossible (None: possible)

    @property
    def can_inject(self) -> bool:
        return self.cpython and self.inject_problem is None


@dataclass
class Attached:
    way: str
    client: Any  # a connected AgentClient, or an ExternalClient for the external view
    message: str
    elapsed_s: float
    details: Any = None


def _check_target(pid: int) -> None:
    if pid <= 0 or pid >= 2 ** 31 or not paths.pid_alive(pid):
        raise NoSuchProcess("No process with PID %d." % pid)
    uid = process_uid(pid)
    if uid is not None and uid != os.geteuid():
        AgentClient._check_owner(pid)  # raises PermissionRefused with the sudo -u hint


def _live_socket(pid: int) -> Optional[str]:
    path = find_socket(pid)
    if path is None:
        return None
    try:
        with AgentClient(pid=pid, path=path, timeout=2.0).connect():
            return path
    except (NoAgent, NoSuchProcess):
        return None


def dormant_signal(pid: int) -> tuple:
    """(signal, why-not): the signal a dormant agent in *pid* waits for, or None and the reason
    memtui will not send one. Only a marker written by this very process counts (same start
    time), and only while the process catches the signal and does not ignore it."""
    candidates = [paths.dormant_path(pid)]
    theirs = paths.target_runtime_dir(pid)
    if theirs:
        candidates.append(paths.dormant_path(pid, theirs))
    for path in candidates:
        try:
            if paths.private_problem(os.path.dirname(path), "directory"):
                continue
            with open(path) as fh:
                marker = json.load(fh)
        except (OSError, ValueError):
            continue
        if not isinstance(marker, dict) or marker.get("pid") != pid:
            continue
        if marker.get("start_ticks") != paths.start_ticks(pid):
            continue  # left by an earlier process with the same PID
        if not _same_program(pid, marker.get("exe")):
            continue  # the process exec()ed another program since (same PID, same start)
        sig = marker.get("signal")
        if not isinstance(sig, int):
            continue
        try:
            st = procinfo.status(pid)
        except OSError:
            return None, None
        if not procinfo.signal_handled(st, sig):
            return None, ("it ran memtui.install() but no longer catches %s (reset to the "
                          "default or ignored), so memtui will not send it" % _signame(sig))
        return sig, None
    return None, None


def _same_program(pid: int, exe: Any) -> bool:
    try:
        st = os.stat("/proc/%d/exe" % pid)
    except OSError:
        return False
    if isinstance(exe, list) and len(exe) == 2:
        return [st.st_dev, st.st_ino] == exe
    return procinfo.python_info(pid).implementation == "cpython"


def _signame(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return "signal %d" % sig


def plan(pid: int, inject: bool = False) -> Plan:
    """How :func:`attach` would get into *pid*; looks only (never signals or ptraces)."""
    _check_target(pid)
    sock = _live_socket(pid)
    if sock:
        return Plan(pid, "agent", "an agent is listening on %s" % sock, socket=sock)
    sig, dormant_problem = dormant_signal(pid)
    info = procinfo.python_info(pid)
    version = "%d.%d" % info.version if info.version else None
    cpython = info.implementation == "cpython"
    if sig is not None:
        return Plan(pid, "signal", "a dormant agent waits for %s" % _signame(sig), version,
                    cpython, signal=sig)
    problem = _inject_problem(pid, info)
    if inject and problem is None:
        return Plan(pid, "inject", "CPython %s without an agent" % version, version, cpython)
    reason = dormant_problem or ("%s without an agent" % info.label if info.version else
                                 info.label if info.implementation == "unknown" else
                                 "not a Python process")
    return Plan(pid, "external", reason, version, cpython, inject_problem=problem)


def _inject_problem(pid: int, info: procinfo.PythonInfo) -> Optional[str]:
    """Why injecting into *pid* cannot work, as the tail of a sentence; None when it can."""
    if info.implementation == "unknown":
        return ("its /proc entries are closed to us (a non-dumpable process, or /proc mounted "
                "with hidepid), so ptrace would be refused too; %s" % _no_ptrace(pid))
    if info.implementation != "cpython":
        what = info.label if info.version else "not a Python process"
        return "it is %s, and only CPython can be injected" % (
            "PyPy" if info.implementation == "pypy" else what)
    if info.version < MIN_PYTHON:
        return "it runs Python %d.%d and the agent needs %d.%d or newer" % (info.version + MIN_PYTHON)
    env = procinfo.environ(pid) or {}
    if env.get("MEMTUI_DISABLE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "it has MEMTUI_DISABLE=%s set, which turns memtui off" % env["MEMTUI_DISABLE"]
    if info.version < (3, 14) and (platform.system() != "Linux"
                                   or platform.machine() not in ("x86_64", "AMD64")):
        return ("injecting into Python < 3.14 needs Linux on x86_64 and this is %s %s"
                % (platform.system(), platform.machine()))
    ptrace_no = procinfo.ptrace_problem(pid)
    if ptrace_no:
        return "ptrace is not permitted: %s; %s" % (ptrace_no, _no_ptrace(pid))
    return None


def attach(pid: int, inject: bool = False, timeout: float = 10.0,
           planned: Optional[Plan] = None) -> Attached:
    """Get into *pid* the safest way there is (see the module doc) and return a client.
    *planned* is a :func:`plan` the caller already made for the same pid and *inject*."""
    if not inject:
        return _attach(pid, False, timeout, planned)
    from .inject import target_lock  # noqa: PLC0415

    _check_target(pid)
    try:
        with target_lock(pid):  # look again under the lock: another attacher may have injected
            return _attach(pid, True, timeout, None)
    except paths.RuntimeDirError as exc:
        raise AttachError("Cannot inject into PID %d: %s." % (pid, str(exc).rstrip("."))) from None


def _attach(pid: int, inject: bool, timeout: float, planned: Optional[Plan]) -> Attached:
    started = time.monotonic()
    p = planned if planned is not None and planned.pid == pid else plan(pid, inject=inject)
    name = process_name(pid)
    if p.way == "agent":
        client = AgentClient(pid=pid, path=p.socket).connect()
        return Attached("agent", client, "PID %d: an agent is already listening (%s)."
                        % (pid, p.socket), time.monotonic() - started)
    if p.way == "signal":
        client = _wake(pid, p.signal, timeout)
        return Attached("signal", client, "PID %d: woke its dormant agent with %s in %.2f s."
                        % (pid, _signame(p.signal), time.monotonic() - started),
                        time.monotonic() - started)
    if p.way == "inject":
        status = _inject(pid, timeout)
        client = AgentClient(pid=pid, path=status.get("socket")).connect()
        held = status.get("main_held_s") or 0.0
        if status.get("result") == "already":
            what = "its agent was already running (injection changed nothing)"
        else:
            what = "agent started by injection (%s route)" % status.get("route")
        return Attached("inject", client, "PID %d: %s in %.2f s; its main thread was held "
                        "%.1f ms." % (pid, what, time.monotonic() - started, held * 1000),
                        time.monotonic() - started, status)
    if inject:
        raise AttachError("Cannot inject into PID %d (%s): %s." % (pid, name, p.inject_problem))
    from .external import ExternalClient  # noqa: PLC0415 - psutil only for this way

    client = ExternalClient(pid)
    client.connect()
    hint = (" (`memtui attach %d --inject` starts an agent in it)" % pid) if p.can_inject else ""
    return Attached("external", client, "PID %d: %s; showing the external view%s."
                    % (pid, p.reason, hint), time.monotonic() - started)


def _wake(pid: int, sig: int, timeout: float) -> AgentClient:
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not paths.pid_alive(pid):
            raise NoSuchProcess("PID %d exited after it was sent %s." % (pid, _signame(sig)))
        sock = find_socket(pid)
        if sock:
            try:
                return AgentClient(pid=pid, path=sock, timeout=2.0).connect()
            except NoAgent:
                pass
        time.sleep(0.01)
    raise AttachError("PID %d was sent %s but its agent did not start within %.0f s: its "
                      "main thread may be in a long call (Python runs signal handlers between "
                      "bytecodes), or the program replaced memtui's handler with its own."
                      % (pid, _signame(sig), timeout))


def _inject(pid: int, timeout: float) -> dict:
    from . import inject as injector  # noqa: PLC0415
    from .ptrace import CallFault, CallTimeout, PtraceError  # noqa: PLC0415

    info = procinfo.python_info(pid)
    try:
        status = injector.inject(pid, info, timeout=timeout)
    except PtraceError as exc:
        if exc.errno == 3 or not paths.pid_alive(pid):  # ESRCH
            raise _gone(pid) from None
        if exc.errno == 1:  # EPERM
            tracer = procinfo.tracer_of(pid)
            why = ("it is being traced by PID %d (%s) — another debugger, or another memtui "
                   "injecting" % tracer) if tracer else \
                "EPERM: a container without CAP_SYS_PTRACE, a seccomp profile or yama"
            raise AttachError("Cannot inject into PID %d: the kernel refused ptrace (%s); %s."
                              % (pid, why, _no_ptrace(pid))) from None
        raise AttachError("Cannot inject into PID %d: %s." % (pid, exc.strerror or exc)) from None
    except CallFault as exc:
        raise AttachError("Injecting into PID %d failed inside the process (%s) and was undone; "
                          "it is still running as before." % (pid, exc)) from None
    except CallTimeout as exc:
        raise AttachError("Injecting into PID %d was given up: %s; nothing was left in it."
                          % (pid, exc)) from None
    except paths.RuntimeDirError as exc:
        raise AttachError("Cannot inject into PID %d: %s." % (pid, str(exc).rstrip("."))) from None
    except OSError as exc:  # /proc entries vanishing under us: the target exited
        if not paths.pid_alive(pid):
            raise _gone(pid) from None
        raise AttachError("Cannot inject into PID %d: %s." % (pid, exc.strerror or exc)) from None
    except injector.InjectError as exc:
        if str(exc) == "timed out":
            raise AttachError(
                "Injected into PID %d, but its agent did not report within %.0f s — its threads "
                "kept the interpreter busy (a long call holding the GIL, or many busy threads); "
                "it starts when the interpreter lets it, so try `memtui attach %d` again "
                "shortly, or give --timeout more." % (pid, timeout, pid)) from None
        raise AttachError("Cannot inject into PID %d: %s." % (pid, exc)) from None
    result = status.get("result")
    if result in ("started", "already") and status.get("socket"):
        return status
    if result == "off":
        raise AttachError("The agent injected into PID %d did not start: %s."
                          % (pid, status.get("error")))
    if result in ("started", "already"):
        raise AttachError("The agent in PID %d runs but does not serve: %s."
                          % (pid, status.get("error") or "no socket"))
    raise AttachError("The agent injected into PID %d failed to start: %s."
                      % (pid, status.get("error") or result))


def _gone(pid: int) -> NoSuchProcess:
    """The target vanished while we worked on it: say whether it crashed or exited."""
    return NoSuchProcess("PID %d ended during the injection." % pid)
