"""A target for alerts, pressure actions and automatic snapshots: real memory, caches, pools and
worker pools, driven one command per stdin line. Prints ``READY <pid> <socket>`` once serving.

Agent options come from argv as key=value (JSON values), e.g. ``interval=0.05 memory_limit=...``;
``settings=...`` (JSON) are profile sections (profiler, alerts, ...).

  rss                 -> "ok <rss>"
  alloc MIB           map and touch MIB mebibytes of anonymous memory -> "ok <rss>"
  free                unmap all of it (RSS really drops)              -> "ok <rss>"
  cache NAME N        a memtui.Cache NAME holding N entries of 1 KiB   -> "ok <len>"
  len NAME            -> "ok <len>"
  look NAME N HITS    N lookups in cache NAME, HITS of them hits      -> "ok"
  pool NAME MAX       a memtui.ResourcePool NAME, max_size MAX        -> "ok"
  hold NAME K         borrow K resources and keep them                -> "ok"
  wait NAME W         W threads block borrowing (waiters)             -> "ok"
  release NAME        give back everything borrowed, waiters included -> "ok"
  workers NAME QSIZE  a memtui.WorkerPool NAME, 1 worker, queue_size QSIZE -> "ok"
  queue NAME N        N tasks that wait for "unblock"                 -> "ok <queued>"
  unblock NAME        let the tasks run                               -> "ok"
  throttled NAME      -> "ok true|false"
  submit NAME         submit one no-op task                           -> "ok" | "rejected"
  objs N              keep N small tracked objects (a slow full gc)   -> "ok"
  collect             gc.collect()                                    -> "ok <collected>"
  gccount             -> "ok <collections of generation 2>"
  ping                -> "pong"
"""
import gc
import json
import mmap
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import memtui  # noqa: E402

MAPS = []
KEEP = []
CACHES = {}
POOLS = {}
HELD = {}
WORKERS = {}
GATES = {}


def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main():
    os.chdir("/")  # no ./profiles of whoever runs the tests reaches the agent
    kwargs = {}
    for arg in sys.argv[1:]:
        key, _, value = arg.partition("=")
        kwargs[key] = json.loads(value) if value[:1] in "0123456789[{tfn\"" else value
    agent = memtui.start(profiles=False, **kwargs)
    print("READY %d %s" % (os.getpid(), (agent and agent.socket_path) or "-"), flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        reply = "ok"
        if cmd == "rss":
            reply = "ok %d" % rss()
        elif cmd == "alloc":
            m = mmap.mmap(-1, int(args[0]) << 20)
            for off in range(0, len(m), mmap.PAGESIZE):
                m[off] = 1
            MAPS.append(m)
            reply = "ok %d" % rss()
        elif cmd == "free":
            while MAPS:
                MAPS.pop().close()
            reply = "ok %d" % rss()
        elif cmd == "cache":
            c = CACHES[args[0]] = memtui.Cache(name=args[0])
            for i in range(int(args[1])):
                c.set(i, b"x" * 1024)
            reply = "ok %d" % len(c)
        elif cmd == "len":
            reply = "ok %d" % len(CACHES[args[0]])
        elif cmd == "look":
            c, n, hits = CACHES[args[0]], int(args[1]), int(args[2])
            c.set("hot", 1)
            for i in range(n):
                c.get("hot" if i < hits else ("cold", i))
        elif cmd == "pool":
            POOLS[args[0]] = memtui.ResourcePool(factory=object, max_size=int(args[1]),
                                                 name=args[0])
            HELD[args[0]] = []
        elif cmd == "hold":
            for _ in range(int(args[1])):
                HELD[args[0]].append(POOLS[args[0]].acquire(timeout=5))
        elif cmd == "wait":
            pool = POOLS[args[0]]

            def borrow(pool=pool, name=args[0]):
                try:
                    lease = pool.acquire(timeout=30)
                except Exception:
                    return
                lease.release()

            for _ in range(int(args[1])):
                threading.Thread(target=borrow, daemon=True).start()
            while pool.stats()["waiters"] < int(args[1]):
                pass
        elif cmd == "release":
            while HELD[args[0]]:
                HELD[args[0]].pop().release()
        elif cmd == "workers":
            WORKERS[args[0]] = memtui.WorkerPool(min_workers=1, max_workers=1,
                                                 queue_size=int(args[1]), name=args[0])
            GATES[args[0]] = threading.Event()
        elif cmd == "queue":
            pool, gate = WORKERS[args[0]], GATES[args[0]]
            for _ in range(int(args[1])):
                pool.submit(gate.wait, 30)
            reply = "ok %d" % pool.stats()["queued"]
        elif cmd == "unblock":
            GATES[args[0]].set()
        elif cmd == "throttled":
            reply = "ok %s" % str(WORKERS[args[0]].stats()["throttled"]).lower()
        elif cmd == "submit":
            try:
                WORKERS[args[0]].submit(lambda: None)
            except memtui.QueueFull:
                reply = "rejected"
        elif cmd == "objs":
            KEEP.append([{"i": i} for i in range(int(args[0]))])
        elif cmd == "collect":
            reply = "ok %d" % gc.collect()
        elif cmd == "gccount":
            reply = "ok %d" % gc.get_stats()[2]["collections"]
        elif cmd == "ping":
            reply = "pong"
        print(reply, flush=True)


if __name__ == "__main__":
    main()
