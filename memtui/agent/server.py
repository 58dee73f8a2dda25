"""Unix socket server inside the target: one selector thread, peer-uid check before reading a byte,
capped frames, one reply in flight per connection (backpressure), and timeouts for slow peers.

A single thread keeps the agent's footprint fixed whatever clients do: 100 clients cost 100 small
buffers, not 100 threads.
"""
from __future__ import annotations

import os
import queue
import select
import selectors
import socket
import stat
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Optional

from .. import paths, protocol
from . import ops

peer_credentials = protocol.peer_credentials

class _Conn:
    __slots__ = ("sock", "decoder", "pending", "out", "started", "last_io", "last_write",
                 "closing", "peer_pid", "mask", "inflight")

    def __init__(self, sock: socket.socket, peer_pid: int) -> None:
        now = time.monotonic()
        self.sock = sock
        self.decoder = protocol.FrameDecoder(protocol.MAX_REQUEST)
        self.pending: Deque[bytes] = deque()
        self.out = bytearray()
        self.started: Optional[float] = None  # first byte of the frame being received
        self.last_io = now
        self.last_write = now
        self.closing = False
        self.peer_pid = peer_pid
        self.mask = selectors.EVENT_READ
        self.inflight = False  # a slow op for this client is running on the worker thread


class _Refused:
    """A client told "busy": kept, write side shut, until it hangs up or a short grace ends, so
    that it can send its request and read the refusal instead of hitting EPIPE on send."""

    __slots__ = ("sock", "until")

    def __init__(self, sock: socket.socket, until: float) -> None:
        self.sock = sock
        self.until = until


_REFUSED_GRACE = 1.0  # seconds a refused client is kept to read its "busy" frame
_REFUSED_MAX = 64  # refused clients kept at once; beyond this they are closed at once
_SLOW_QUEUE = 16  # slow requests waiting for the worker; more are answered "busy"


class SocketServer:
    def __init__(self, agent: Any, path: str) -> None:
        self.agent = agent
        self.options = agent.options
        self.path = os.path.abspath(path)
        self._euid = os.geteuid()
        self._listener: Optional[socket.socket] = None
        self._sel: Optional[selectors.BaseSelector] = None
        self._wake_r: Optional[socket.socket] = None
        self._wake_w: Optional[socket.socket] = None
        self._conns: Dict[int, _Conn] = {}
        self._refused: Dict[int, _Refused] = {}
        self._ident: Optional[tuple] = None
        self._thread: Optional[threading.Thread] = None
        self._worker: Optional[threading.Thread] = None
        self._jobs: "queue.Queue[Any]" = queue.Queue(maxsize=_SLOW_QUEUE)
        self._done: Deque[tuple] = deque()
        self._closed = False
        self.accepted = 0
        self.refused = 0
        self.dropped = 0

    # setup / teardown ----------------------------------------------------------------------
    def start(self) -> None:
        directory = os.path.dirname(self.path)
        paths.ensure_private_dir(directory)
        # The temporary name is never longer than the final one (AF_UNIX paths are capped at
        # 107 bytes): "PID.sock" binds as "PID.tmp". One agent per PID, so it cannot collide;
        # a leftover from a crashed process with the same PID is ours to remove.
        tmp = os.path.join(directory, "%d.tmp" % os.getpid())
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(tmp)
            os.chmod(tmp, 0o600)  # private before it has its public name
            # A deep backlog: over-limit clients are accepted and told "busy" in a frame, which
            # a client can act on; a full backlog makes connect() fail with a bare EAGAIN.
            sock.listen(socket.SOMAXCONN)
            # rename() replaces whatever is at the final name (a stale socket, a planted
            # symlink) without following it.
            os.rename(tmp, self.path)
        except BaseException:
            sock.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        st = os.lstat(self.path)
        self._ident = (st.st_dev, st.st_ino)
        sock.setblocking(False)
        self._listener = sock
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(sock, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="memtui-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._wake_w is not None:
                self._wake_w.send(b"x")
        except OSError:
            pass
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            pass
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=2.0)
        self._unlink_own()

    def _unlink_own(self) -> None:
        """Remove the socket path only if it is still the inode we bound (never someone else's)."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if self._ident == (st.st_dev, st.st_ino) and stat.S_ISSOCK(st.st_mode):
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def abandon(self) -> None:
        """In a forked child: close inherited descriptors; leave the parent's path alone."""
        self._closed = True
        for conn in list(self._conns.values()):
            _close_quietly(conn.sock)
        self._conns.clear()
        for ref in list(self._refused.values()):
            _close_quietly(ref.sock)
        self._refused.clear()
        for s in (self._listener, self._wake_r, self._wake_w):
            _close_quietly(s)
        if self._sel is not None:
            try:
                self._sel.close()
            except Exception:
                pass

    @property
    def clients(self) -> int:
        return len(self._conns)

    # loop ----------------------------------------------------------------------------------
    def _run(self) -> None:
        sel = self._sel
        assert sel is not None
        while not self._closed:
            try:
                for key, mask in sel.select(timeout=0.25):
                    if key.data is None:
                        self._accept()
                    elif isinstance(key.data, _Refused):
                        self._drain_refused(key.data)
                    elif key.data == "wake":
                        try:
                            self._wake_r.recv(4096)  # type: ignore[union-attr]
                        except OSError:
                            pass
                        self._deliver_done()
                    else:
                        conn = key.data
                        if mask & selectors.EVENT_READ:
                            self._on_read(conn)
                        if mask & selectors.EVENT_WRITE and conn.sock.fileno() in self._conns:
                            self._on_write(conn)
                self._reap()
            except Exception as exc:  # never let one bad moment kill the server
                self.agent.record_error("server", exc)
                time.sleep(0.05)
        for conn in list(self._conns.values()):
            self._close(conn)
        for ref in list(self._refused.values()):
            self._close_refused(ref)
        for s in (self._listener, self._wake_r, self._wake_w):
            _close_quietly(s)
        try:
            sel.close()
        except Exception:
            pass

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: report, keep serving the rest
                self.agent.record_error("accept", exc)
                return
            try:
                pid, uid, _gid = peer_credentials(sock)
            except OSError:
                _close_quietly(sock)
                continue
            if uid != self._euid and uid != 0:
                self.refused += 1
                self._refuse(sock, protocol.PERMISSION_DENIED,
                             "this agent serves uid %d and root only, not uid %d"
                             % (self._euid, uid))
                self.agent.events.emit("security", "warning",
                                       "refused a client of uid %d (PID %d)" % (uid, pid),
                                       uid=uid, peer_pid=pid)
                continue
            if len(self._conns) >= self.options.max_clients:
                self._prune_hung_up()
            if len(self._conns) >= self.options.max_clients:
                self.refused += 1
                self._refuse(sock, protocol.BUSY,
                             "the agent already serves %d clients; try again shortly"
                             % len(self._conns), keep=True)
                continue
            sock.setblocking(False)
            conn = _Conn(sock, pid)
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)  # type: ignore[union-attr]
            self.accepted += 1

    def _prune_hung_up(self) -> None:
        """At capacity, free the slots of clients that already hung up (a burst of connections
        is accepted before their EOFs are read), so that "busy" means busy. POLLHUP means the
        peer closed both directions: no reply owed to it can be delivered any more."""
        poller = select.poll()
        for fd in self._conns:
            poller.register(fd, 0)  # POLLHUP and POLLERR are reported whatever the mask
        for fd, _events in poller.poll(0):
            conn = self._conns.get(fd)
            if conn is not None:
                self._close(conn)

    def _refuse(self, sock: socket.socket, code: str, message: str, keep: bool = False) -> None:
        """Send one error frame and hang up. With *keep*, only shut the write side and keep the
        socket for a short grace (draining what the client sends): a client that writes its
        request right after connecting then reads the frame, instead of failing with EPIPE."""
        try:
            sock.setblocking(False)
            sock.send(protocol.encode_frame(protocol.error(None, code, message)))
        except OSError:
            _close_quietly(sock)
            return
        if not keep or len(self._refused) >= _REFUSED_MAX:
            _close_quietly(sock)
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            ref = _Refused(sock, time.monotonic() + _REFUSED_GRACE)
            self._sel.register(sock, selectors.EVENT_READ, ref)  # type: ignore[union-attr]
        except (OSError, KeyError, ValueError):
            _close_quietly(sock)
            return
        self._refused[sock.fileno()] = ref

    def _drain_refused(self, ref: _Refused) -> None:
        try:
            if ref.sock.recv(65536):
                return  # discarded unread; the grace bounds how long this goes on
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._close_refused(ref)

    def _close_refused(self, ref: _Refused) -> None:
        fd = ref.sock.fileno()
        if self._refused.get(fd) is ref:
            del self._refused[fd]
            try:
                self._sel.unregister(ref.sock)  # type: ignore[union-attr]
            except (KeyError, ValueError, OSError):
                pass
        _close_quietly(ref.sock)

    def _on_read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        now = time.monotonic()
        conn.last_io = now
        if conn.started is None:
            conn.started = now
        try:
            frames = conn.decoder.feed(data)
        except protocol.FrameTooLarge as exc:
            conn.out += protocol.encode_frame(protocol.error(
                None, protocol.TOO_LARGE, "request of %d bytes exceeds the %d-byte limit"
                % (exc.size, exc.limit)))
            conn.closing = True
            conn.last_write = now
            self._flush(conn)
            return
        conn.pending.extend(frames)
        if frames:
            conn.started = now if conn.decoder.pending else None
        self._pump(conn)

    def _on_write(self, conn: _Conn) -> None:
        self._flush(conn)

    def _pump(self, conn: _Conn) -> None:
        """Answer queued requests one at a time; a reply must drain before the next is built."""
        while not conn.out and conn.pending and not conn.closing and not conn.inflight:
            reply = self._handle(conn, conn.pending.popleft())
            if reply is None:  # handed to the worker; answered by _deliver_done
                conn.inflight = True
                break
            conn.out += reply
            conn.last_write = time.monotonic()
            self._flush(conn, pump=False)
            if conn.sock.fileno() not in self._conns:
                return
        self._set_interest(conn)

    def _flush(self, conn: _Conn, pump: bool = True) -> None:
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(conn)
                return
            if sent:
                del conn.out[:sent]
                conn.last_write = conn.last_io = time.monotonic()
        if not conn.out and conn.closing:
            self._close(conn)
            return
        if pump:
            self._pump(conn)

    def _set_interest(self, conn: _Conn) -> None:
        if conn.inflight and not conn.out:
            mask = 0  # neither read more requests nor write: wait for the worker
        elif conn.out or conn.pending:
            mask = selectors.EVENT_WRITE  # stop reading until the reply drains
        else:
            mask = selectors.EVENT_READ
        if mask == conn.mask:
            return
        sel = self._sel
        assert sel is not None
        try:
            if mask == 0:
                sel.unregister(conn.sock)
            elif conn.mask == 0:
                sel.register(conn.sock, mask, conn)
            else:
                sel.modify(conn.sock, mask, conn)
        except (KeyError, ValueError, OSError):
            self._close(conn)
            return
        conn.mask = mask

    # slow ops ------------------------------------------------------------------------------
    def _submit_slow(self, conn: _Conn, msg: Dict[str, Any]) -> Optional[bytes]:
        """Queue a slow op for the worker thread; a reply now only if the queue is full."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="memtui-ops", daemon=True)
            self._worker.start()
        try:
            self._jobs.put_nowait((conn, msg))
        except queue.Full:
            return self._encode(protocol.error(
                msg.get("id"), protocol.BUSY,
                "the agent is already running %d slow requests; try again shortly" % _SLOW_QUEUE))
        return None

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._closed:
                return
            conn, msg = job
            try:
                frame = self._encode(ops.dispatch(self.agent, msg, {"peer_pid": conn.peer_pid}))
            except Exception as exc:
                self.agent.record_error("server worker", exc)
                frame = protocol.encode_frame(protocol.error(
                    msg.get("id"), protocol.INTERNAL, "the agent failed to answer: %s"
                    % type(exc).__name__))
            self._done.append((conn, frame))
            try:
                self._wake_w.send(b"d")  # type: ignore[union-attr]
            except OSError:
                pass  # full wake pipe: the loop is awake anyway and drains _done

    def _deliver_done(self) -> None:
        while self._done:
            conn, frame = self._done.popleft()
            if self._conns.get(conn.sock.fileno()) is not conn:
                continue  # the client left while its op ran
            conn.inflight = False
            conn.out += frame
            conn.last_write = time.monotonic()
            self._flush(conn)

    def _handle(self, conn: _Conn, body: bytes) -> Optional[bytes]:
        """One request in, exactly one reply frame out, whatever the request or the op does."""
        try:
            return self._reply(conn, body)
        except Exception as exc:  # a request must never go unanswered and wedge its connection
            self.agent.record_error("server", exc)
            return protocol.encode_frame(protocol.error(
                None, protocol.INTERNAL, "the agent failed to answer: %s" % type(exc).__name__))

    def _reply(self, conn: _Conn, body: bytes) -> Optional[bytes]:
        try:
            msg = protocol.decode_body(body)
        except protocol.ProtocolError as exc:
            return protocol.encode_frame(protocol.error(None, protocol.BAD_FRAME, str(exc)))
        if msg.get("op") in ops.SLOW:
            return self._submit_slow(conn, msg)
        return self._encode(ops.dispatch(self.agent, msg, {"peer_pid": conn.peer_pid}))

    @staticmethod
    def _encode(resp: Dict[str, Any]) -> bytes:
        try:
            return protocol.encode_frame(resp, protocol.MAX_RESPONSE)
        except protocol.FrameTooLarge as exc:
            return protocol.encode_frame(protocol.error(
                resp.get("id"), protocol.TOO_LARGE,
                "the reply would be %d bytes, over the %d-byte limit; ask for fewer items"
                % (exc.size, exc.limit)))

    def _reap(self) -> None:
        now = time.monotonic()
        o = self.options
        for ref in list(self._refused.values()):
            if now > ref.until:
                self._close_refused(ref)
        for conn in list(self._conns.values()):
            if conn.started is not None and now - conn.started > o.request_timeout:
                reason = "request not completed within %.1fs" % o.request_timeout
            elif conn.out and now - conn.last_write > o.write_timeout:
                reason = "reply not read within %.1fs" % o.write_timeout
            elif (not conn.out and not conn.pending and not conn.inflight
                  and now - conn.last_io > o.idle_timeout):
                reason = None  # a quiet client is normal; just let it go
            else:
                continue
            if reason:
                self.dropped += 1
                self.agent.events.emit("client", "debug", "dropped a slow client: " + reason,
                                       peer_pid=conn.peer_pid)
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd in self._conns:
            del self._conns[fd]
            if conn.mask:
                try:
                    self._sel.unregister(conn.sock)  # type: ignore[union-attr]
                except (KeyError, ValueError, OSError):
                    pass
        _close_quietly(conn.sock)


def _close_quietly(sock: Optional[socket.socket]) -> None:
    if sock is None:
        return
    try:
        sock.close()
    except OSError:
        pass
