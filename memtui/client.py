"""AgentClient: find an agent by PID or socket path, verify who serves it, and make requests.

Before sending a byte the client checks that the socket is a real socket owned by us with no
group/other bits, and (when connecting by PID) that the server's SO_PEERCRED pid is that PID.
Stdlib only.
"""
from __future__ import annotations

import errno
import os
import socket
import threading
import time
from typing import Any, Dict, List, Optional

from . import paths, protocol
from .protocol import AgentError, AgentGone, NoAgent, NoSuchProcess, PermissionRefused, RemoteError

__all__ = ["AgentClient", "AgentError", "AgentGone", "NoAgent", "NoSuchProcess",
           "PermissionRefused", "RemoteError", "check_socket_file", "find_socket",
           "no_agent_message", "process_name", "process_uid", "runtime_dir_problem"]


def process_name(pid: int) -> str:
    """The command line of *pid* on one line (whitespace collapsed), at most 120 characters."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            parts = [p.decode("utf-8", "replace") for p in fh.read().split(b"\0") if p]
        name = " ".join(" ".join(parts).split())
        if name:
            return name[:120]
    except OSError:
        pass
    try:
        with open("/proc/%d/comm" % pid) as fh:
            return " ".join(fh.read().split())[:120] or "?"
    except OSError:
        return "?"


def process_uid(pid: int) -> Optional[int]:
    """The effective uid of *pid* (the "Uid:" line of /proc/PID/status), or None if unknown."""
    try:
        with open("/proc/%d/status" % pid) as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _user_name(uid: int) -> str:
    try:
        import pwd  # noqa: PLC0415 - only needed for this message

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return "#%d" % uid  # sudo -u accepts #UID


def _exists(path: str) -> bool:
    """Whether *path* exists (a dangling symlink counts); unlike os.path.lexists, a directory on
    the way that we may not search is PermissionRefused, not "missing"."""
    try:
        os.lstat(path)
        return True
    except PermissionError:
        raise PermissionRefused("Permission denied looking up %s; it belongs to another user, so "
                                "run memtui as that user." % path) from None
    except (OSError, ValueError):
        return False


def find_socket(pid: int) -> Optional[str]:
    """The agent socket of *pid*: in our runtime dir, else in the one the target's env names.

    A socket made before *pid* started belongs to an earlier process with that PID (one killed
    before it could remove it): the other place is preferred then. PermissionRefused when no
    candidate exists and one could not be looked up.
    """
    candidates: List[str] = [paths.socket_path(pid)]
    theirs = paths.target_runtime_dir(pid)
    if theirs and paths.socket_path(pid, theirs) != candidates[0]:
        candidates.append(paths.socket_path(pid, theirs))
    refused: Optional[PermissionRefused] = None
    found: List[str] = []
    for path in candidates:
        try:
            if _exists(path):
                found.append(path)
        except PermissionRefused as exc:
            refused = refused or exc
    started = paths.start_time(pid)
    for path in found:
        if started is None or _made_at(path) >= started - CLOCK_SLACK:
            return path
    if found:
        return found[0]  # all older than the process: the caller reports the stale socket
    if refused is not None:
        raise refused
    return None


CLOCK_SLACK = 1.0  # seconds: a start time is known to a clock tick; the wall clock may be set


def _made_at(path: str) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return float("inf")


def runtime_dir_problem(pid: int) -> Optional[str]:
    """Why the runtime directory *pid* would use is refused, if it exists and is refused."""
    directory = paths.target_runtime_dir(pid)
    if not directory:
        return None
    try:
        os.lstat(directory)
    except OSError:
        return None  # missing (the agent would create it) or not ours to examine
    return paths.private_problem(directory, "directory")


def no_agent_message(pid: int) -> str:
    """The one sentence for a live *pid* without a reachable agent socket."""
    problem = runtime_dir_problem(pid)
    if problem:
        return ("PID %d (%s) has no reachable memtui agent: its runtime directory is refused (%s)."
                % (pid, process_name(pid), problem))
    return ("PID %d (%s) has no memtui agent; start one with memtui.start(), memtui.install() + "
            "SIGUSR2, or `memtui run`, or see it from outside with `memtui stats %d --external`."
            % (pid, process_name(pid), pid))


def check_socket_file(path: str) -> None:
    """Refuse anything but a socket we own with mode 0600 (or stricter)."""
    if not _exists(path):
        raise NoAgent("No agent socket at %s." % path)
    problem = paths.private_problem(path, "socket")
    if problem:
        raise PermissionRefused("Refusing the agent socket: %s." % problem)


def _clause(message: Any) -> str:
    """An agent's sentence, without its full stop, to be embedded in one of ours."""
    text = str(message).strip()
    return text[:-1] if text.endswith(".") else text


class AgentClient:
    """One connection to one agent. Thread-safe: requests are serialized.

    ``AgentClient(pid=1234)`` or ``AgentClient(path=".../1234.sock")``; use as a context manager
    or call :meth:`connect` / :meth:`close`.
    """

    def __init__(self, pid: Optional[int] = None, path: Optional[str] = None,
                 timeout: float = 10.0) -> None:
        if pid is None and path is None:
            raise ValueError("AgentClient needs a pid or a path")
        self.pid = pid
        self.path = path
        self.timeout = timeout
        self.info: Dict[str, Any] = {}
        self.server_pid: Optional[int] = None
        self._sock: Optional[socket.socket] = None
        self._next_id = 0
        self._lock = threading.Lock()

    # connection ----------------------------------------------------------------------------
    def connect(self) -> "AgentClient":
        if self.pid is not None:
            self._check_pid(self.pid)
            self._check_owner(self.pid)
            if self.path is None:
                found = find_socket(self.pid)
                if found is None:
                    raise NoAgent(no_agent_message(self.pid))
                self.path = found
        assert self.path is not None
        check_socket_file(self.path)
        sock = self._open(self.path)
        try:
            spid, suid, _ = protocol.peer_credentials(sock)
        except OSError as exc:
            sock.close()
            raise AgentGone("Lost the agent while checking its identity: %s." % exc) from None
        if self.pid is not None and spid != self.pid:
            sock.close()
            raise PermissionRefused(
                "Refusing %s: it is served by PID %d, not PID %d." % (self.path, spid, self.pid))
        if suid not in (os.geteuid(), 0):
            sock.close()
            raise PermissionRefused("Refusing %s: it is served by uid %d." % (self.path, suid))
        self.server_pid = spid
        self._sock = sock
        try:
            self.info = self.request("hello")
        except BaseException:
            self.close()
            raise
        return self

    def _open(self, path: str) -> socket.socket:
        """Connect, retrying while the listen backlog is full (EAGAIN) until the timeout."""
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(path)
                return sock
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EAGAIN and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.2)
                    continue
                raise self._connect_error(exc) from None

    def _check_pid(self, pid: int) -> None:
        if pid <= 0 or pid >= 2 ** 31 or not paths.pid_alive(pid):  # pid_t is 32 bits
            raise NoSuchProcess("No process with PID %d." % pid)

    @staticmethod
    def _check_owner(pid: int) -> None:
        """Another user's process: its agent would refuse us, and its socket is not ours."""
        uid = process_uid(pid)
        if uid is not None and uid != os.geteuid():
            raise PermissionRefused(
                "PID %d belongs to uid %d; run memtui as that user (e.g. sudo -u %s memtui …)."
                % (pid, uid, _user_name(uid)))

    def _connect_error(self, exc: OSError) -> AgentError:
        where = "PID %d" % self.pid if self.pid is not None else self.path
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return NoAgent("No agent is listening for %s (stale socket %s); run `memtui ps` to "
                           "clean up." % (where, self.path))
        if exc.errno in (errno.EACCES, errno.EPERM):
            return PermissionRefused("Permission denied connecting to %s." % self.path)
        if isinstance(exc, socket.timeout):
            return AgentGone("The agent for %s did not accept the connection within %.0fs."
                             % (where, self.timeout))
        return AgentGone("Could not connect to the agent for %s: %s." % (where, exc.strerror or exc))

    def clone(self) -> "AgentClient":
        """A second, unconnected client for the same agent: a slow request (a snapshot) on one
        connection does not hold up requests on the other."""
        return AgentClient(pid=self.pid, path=self.path, timeout=self.timeout)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "AgentClient":
        if self._sock is None:
            self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    # requests ------------------------------------------------------------------------------
    def request(self, op: str, timeout: Optional[float] = None, **args: Any) -> Any:
        """Send one request and return its result; RemoteError carries the agent's error code."""
        with self._lock:
            sock = self._sock
            if sock is None:
                raise AgentGone("Not connected to an agent.")
            self._next_id += 1
            req_id = self._next_id
            frame = protocol.encode_frame(protocol.request(req_id, op, args), protocol.MAX_REQUEST)
            deadline = time.monotonic() + (timeout or self.timeout)
            try:
                sock.settimeout(timeout or self.timeout)
                try:
                    sock.sendall(frame)
                except (BrokenPipeError, ConnectionResetError):
                    # The agent may have refused us (busy, permission) and hung up before our
                    # request landed: its one-frame explanation can still be waiting to be read.
                    deadline = min(deadline, time.monotonic() + 0.5)
                resp = protocol.read_frame(sock, protocol.MAX_RESPONSE, deadline)
            except socket.timeout:
                self.close()
                raise AgentGone("%s did not answer %r within %.1fs."
                                % (self._who(), op, timeout or self.timeout)) from None
            except protocol.ProtocolError as exc:
                self.close()
                raise protocol.ProtocolError("%s sent a bad reply: %s." % (self._who(), exc)) from None
            except OSError:
                self.close()
                raise AgentGone(self._gone_message()) from None
        if not resp.get("ok"):
            err = resp.get("error") or {}
            if resp.get("id") is None and err.get("code") in (protocol.BUSY,
                                                              protocol.PERMISSION_DENIED):
                self.close()
                if err.get("code") == protocol.PERMISSION_DENIED:
                    raise PermissionRefused("The agent refused us: %s."
                                            % _clause(err.get("message")))
            raise RemoteError(str(err.get("code", "error")), str(err.get("message", "error")))
        if resp.get("id") != req_id:
            self.close()
            raise protocol.ProtocolError("%s answered request %r with id %r."
                                         % (self._who(), req_id, resp.get("id")))
        return resp.get("result")

    def _who(self) -> str:
        pid = self.server_pid or self.pid
        return "The agent in PID %d" % pid if pid else "The agent at %s" % self.path

    def _gone_message(self) -> str:
        pid = self.server_pid or self.pid
        if pid and not paths.pid_alive(pid):
            return "PID %d exited while we were talking to its agent." % pid
        return "%s closed the connection." % self._who()

    # conveniences --------------------------------------------------------------------------
    def stats(self, components: bool = True, fresh: bool = False) -> Dict[str, Any]:
        """The agent's current figures; within 100 ms requests share one sample unless *fresh*."""
        if fresh:
            return self.request("stats", components=components, fresh=True)
        return self.request("stats", components=components)

    def history(self, since: int = 0, limit: Optional[int] = None,
                components: bool = False) -> Dict[str, Any]:
        args: Dict[str, Any] = {"since": since, "components": components}
        if limit is not None:
            args["limit"] = limit
        return self.request("history", **args)

    def events(self, since: int = 0, limit: int = 200) -> Dict[str, Any]:
        return self.request("events", since=since, limit=limit)

    def gc_collect(self, generation: int = 2) -> Dict[str, Any]:
        return self.request("gc.collect", generation=generation)

    def trace_start(self, nframes: Optional[int] = None) -> Dict[str, Any]:
        return self.request("trace.start", **({"nframes": nframes} if nframes else {}))

    def trace_stop(self) -> Dict[str, Any]:
        return self.request("trace.stop")

    def heap_top(self, limit: int = 20, group_by: str = "lineno") -> Dict[str, Any]:
        return self.request("heap.top", limit=limit, group_by=group_by)

    def config_get(self) -> Dict[str, Any]:
        """What the agent runs with: env, profile file, settings sections, options, and each
        component's current settings (None for one without ``settings()``)."""
        return self.request("config.get")

    def config_apply(self, settings: Optional[Dict[str, Any]] = None,
                     options: Optional[Dict[str, Any]] = None, env: Optional[str] = None,
                     dry_run: bool = False) -> Dict[str, Any]:
        """Retune the live agent: *settings* (the complete set of profile sections) replaces
        its own and reaches every component; *options* are agent options that can change live.
        With *dry_run*, nothing changes and the result says what would."""
        args: Dict[str, Any] = {"dry_run": dry_run}
        if settings is not None:
            args["settings"] = settings
        if options:
            args["options"] = options
        if env is not None:
            args["env"] = env
        return self.request("config.apply", **args)

    # heap insight ---------------------------------------------------------------------------
    def snapshot_take(self, reason: Optional[str] = None, trace: Optional[bool] = None,
                      budget_s: Optional[float] = None,
                      timeout: Optional[float] = None) -> Dict[str, Any]:
        """Take a heap snapshot in the agent; its metadata (id, path, bytes, elapsed_s,
        complete, objects, reason). A census of a large heap takes seconds: *timeout* defaults
        to at least two minutes. Another snapshot running: RemoteError "unavailable"."""
        args: Dict[str, Any] = {}
        if reason is not None:
            args["reason"] = reason
        if trace is not None:
            args["trace"] = trace
        if budget_s is not None:
            args["budget_s"] = budget_s
        return self.request("snapshot.take", timeout=timeout or max(self.timeout, 120.0), **args)

    def snapshot_status(self) -> Dict[str, Any]:
        """Whether a snapshot is running and its phase, done, total (answers during a take)."""
        return self.request("snapshot.status")

    def snapshot_list(self) -> Dict[str, Any]:
        """``{"directory", "snapshots": [metadata, oldest first], "retention"}``."""
        return self.request("snapshot.list")

    def snapshot_diff(self, a: Optional[str] = None, b: Optional[str] = None,
                      **more: Any) -> Dict[str, Any]:
        """Growth between snapshots *a* and *b* (ids; left out: the agent's defaults)."""
        args: Dict[str, Any] = {k: v for k, v in more.items() if v is not None}
        if a is not None:
            args["a"] = a
        if b is not None:
            args["b"] = b
        return self.request("snapshot.diff", timeout=max(self.timeout, 60.0), **args)

    def snapshot_suspects(self, last: Optional[int] = None, **more: Any) -> Dict[str, Any]:
        """Types and sites that grew at every step of the agent's last *last* snapshots."""
        args: Dict[str, Any] = {k: v for k, v in more.items() if v is not None}
        if last is not None:
            args["last"] = last
        return self.request("snapshot.suspects", timeout=max(self.timeout, 60.0), **args)

    def heap_types(self, limit: int = 50) -> Dict[str, Any]:
        """Counts of gc-tracked objects by type, largest first (no sizes: fast)."""
        return self.request("heap.types", limit=limit)

    def heap_referrers(self, type_name: str, limit: Optional[int] = None,
                       depth: Optional[int] = None, budget_s: Optional[float] = None,
                       **more: Any) -> Dict[str, Any]:
        """Short chains of referrers from sample instances of *type_name* ("mod.Qual")."""
        args: Dict[str, Any] = {k: v for k, v in more.items() if v is not None}
        args["type"] = type_name
        for key, value in (("limit", limit), ("depth", depth), ("budget_s", budget_s)):
            if value is not None:
                args[key] = value
        return self.request("heap.referrers", timeout=max(self.timeout, 60.0), **args)
