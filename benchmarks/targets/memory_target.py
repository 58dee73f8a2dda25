"""Agent memory once the history ring is full: ``memory_target.py COMPONENTS SAMPLES...``.

Starts tracemalloc (1 frame) first, then the agent with interval=0.01 s and history=600, registers
COMPONENTS small components, and prints ``POINT {json}`` right after start and again once the
sample count reaches each of SAMPLES: RSS, total traced bytes, and traced bytes whose allocating
line is in memtui's own files (attributable to the agent). With BENCH_NOTRACE=1 in the
environment tracemalloc stays off and only RSS is reported (tracemalloc's own tables and its
snapshots would inflate RSS)."""
import gc
import json
import os
import sys
import time
import tracemalloc

TRACE = os.environ.get("BENCH_NOTRACE") != "1"  # RSS is measured in a separate, untraced run
if TRACE:
    tracemalloc.start(1)

import memtui  # noqa: E402

COMPONENTS = []


class Component:
    kind = "cache"

    def __init__(self, i):
        self.name = "cache-%03d" % i
        self.n = 0

    def stats(self):
        self.n += 1
        return {"hits": self.n, "misses": 3, "hit_rate": 0.99, "size": 512, "capacity": 1024,
                "evictions": 3, "bytes": 1 << 20, "ttl_s": 60.0, "expired": 7, "load_ms": 0.25}


def rss():
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def point(agent, pkg):
    gc.collect()
    if not TRACE:
        return {"seq": agent.seq, "rows": len(agent._rows), "comp_rows": len(agent._comp_rows),
                "rss": rss()}
    snap = tracemalloc.take_snapshot()
    mine = sum(s.size for s in snap.statistics("filename")
               if s.traceback[0].filename.startswith(pkg))
    return {"seq": agent.seq, "rows": len(agent._rows), "comp_rows": len(agent._comp_rows),
            "rss": rss(), "traced": tracemalloc.get_traced_memory()[0], "memtui": mine}


def main():
    ncomp, marks = int(sys.argv[1]), [int(x) for x in sys.argv[2:]]
    for i in range(ncomp):
        c = Component(i)
        COMPONENTS.append(c)
        memtui.register(c)
    pkg = os.path.dirname(memtui.__file__)
    agent = memtui.start(interval=0.01, history=600)
    while agent.seq < 1:
        time.sleep(0.001)
    print("POINT " + json.dumps(point(agent, pkg)), flush=True)
    for m in marks:
        while agent.seq < m:
            time.sleep(0.05)
        print("POINT " + json.dumps(point(agent, pkg)), flush=True)
    memtui.stop()


if __name__ == "__main__":
    main()
