"""Running a command with the agent in it: signal relay, the child's agent options, exit codes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from typing import Any, Dict, Optional

from .agent.options import ENV_OPTIONS, AgentOptions

FORWARDED_SIGNALS = tuple(getattr(signal, name) for name in (
    "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH"))
SI_KERNEL = 0x80  # si_code of signals the kernel raised itself, e.g. Ctrl-C at the terminal


class SignalForwarder:
    """Blocks the forwarded signals in this process and relays them to the child from a thread.

    Signals the kernel sent to the whole foreground process group (Ctrl-C, terminal resize)
    already reached a child in our group, so those are not sent twice.
    """

    def __init__(self, signals: tuple = FORWARDED_SIGNALS) -> None:
        self.signals = signals
        self.proc: Optional[subprocess.Popen] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "SignalForwarder":
        # Blocked before the child exists, so no signal can hit memtui's default handlers
        # between fork and the relay thread starting; every later thread inherits the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
        return self

    def child_preexec(self) -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self.signals)  # the mask survives exec

    def attach(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self._thread = threading.Thread(target=self._relay, name="memtui-signals", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        assert self.proc is not None
        while not self._stop.is_set():
            info = signal.sigtimedwait(self.signals, 0.1)
            if info is None or self.proc.poll() is not None:
                continue
            try:
                same_group = os.getpgid(self.proc.pid) == os.getpgrp()
            except OSError:
                continue
            if info.si_code == SI_KERNEL and same_group:
                continue
            try:
                self.proc.send_signal(info.si_signo)
            except OSError:
                pass

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        while signal.sigtimedwait(self.signals, 0) is not None:
            pass  # drop what arrived for a child that is gone, rather than act on it ourselves
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self.signals)


def agent_options_json(values: Dict[str, Any]) -> str:
    """MEMTUI_AGENT_OPTIONS for the child: the caller's own, overlaid with our flags, validated."""
    merged: Dict[str, Any] = {}
    raw = os.environ.get(ENV_OPTIONS)
    if raw:
        try:
            merged = dict(json.loads(raw))
        except (ValueError, TypeError):
            raise ValueError("%s is not a JSON object." % ENV_OPTIONS) from None
    merged.update(values)
    try:
        AgentOptions.from_mapping(merged)
    except ValueError as exc:
        raise ValueError("Bad agent option: %s." % str(exc).rstrip(".")) from None
    return json.dumps(merged) if merged else ""


def exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode
