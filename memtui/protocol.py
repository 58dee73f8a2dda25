"""Wire protocol v1: 4-byte big-endian length + UTF-8 JSON object, and the request/response shapes.

No I/O beyond a socket handed in; no pickle, no eval. Stdlib only.
"""
from __future__ import annotations

import json
import math
import socket
import struct
import time
from typing import Any, Dict, List, Optional

VERSION = 1
HEADER = struct.Struct(">I")
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
MAX_REQUEST = 64 * 1024
MAX_RESPONSE = 16 * 1024 * 1024

# Error codes carried in {"ok": false, "error": {"code": ..., "message": ...}}.
BAD_FRAME = "bad_frame"  # not UTF-8 / not JSON / not an object
TOO_LARGE = "too_large"
BAD_REQUEST = "bad_request"  # JSON object but not a request shape
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_OP = "unknown_op"
BAD_ARGS = "bad_args"
RATE_LIMITED = "rate_limited"
BUSY = "busy"
PERMISSION_DENIED = "permission_denied"
UNAVAILABLE = "unavailable"  # the op exists but cannot run in this process
INTERNAL = "internal"


class AgentError(Exception):
    """Base of every error talking to an agent; the message is one sentence a user can act on."""


class NoSuchProcess(AgentError):
    pass


class NoAgent(AgentError):
    pass


class AgentGone(AgentError):
    pass


class PermissionRefused(AgentError):
    pass


class ProtocolError(AgentError):
    """The peer broke the framing or sent something that is not a valid message."""


class FrameTooLarge(ProtocolError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__("frame of %d bytes exceeds the %d-byte limit" % (size, limit))
        self.size = size
        self.limit = limit


class RemoteError(AgentError):
    """The agent answered with ok=false."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_SCALARS = (str, bool, type(None))
_MAX_INT_BITS = 1000  # larger ints become strings: str() of a huge int is slow or refused


def sentence(exc: BaseException) -> str:
    """One line for stderr. Agent messages are embedded as they are: an op name such as
    gc.collect or a path keeps its case; only a plain leading word is capitalised."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, RemoteError):
        text = "The agent answered: %s" % text
    first = text.split(" ", 1)[0]
    if first.isalpha() and first.islower():
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _label(obj: Any) -> str:
    try:
        return str(obj)[:200]
    except Exception:
        return "<unprintable %s>" % type(obj).__name__


def json_safe(obj: Any, max_nodes: int = 10000, max_depth: int = 32) -> Any:
    """A strict-JSON-safe copy of *obj*, whatever it holds: non-finite floats become None, huge
    ints and unknown types become strings, cycles become "<cycle>", and the copy stops at
    *max_nodes* values ("<truncated>") so a pathological structure costs bounded time."""
    budget = [max_nodes]
    path: set = set()

    def walk(o: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > max_depth:
            return "<truncated>"
        if isinstance(o, _SCALARS):
            return o if type(o) in (str, bool, type(None)) else _label(o)
        if isinstance(o, int):
            return int(o) if o.bit_length() <= _MAX_INT_BITS else "<int of %d bits>" % o.bit_length()
        if isinstance(o, float):
            return float(o) if math.isfinite(o) else None
        if isinstance(o, (dict, list, tuple, set, frozenset)):
            if id(o) in path:
                return "<cycle>"
            path.add(id(o))
            try:
                if isinstance(o, dict):
                    out_d: Dict[str, Any] = {}
                    for k, v in list(o.items()):
                        if budget[0] <= 0:
                            out_d["<truncated>"] = True
                            break
                        out_d[k if isinstance(k, str) else _label(k)] = walk(v, depth + 1)
                    return out_d
                out_l: List[Any] = []
                for v in list(o):
                    if budget[0] <= 0:
                        out_l.append("<truncated>")
                        break
                    out_l.append(walk(v, depth + 1))
                return out_l
            finally:
                path.discard(id(o))
        return _label(o)

    return walk(obj, 0)


def is_flat_json(d: Dict[str, Any]) -> bool:
    """True for the common case that needs no copying: str keys, plain scalar values."""
    for k, v in d.items():
        t = type(v)
        if type(k) is not str:
            return False
        if t is float:
            if not math.isfinite(v):
                return False
        elif t is int:
            if v.bit_length() > _MAX_INT_BITS:
                return False
        elif t is not str and t is not bool and v is not None:
            return False
    return True


def dumps(obj: Any) -> bytes:
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(json_safe(obj), separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


class RawJSON:
    """An already-encoded JSON value, spliced into a reply as-is: lets many requests share one
    encoding of the same result."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def encode_frame(obj: Any, limit: int = MAX_RESPONSE) -> bytes:
    result = obj.get("result") if isinstance(obj, dict) else None
    if isinstance(result, RawJSON):
        head = dumps({k: v for k, v in obj.items() if k != "result"})
        body = head[:-1] + b',"result":' + result.data + b"}"
    else:
        body = dumps(obj)
    if len(body) > limit:
        raise FrameTooLarge(len(body), limit)
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> Dict[str, Any]:
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("frame is not valid UTF-8") from None
    except ValueError:
        raise ProtocolError("frame is not valid JSON") from None
    except RecursionError:  # deep nesting: json raises this, not ValueError
        raise ProtocolError("frame nests too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not a JSON object")
    return obj


class FrameDecoder:
    """Incremental decoder for a non-blocking reader. The length cap is checked on the header,
    before any body bytes are buffered, so a hostile 4 GiB header costs nothing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> List[bytes]:
        self._buf += data
        frames: List[bytes] = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > self.limit:
                raise FrameTooLarge(size, self.limit)
            if len(self._buf) < HEADER.size + size:
                break
            frames.append(bytes(self._buf[HEADER.size : HEADER.size + size]))
            del self._buf[: HEADER.size + size]
        return frames


def _recv_exact(sock: socket.socket, n: int, deadline: Optional[float]) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out waiting for the agent's reply")
            sock.settimeout(remaining)
        chunk = sock.recv(min(n - len(chunks), 1 << 20))
        if not chunk:
            raise ConnectionResetError("connection closed by peer")
        chunks += chunk
    return bytes(chunks)


def read_frame(sock: socket.socket, limit: int, deadline: Optional[float] = None) -> Dict[str, Any]:
    """Blocking read of one frame; checks the declared length before reading the body."""
    (size,) = HEADER.unpack(_recv_exact(sock, HEADER.size, deadline))
    if size > limit:
        raise FrameTooLarge(size, limit)
    return decode_body(_recv_exact(sock, size, deadline))


def peer_credentials(sock: socket.socket) -> tuple:
    """(pid, uid, gid) of the peer of a connected AF_UNIX socket, from SO_PEERCRED."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    return _CRED.unpack(raw)


def request(req_id: int, op: str, args: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"v": VERSION, "id": req_id, "op": op, "args": args or {}}


def ok(req_id: Any, result: Any) -> Dict[str, Any]:
    return {"id": req_id, "ok": True, "result": result}


def error(req_id: Any, code: str, message: str, **extra: Any) -> Dict[str, Any]:
    """An error reply; the message ends with a full stop (it is often led by an op name such as
    gc.collect, so it is not capitalised)."""
    message = message.strip() or code
    if not message.endswith((".", "!", "?")):
        message += "."
    err: Dict[str, Any] = {"code": code, "message": message}
    err.update(extra)
    return {"id": req_id, "ok": False, "error": err}
