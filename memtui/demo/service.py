"""A small fake web service for `memtui demo`, built from memtui's own blocks: caches (LRU, LFU
with warm and cold tiers, TTL+TTI sessions), a resource pool, a priority worker pool, a batch
writer, a watched functools.lru_cache, and one deliberate slow leak. ``--components N`` adds
busy caches, pools and worker pools until N components report (for load: benchmarks/dashboard)."""
from __future__ import annotations

import argparse
import functools
import hashlib
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

import memtui
from memtui.agent import registry as component_registry

# The leak: a module-level dict that nobody ever prunes, the way real request logs leak.
REQUEST_LOG: Dict[int, bytes] = {}


class Connection:
    """A fake database connection holding a buffer, as real drivers do."""

    def __init__(self, n: int, buffer_bytes: int) -> None:
        self.id = n
        self.buffer = bytearray(buffer_bytes)
        self.queries = 0
        self.broken = False


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


@functools.lru_cache(maxsize=64)
def render_template(name: str) -> str:
    """What an app already has: memtui.watch() reports it without changing it."""
    return ("<html>%s</html>" % name) * 20


class DemoService:
    """Wires the parts together: a producer submits requests at a rate that swells and ebbs."""

    def __init__(self, rate: float, workers: int, pool_size: int, leak_kb_per_s: float,
                 leak_max_mb: float) -> None:
        self.rate = rate
        self._connections = 0  # before the pool: it connects eagerly up to default_size
        self._tmp = tempfile.mkdtemp(prefix="memtui-demo-")
        self.users = memtui.Cache(name="users", policy="lru", max_entries=2000)
        self.search = memtui.Cache(
            name="search", policy="lfu", max_bytes="512KiB",
            tiers={"warm": {"max_bytes": "2MiB", "compression": 6},
                   "cold": {"path": os.path.join(self._tmp, "search"), "max_bytes": "16MiB"}})
        self.sessions = memtui.Cache(name="sessions", policy="ttl", ttl="20s", tti="5s",
                                     max_entries=5000)
        self.db = memtui.ResourcePool(
            factory=self._connect, close=lambda c: None, validate=lambda c: not c.broken,
            min_size=1, default_size=2, max_size=pool_size, idle_timeout="20s", name="db",
            weigher=lambda c: len(c.buffer))
        self.workers = memtui.WorkerPool(name="requests", min_workers=1, max_workers=workers,
                                         queue_size=500, idle_timeout="10s")
        self.audit = memtui.BatchProcessor(self._write_audit, batch_size=40, flush_interval=0.5,
                                           max_concurrency=1, name="audit")
        self.log = RequestLog(leak_kb_per_s / rate if rate else 0.0, int(leak_max_mb * 1024 ** 2))
        memtui.register(self.log)
        memtui.watch(render_template, name="templates")
        self.dropped = 0
        self._stop = threading.Event()
        self._rng = random.Random(7)
        self._producer = threading.Thread(target=self._produce, name="producer", daemon=True)

    def _connect(self) -> Connection:
        self._connections += 1
        time.sleep(0.01)  # connecting costs something
        return Connection(self._connections, 256 * 1024)

    @staticmethod
    def _write_audit(records: List[int]) -> List[bool]:
        time.sleep(0.002 + 0.0002 * len(records))  # one round trip per batch, not per record
        return [True] * len(records)

    def handle(self, request_id: int) -> None:
        rng = random.Random(request_id)
        self.sessions.get_or_load(rng.randrange(300), lambda k: {"user": k, "seen": time.time()})
        self.users.get_or_load(rng.randrange(500), lambda k: b"u" * 512 + str(k).encode())
        # search keys follow a skewed popularity, so the LFU tiers have a hot head and a long tail
        key = int(rng.paretovariate(0.9) * 20) % 50000
        self.search.get_or_load(key, lambda k: b"s" * 4096 + str(k).encode())
        render_template("page-%d" % rng.randrange(80))
        with self.db.acquire(timeout=0.5) as conn:
            conn.queries += 1
            conn.buffer[:64] = os.urandom(64)
            if rng.random() < 0.005:
                conn.broken = True  # caught by validate on the next borrow
            time.sleep(rng.uniform(0.002, 0.03))  # the "query"
        self.audit.submit(request_id)
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
            try:
                self.workers.submit(self.handle, request_id, priority=request_id % 3)
            except memtui.QueueFull:
                self.dropped += 1
            self._stop.wait(self._rng.expovariate(max(rate, 0.1)))

    def run(self) -> None:
        self._producer.start()

    def stop(self) -> None:
        self._stop.set()
        self._producer.join(timeout=2.0)
        self.workers.shutdown(wait=True, cancel_pending=True)
        self.audit.close(wait=True)
        self.db.close()
        self.search.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


class ExtraLoad:
    """More components for load: caches, pools and worker pools in turn, used by one thread
    *rate* times a second (each one 1 to 4 times), with keys, sizes and limits that vary so
    every block shows different numbers."""

    def __init__(self, count: int, rate: float, seed: int = 11) -> None:
        self.rate = rate
        self.components: List[Any] = []
        self.uses: List[int] = []
        for i in range(count):
            self.uses.append(1 + i % 4)
            kind = ("cache", "pool", "workers")[i % 3]
            name = "%s-%02d" % ({"cache": "cache", "pool": "pool", "workers": "jobs"}[kind], i + 1)
            if kind == "cache":
                policy = ("lru", "lfu", "ttl")[(i // 3) % 3]
                self.components.append(memtui.Cache(
                    name=name, policy=policy, max_entries=50 + 25 * (i % 7),
                    ttl="30s" if policy == "ttl" else None))
            elif kind == "pool":
                size = 4096 * (1 + i % 5)
                self.components.append(memtui.ResourcePool(
                    factory=lambda size=size: bytearray(size), close=lambda b: None, min_size=1,
                    max_size=3, idle_timeout="30s", name=name, weigher=len))
            else:
                self.components.append(memtui.WorkerPool(
                    name=name, min_workers=1, max_workers=2, queue_size=50, idle_timeout="10s"))
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="extra-load", daemon=True)

    @staticmethod
    def _digest(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def _use(self, block: Any) -> None:
        rng = self._rng
        if isinstance(block, memtui.Cache):
            key = int(rng.paretovariate(1.2) * 10) % 400
            block.get_or_load(key, lambda k: os.urandom(16) * (8 + k % 64))
        elif isinstance(block, memtui.ResourcePool):
            try:
                with block.acquire(timeout=0.1) as buf:
                    buf[:16] = os.urandom(16)
            except memtui.PoolTimeout:
                pass  # the pool counts its timeouts
        else:
            try:
                block.submit(self._digest, os.urandom(64 * (1 + rng.randrange(16))))
            except memtui.QueueFull:
                pass  # the pool counts what it rejected

    def _run(self) -> None:
        # a pass over every added component per tick: a hundred-odd cheap calls, then sleep
        while not self._stop.wait(1.0 / self.rate):
            for block, uses in zip(self.components, self.uses):
                for _ in range(uses):
                    self._use(block)

    def run(self) -> None:
        if self.components and self.rate > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        for block in self.components:
            if isinstance(block, memtui.WorkerPool):
                block.shutdown(wait=True, cancel_pending=True)
            else:
                block.close()


# What the demo shows depends on these whatever a profile's [cache] defaults say: the search
# cache's hot tier must be small enough to spill into its warm and cold tiers.
DEMO_SETTINGS = {"caches": {"search": {"max_bytes": "512KiB"}}}


def start_agent(interval: float) -> Any:
    """The agent with the environment's profile, chosen as memtui.start() chooses it (MEMTUI_ENV,
    `memtui run --env`, else dev; ./profiles or MEMTUI_PROFILES). The demo runs anywhere: a
    profile it cannot use (say, a ./profiles of another app with no dev.toml) is reported on
    stderr and left out."""
    from memtui.agent.startup import ProfileError  # noqa: PLC0415

    try:
        return memtui.start(settings=DEMO_SETTINGS, interval=interval)
    except ProfileError as exc:
        sys.stderr.write("memtui demo: %s; running without the profile.\n" % str(exc).rstrip("."))
        return memtui.start(profiles=False, settings=DEMO_SETTINGS, interval=interval)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memtui.demo.service", description=__doc__)
    parser.add_argument("--interval", type=float, default=0.5, help="agent sampling interval (s)")
    parser.add_argument("--rate", type=float, default=80.0, help="requests per second")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--leak-kb-per-s", type=float, default=32.0)
    parser.add_argument("--leak-max-mb", type=float, default=48.0,
                        help="stop leaking past this, so a forgotten demo stays small")
    parser.add_argument("--components", type=int, default=0, metavar="N",
                        help="add busy caches, pools and worker pools until N components report")
    parser.add_argument("--component-rate", type=float, default=2.0, metavar="HZ",
                        help="passes per second over the added components (each used 1-4 "
                             "times a pass)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started us goes away (even SIGKILLed)")
    args = parser.parse_args(argv)
    parent = os.getppid()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # blocks first: they register before the agent's first sample, so the very first `stats`
    # a client reads already lists them
    service = DemoService(args.rate, args.workers, args.pool_size, args.leak_kb_per_s,
                          args.leak_max_mb)
    extra = ExtraLoad(max(0, args.components - len(component_registry())),
                      args.component_rate)
    agent = start_agent(args.interval)
    service.run()
    extra.run()
    print("READY %d %s" % (os.getpid(), agent.socket_path if agent else "-"), flush=True)
    while not stop.wait(0.5):
        if args.exit_with_parent and os.getppid() != parent:
            break
    extra.stop()
    service.stop()
    memtui.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
