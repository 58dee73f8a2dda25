"""A small fake web service for `memtui demo`: two caches, a connection pool, worker threads and a
slow leak, each registered as a memtui component. The classes here are demo-local stand-ins."""
from __future__ import annotations

import argparse
import math
import os
import queue
import random
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Deque, Dict, List, Optional

import memtui

# The leak: a module-level dict that nobody ever prunes, the way real request logs leak.
REQUEST_LOG: Dict[int, bytes] = {}


class LRUCache:
    """Dict-based LRU bounded by entries; counts hits, misses and evictions."""

    kind = "cache"

    def __init__(self, name: str, max_entries: int, load: Callable[[Any], bytes]) -> None:
        self.name = name
        self.max_entries = max_entries
        self._load = load
        self._data: "OrderedDict[Any, bytes]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0
        self.bytes = 0

    def get(self, key: Any) -> bytes:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return value
            self.misses += 1
        value = self._load(key)  # outside the lock: a slow load must not stall other readers
        with self._lock:
            if key not in self._data:
                self._data[key] = value
                self.bytes += len(value)
            while len(self._data) > self.max_entries:
                _, old = self._data.popitem(last=False)
                self.bytes -= len(old)
                self.evictions += 1
        return value

    def shrink(self, fraction: float) -> int:
        freed = 0
        with self._lock:
            for _ in range(int(len(self._data) * fraction)):
                _, old = self._data.popitem(last=False)
                freed += len(old)
                self.evictions += 1
            self.bytes -= freed
        return freed

    def stats(self) -> Dict[str, Any]:
        # Plain attribute reads: no lock, so the agent's sampler never waits on the app.
        lookups = self.hits + self.misses
        return {"entries": len(self._data), "max_entries": self.max_entries,
                "hit_rate": self.hits / lookups if lookups else 0.0, "hits": self.hits,
                "misses": self.misses, "evictions": self.evictions, "bytes": self.bytes}


class Connection:
    def __init__(self, n: int, buffer_bytes: int) -> None:
        self.id = n
        self.buffer = bytearray(buffer_bytes)
        self.queries = 0


class ConnectionPool:
    """A fixed set of fake connections; acquire() blocks until one is idle or the timeout passes."""

    kind = "pool"

    def __init__(self, name: str, size: int, buffer_kb: int) -> None:
        self.name = name
        self.size = size
        self.buffer_bytes = size * buffer_kb * 1024
        self._idle: List[Connection] = [Connection(i, buffer_kb * 1024) for i in range(size)]
        self._cond = threading.Condition()
        self.waiters = self.acquired = self.timeouts = 0
        self.wait_ms_max = 0.0

    def acquire(self, timeout: float = 1.0) -> Optional[Connection]:
        t0 = time.perf_counter()
        with self._cond:
            self.waiters += 1
            try:
                if not self._cond.wait_for(lambda: self._idle, timeout):
                    self.timeouts += 1
                    return None
            finally:
                self.waiters -= 1
            self.acquired += 1
            self.wait_ms_max = max(self.wait_ms_max, (time.perf_counter() - t0) * 1000.0)
            return self._idle.pop()

    def release(self, conn: Connection) -> None:
        with self._cond:
            self._idle.append(conn)
            self._cond.notify()

    def stats(self) -> Dict[str, Any]:
        idle = len(self._idle)
        return {"size": self.size, "in_use": self.size - idle, "idle": idle,
                "waiters": self.waiters, "timeouts": self.timeouts, "acquired": self.acquired,
                "wait_ms_max": self.wait_ms_max, "buffer_bytes": self.buffer_bytes}


class Workers:
    """Threads draining a job queue; tracks active, queued, completed, failed and latency."""

    kind = "workers"

    def __init__(self, name: str, threads: int, handle: Callable[[int], None]) -> None:
        self.name = name
        self._handle = handle
        self._queue: "queue.Queue[Optional[int]]" = queue.Queue()
        self.active = self.completed = self.failed = 0
        self._latencies: Deque[float] = deque(maxlen=256)
        self._threads = [threading.Thread(target=self._run, name="%s-%d" % (name, i), daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, job: int) -> None:
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self.active += 1
            t0 = time.perf_counter()
            try:
                self._handle(job)
                self.completed += 1
            except Exception:
                self.failed += 1
            finally:
                self.active -= 1
                self._latencies.append((time.perf_counter() - t0) * 1000.0)

    def stop(self, timeout: float = 5.0) -> None:
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def stats(self) -> Dict[str, Any]:
        recent = list(self._latencies)
        return {"threads": len(self._threads), "active": self.active,
                "queued": self._queue.qsize(), "completed": self.completed, "failed": self.failed,
                "latency_ms": sum(recent) / len(recent) if recent else 0.0,
                "latency_ms_max": max(recent) if recent else 0.0}


class RequestLog:
    """Reports the leak: REQUEST_LOG keeps a few KB per request forever (up to a safety cap)."""

    kind = "custom"
    name = "request_log"

    def __init__(self, kb_per_request: float, max_bytes: int) -> None:
        self.entry_bytes = int(kb_per_request * 1024)
        self.max_bytes = max_bytes
        self.bytes = 0

    def record(self, request_id: int) -> None:
        if self.entry_bytes and self.bytes + self.entry_bytes <= self.max_bytes:
            REQUEST_LOG[request_id] = os.urandom(16) * (self.entry_bytes // 16)
            self.bytes += self.entry_bytes

    def stats(self) -> Dict[str, Any]:
        return {"entries": len(REQUEST_LOG), "bytes": self.bytes, "max_bytes": self.max_bytes}


class DemoService:
    """Wires the parts together: a producer submits requests at a rate that swells and ebbs."""

    def __init__(self, rate: float, workers: int, pool_size: int, leak_kb_per_s: float,
                 leak_max_mb: float) -> None:
        self.rate = rate
        self.users = LRUCache("users", 2000, lambda k: b"u" * 512 + str(k).encode())
        self.search = LRUCache("search", 300, lambda k: b"s" * 4096 + str(k).encode())
        self.db = ConnectionPool("db", pool_size, buffer_kb=256)
        self.log = RequestLog(leak_kb_per_s / rate if rate else 0.0, int(leak_max_mb * 1024 ** 2))
        self.workers = Workers("workers", workers, self.handle)
        self._stop = threading.Event()
        self._rng = random.Random(7)
        for component in (self.users, self.search, self.db, self.workers, self.log):
            memtui.register(component)
        self._producer = threading.Thread(target=self._produce, name="producer", daemon=True)

    def handle(self, request_id: int) -> None:
        rng = random.Random(request_id)
        self.users.get(rng.randrange(500))  # small key space: mostly hits
        self.search.get(rng.randrange(20000))  # huge key space: mostly misses
        conn = self.db.acquire(timeout=0.5)
        if conn is None:
            raise TimeoutError("no idle connection")
        try:
            conn.queries += 1
            conn.buffer[: 64] = os.urandom(64)
            time.sleep(rng.uniform(0.002, 0.03))  # the "query"
        finally:
            self.db.release(conn)
        self.log.record(request_id)
        if rng.random() < 0.02:
            raise ValueError("request %d failed" % request_id)

    def _produce(self) -> None:
        request_id = 0
        t0 = time.monotonic()
        while not self._stop.is_set():
            # A 30 s wave between 0.5x and 1.5x the base rate, so pool and queue numbers move.
            rate = self.rate * (1.0 + 0.5 * math.sin((time.monotonic() - t0) * 2 * math.pi / 30))
            request_id += 1
            self.workers.submit(request_id)
            self._stop.wait(self._rng.expovariate(max(rate, 0.1)))

    def run(self) -> None:
        self._producer.start()

    def stop(self) -> None:
        self._stop.set()
        self._producer.join(timeout=2.0)
        self.workers.stop()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memtui.demo.service", description=__doc__)
    parser.add_argument("--interval", type=float, default=0.5, help="agent sampling interval (s)")
    parser.add_argument("--rate", type=float, default=80.0, help="requests per second")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--leak-kb-per-s", type=float, default=32.0)
    parser.add_argument("--leak-max-mb", type=float, default=48.0,
                        help="stop leaking past this, so a forgotten demo stays small")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started us goes away (even SIGKILLed)")
    args = parser.parse_args(argv)
    parent = os.getppid()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent = memtui.start(env="demo", interval=args.interval)
    service = DemoService(args.rate, args.workers, args.pool_size, args.leak_kb_per_s,
                          args.leak_max_mb)
    service.run()
    print("READY %d %s" % (os.getpid(), agent.socket_path if agent else "-"), flush=True)
    while not stop.wait(0.5):
        if args.exit_with_parent and os.getppid() != parent:
            break
    service.stop()
    memtui.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
