"""Latency target: 100 registered components, the agent at interval 1 s, and a minimal echo server.

Prints ``READY <pid> <agent-socket> <echo-socket> <reply-bytes>``, then obeys stdin lines ``busy``
(a thread runs the overhead workload non-stop, as a CPU-bound host would) and ``idle``.
The echo server is the peer: one thread, a selector, non-blocking sockets, the same framing
(4-byte big-endian length + JSON). For each request frame it parses the JSON to learn the id and
answers with a reply of the same shape and size as a real ``stats`` reply: a ``stats`` result
captured once at start-up, pre-encoded, spliced after the id. It does no other work, so it is the
floor for a Python AF_UNIX request/response with this protocol and this payload.
"""
import json
import os
import selectors
import socket
import struct
import sys
import threading

import memtui
from memtui import protocol
from memtui.agent import ops

HEADER = struct.Struct(">I")
COMPONENTS = []


class Component:
    kind = "cache"

    def __init__(self, i):
        self.name = "cache-%03d" % i
        self.hits = 1000 * i
        self.misses = 10 * i

    def stats(self):
        self.hits += 1
        total = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses, "hit_rate": self.hits / total,
                "size": 512, "capacity": 1024, "evictions": 3, "bytes": 1 << 20,
                "ttl_s": 60.0, "expired": 7, "load_ms": 0.25}


class EchoServer:
    def __init__(self, path, result_json):
        self.prefix = b'{"id":'
        self.suffix = b',"ok":true,"result":' + result_json + b"}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
        self.listener = sock
        self.sel = selectors.DefaultSelector()
        self.sel.register(sock, selectors.EVENT_READ, None)
        threading.Thread(target=self.run, name="echo-server", daemon=True).start()

    def run(self):
        while True:
            for key, _ in self.sel.select():
                if key.data is None:
                    conn, _ = self.listener.accept()
                    conn.setblocking(True)  # replies fit the socket buffer; keep the floor simple
                    self.sel.register(conn, selectors.EVENT_READ, bytearray())
                else:
                    self.on_read(key.fileobj, key.data)

    def on_read(self, conn, buf):
        data = conn.recv(65536)
        if not data:
            self.sel.unregister(conn)
            conn.close()
            return
        buf += data
        while len(buf) >= 4:
            (size,) = HEADER.unpack_from(buf)
            if len(buf) < 4 + size:
                break
            req = json.loads(bytes(buf[4:4 + size]))
            del buf[:4 + size]
            body = self.prefix + json.dumps(req.get("id")).encode() + self.suffix
            conn.sendall(HEADER.pack(len(body)) + body)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for i in range(n):
        c = Component(i)
        COMPONENTS.append(c)
        memtui.register(c)
    agent = memtui.start(interval=1.0)
    result = ops.dispatch(agent, protocol.request(1, "stats", {}), {})["result"]
    # stats results are pre-encoded (protocol.RawJSON) so pollers share one encoding
    result_json = result.data if isinstance(result, protocol.RawJSON) else protocol.dumps(result)
    assert len(result_json) > 1000, "the echo peer must answer with the real stats payload"
    reply = protocol.encode_frame(protocol.ok(1, result))
    echo_path = os.path.join(os.path.dirname(agent.socket_path), "echo-%d.sock" % os.getpid())
    EchoServer(echo_path, result_json)
    print("READY %d %s %s %d" % (os.getpid(), agent.socket_path, echo_path, len(reply)), flush=True)
    busy = threading.Event()
    threading.Thread(target=host_work, args=(busy,), name="host-work", daemon=True).start()
    for line in sys.stdin:
        if line.strip() == "busy":
            busy.set()
        elif line.strip() == "idle":
            busy.clear()
        print("OK", flush=True)
    os.unlink(echo_path)


def host_work(busy):
    """While *busy* is set, keep one thread CPU-bound in pure Python, as a busy service would."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import workload

    i = 0
    while True:
        busy.wait()
        for _ in range(100):
            workload.handle(i)
            i += 1


if __name__ == "__main__":
    main()
