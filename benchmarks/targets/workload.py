"""Overhead target: an allocation-heavy, web-handler-like pure-Python workload.

Usage: workload.py MODE DURATION   (MODE: alone | alone2 | import | agent | trace | tracemalloc)
Prints ``READY <pid>``, waits for ``go`` on stdin, runs a 0.3 s warm-up then DURATION seconds of
handler calls, and prints ``RESULT {json}`` with the number of handler calls and the wall time.
``alone``/``alone2`` never import memtui (alone2 is the A/A control);
``import`` imports memtui without starting it; ``agent`` runs memtui.start(interval=1.0); ``trace`` adds
tracemalloc with one frame (memtui.start(interval=1.0, trace=True, trace_frames=1));
``tracemalloc`` is plain tracemalloc.start(1) with no memtui (the peer of ``trace``).
"""
import gc
import json
import os
import sys
import threading
import time

CACHE = {}


def handle(i):
    """One request: parse, look up, build items, filter, render, respond; everything dropped except
    a bounded cache (so some objects survive and the GC has real generations to look at)."""
    req = {
        "method": "GET",
        "path": "/api/v1/items/%d" % (i % 5000),
        "headers": {"host": "example.com", "user-agent": "bench/1.0",
                    "accept": "application/json", "x-request-id": "req-%08x" % i},
        "query": {"page": str(i % 10), "q": "item%d" % (i % 97)},
    }
    ctx = {"request": req, "started": i}
    ctx["self"] = ctx  # a reference cycle per request, as frameworks make: the GC has work to do
    parts = [p for p in req["path"].split("/") if p]
    key = (parts[2], int(parts[3]) // 50)
    items = CACHE.get(key)
    if items is None:
        items = [{"id": key[1] * 50 + k, "name": "item-%d-%d" % (key[1], k),
                  "tags": ["t%d" % (k % 3), "sale" if k % 4 == 0 else "std"],
                  "price": k * 1.25 + 0.99} for k in range(24)]
        if len(CACHE) >= 64:
            CACHE.pop(next(iter(CACHE)))
        CACHE[key] = items
    page = int(req["query"]["page"])
    rows = [dict(it, rank=n) for n, it in enumerate(items) if (it["id"] + page) % 3]
    body = "\n".join("%s,%s,%.2f,%s" % (r["id"], r["name"], r["price"], "|".join(r["tags"]))
                     for r in rows)
    resp = {"status": 200,
            "headers": {"content-type": "text/csv", "content-length": str(len(body)),
                        "x-request-id": req["headers"]["x-request-id"]},
            "body": body}
    return len(resp["body"])


def run(seconds):
    i = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    now = t0
    while now < end:
        for _ in range(200):
            handle(i)
            i += 1
        now = time.perf_counter()
    return i, now - t0


def agent_cpu():
    """CPU seconds used so far by the agent's threads (memtui-*), from their per-thread clocks."""
    total = 0.0
    for t in threading.enumerate():
        if t.name.startswith("memtui") and t.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
            except (OSError, ValueError):
                pass
    return total


def main():
    mode, duration = sys.argv[1], float(sys.argv[2])
    if mode == "tracemalloc":
        import tracemalloc
        tracemalloc.start(1)
    elif mode == "import":
        import memtui  # noqa: F401 - imported, never started
    elif not mode.startswith("alone"):
        import memtui
        opts = {"interval": 1.0}
        if mode == "trace":
            opts.update(trace=True, trace_frames=1)
        agent = memtui.start(**opts)
        assert agent is not None and agent.socket_path and os.path.exists(agent.socket_path)
    print("READY %d" % os.getpid(), flush=True)
    sys.stdin.readline()  # "go" once any external client is connected
    run(0.3)  # warm-up: allocator arenas, caches, branch predictors
    cpu0 = time.process_time()
    agent0 = agent_cpu()
    gc0 = sum(s["collections"] for s in gc.get_stats())
    ops, secs = run(duration)
    cpu = time.process_time() - cpu0
    agent_s = agent_cpu() - agent0
    gcs = sum(s["collections"] for s in gc.get_stats()) - gc0
    print("RESULT " + json.dumps({"ops": ops, "secs": secs, "ops_per_s": ops / secs,
                                   "cpu_s": cpu, "ops_per_cpu_s": ops / cpu,
                                   "agent_cpu_s": agent_s, "gc_collections": gcs}), flush=True)
    sys.stdin.readline()  # stay alive until the parent has stopped the poller


if __name__ == "__main__":
    main()
