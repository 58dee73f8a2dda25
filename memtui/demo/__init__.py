"""The bundled demo: :class:`DemoProcess` starts ``python -m memtui.demo.service`` (which runs its
own agent), waits for its socket and always stops it; the service's classes are demo-local."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, List, Optional, Sequence

from .. import paths
from ..protocol import NoAgent


class DemoProcess:
    """The demo service as a child process. Use as a context manager so it is always stopped."""

    def __init__(self, args: Sequence[str] = (), env: Optional[dict] = None) -> None:
        self.args: List[str] = list(args)
        self.env = dict(os.environ if env is None else env)
        self.proc: Optional[subprocess.Popen] = None
        self._stderr: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 15.0) -> "DemoProcess":
        self._stderr = tempfile.TemporaryFile()
        # Its own session: the terminal's Ctrl-C is ours to handle; we stop the service ourselves.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memtui.demo.service", *self.args], env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            start_new_session=True)
        try:
            self._wait_for_socket(timeout)
        except BaseException:  # Ctrl-C or no agent: never leave the service behind
            self.stop()
            raise
        return self

    def _wait_for_socket(self, timeout: float) -> None:
        assert self.proc is not None
        sock = paths.socket_path(self.proc.pid, paths.runtime_dir(self.env))
        deadline = time.monotonic() + timeout
        while not os.path.exists(sock):
            if self.proc.poll() is not None:
                raise NoAgent("The demo service exited with code %d before its agent started%s."
                              % (self.proc.returncode, self._last_error()))
            if time.monotonic() > deadline:
                hint = " (MEMTUI_DISABLE is set)" if self.env.get("MEMTUI_DISABLE") else ""
                raise NoAgent("The demo service's agent did not appear within %.0fs%s."
                              % (timeout, hint))
            time.sleep(0.02)

    def _last_error(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln]
        return ": " + lines[-1].strip().rstrip(".") if lines else ""

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM (the service exits cleanly and removes its socket), SIGKILL if it lingers."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return proc.returncode

    def __enter__(self) -> "DemoProcess":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
