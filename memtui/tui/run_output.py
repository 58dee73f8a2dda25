"""The output of a command `memtui run` started while the dashboard owns the terminal.

Its stdout and stderr go to pipes, never to the screen: what arrives is spooled (each chunk
tagged with its stream, in the order read: exact within a stream, as near as two pipes allow
between them) and its last lines kept for the dashboard. When the dashboard
closes, :meth:`ChildOutput.release` writes the spool to the real stdout and stderr and passes
whatever comes after straight through. No textual here."""
from __future__ import annotations

import collections
import os
import selectors
import struct
import tempfile
import threading
from typing import Deque, Dict, List, Optional, Tuple

STDOUT, STDERR = 1, 2
_RECORD = struct.Struct("<BI")  # stream, length: one spooled chunk
_CHUNK = 65536


class ChildOutput:
    """Give :attr:`stdout` and :attr:`stderr` (write ends) to the child, then call
    :meth:`started`; :meth:`release` when the terminal is free again; :meth:`close` at the end."""

    def __init__(self, keep_lines: int = 2000) -> None:
        self._read_out, self.stdout = os.pipe()
        self._read_err, self.stderr = os.pipe()
        self._spool = tempfile.TemporaryFile(prefix="memtui-run-")
        self._lock = threading.Lock()
        self._sinks: Optional[Dict[int, int]] = None  # stream -> fd, once released
        self._partial: Dict[int, str] = {STDOUT: "", STDERR: ""}
        self._lines: Deque[Tuple[int, str]] = collections.deque(maxlen=keep_lines)
        self._thread: Optional[threading.Thread] = None
        self.captured = 0  # bytes that arrived before release()

    # the child's side -----------------------------------------------------------------------
    def started(self) -> None:
        """The child holds the write ends now: drop ours (so its exit is our EOF) and read."""
        for fd in (self.stdout, self.stderr):
            os.close(fd)
        self._thread = threading.Thread(target=self._pump, name="memtui-run-output",
                                        daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._read_out, selectors.EVENT_READ, STDOUT)
            sel.register(self._read_err, selectors.EVENT_READ, STDERR)
            while sel.get_map():
                for key, _ in sel.select():
                    try:
                        chunk = os.read(key.fd, _CHUNK)
                    except OSError:
                        chunk = b""
                    if chunk:
                        self._take(key.data, chunk)
                    else:
                        sel.unregister(key.fd)
                        os.close(key.fd)

    def _take(self, stream: int, chunk: bytes) -> None:
        with self._lock:
            if self._sinks is not None:
                _write_all(self._sinks[stream], chunk)
            else:
                self._spool.write(_RECORD.pack(stream, len(chunk)) + chunk)
                self.captured += len(chunk)
            text = self._partial[stream] + chunk.decode("utf-8", "replace")
            *whole, self._partial[stream] = text.split("\n")
            self._lines.extend((stream, line) for line in whole)

    # the dashboard's side -------------------------------------------------------------------
    def recent_lines(self, n: int = 200) -> List[Tuple[int, str]]:
        """The last *n* complete lines as (STDOUT or STDERR, text), oldest first."""
        with self._lock:
            return list(self._lines)[-n:]

    # after the dashboard --------------------------------------------------------------------
    def release(self, stdout_fd: int = 1, stderr_fd: int = 2) -> None:
        """Write what was captured to *stdout_fd* / *stderr_fd*, in arrival order, and from
        now on pass the child's output straight through."""
        with self._lock:
            if self._sinks is not None:
                return
            sinks = {STDOUT: stdout_fd, STDERR: stderr_fd}
            self._spool.flush()
            self._spool.seek(0)
            while True:
                head = self._spool.read(_RECORD.size)
                if len(head) < _RECORD.size:
                    break
                stream, size = _RECORD.unpack(head)
                _write_all(sinks[stream], self._spool.read(size))
            self._spool.close()
            self._sinks = sinks

    def abandon(self) -> None:
        """The child never started: close everything, there is nothing to show."""
        for fd in (self.stdout, self.stderr, self._read_out, self._read_err):
            try:
                os.close(fd)
            except OSError:
                pass
        self._spool.close()
        self._sinks = {}

    def close(self, timeout: float = 2.0) -> None:
        """Wait (a little) for the last output; a descendant that keeps the pipe open is not
        waited for."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sinks is None:
            self.release()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:  # the terminal or pipe is gone: the output has nowhere to go
            return
        view = view[n:]
