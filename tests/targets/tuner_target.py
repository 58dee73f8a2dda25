"""A target for the tuner op: an agent sampling every 50 ms, a watched cachetools cache too small
for its working set, and a watched lru_cache that is healthy. One command per stdin line:
  churn N    N lookups over 1000 keys into the small cache, paced over ~N/100 s  -> "ok <misses>"
  warm N     N lookups over 40 keys into the healthy lru_cache (64 slots)        -> "ok"
  ping       -> "pong"
Prints ``READY <pid> <socket>`` once serving.
"""
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import cachetools  # noqa: E402

import memtui  # noqa: E402
from memtui.runtime.adapters import watch  # noqa: E402

SMALL = cachetools.LRUCache(maxsize=50)


@functools.lru_cache(maxsize=64)
def healthy(key):
    return key * 2


def churn(n):
    misses = 0
    for i in range(n):
        key = (i * 7919) % 1000  # a working set of 1000 against 50 slots: mostly misses
        try:
            SMALL[key]
        except KeyError:
            misses += 1
            SMALL[key] = str(key)
        if i % 20 == 19:
            time.sleep(0.01)
    return misses


def main():
    os.chdir("/")  # no ./profiles of whoever runs the tests reaches the agent
    agent = memtui.start(interval="50ms")
    watch(SMALL, name="small")
    watch(healthy, name="healthy")
    print("READY %d %s" % (os.getpid(), (agent and agent.socket_path) or "-"), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "churn":
            print("ok %d" % churn(int(arg)), flush=True)
        elif cmd == "warm":
            for i in range(int(arg)):
                healthy(i % 40)
            print("ok", flush=True)
        elif cmd == "ping":
            print("pong", flush=True)


if __name__ == "__main__":
    main()
