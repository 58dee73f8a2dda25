"""Startup probe: ``startup_probe.py VARIANT`` in a fresh interpreter; prints ``RESULT {json}``.

VARIANT: memtui (import memtui; memtui.start(); the socket exists; RSS read after the first
sample), memtui-import (import memtui only), stdlib (import json, socket, threading), psutil,
logging. Wall time is from just before the import to when start() returned (socket checked);
RSS is /proc/self/statm resident pages before vs after.
"""
import os
import sys
import time


# variant -> modules it imports and nothing else (the peers, and memtui imported but not started)
PLAIN_IMPORTS = {"memtui-import": ("memtui",), "stdlib": ("json", "socket", "threading"),
                 "psutil": ("psutil",), "logging": ("logging",)}


def rss():
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main():
    variant = sys.argv[1]
    before = set(sys.modules)
    r0 = rss()
    t0 = time.perf_counter()
    if variant == "memtui":
        import memtui
        agent = memtui.start()
        ok = agent is not None and os.path.exists(agent.socket_path)
        t1 = time.perf_counter()
        while agent.seq < 1:  # the first sample is in the ring
            time.sleep(0.001)
        time.sleep(0.01)  # let the server thread reach its first select()
    elif variant in PLAIN_IMPORTS:
        for name in PLAIN_IMPORTS[variant]:
            __import__(name)
        ok = True
        t1 = time.perf_counter()
    else:
        raise SystemExit("unknown variant %r" % variant)
    r1 = rss()
    new = sorted(set(sys.modules) - before)
    print("RESULT {\"ms\": %.4f, \"rss\": %d, \"modules\": %d, \"ok\": %s, \"new\": %s}" % (
        (t1 - t0) * 1000.0, r1 - r0, len(new), "true" if ok else "false",
        "[" + ",".join('"%s"' % m for m in new) + "]"), flush=True)
    if variant == "memtui":
        memtui.stop()


if __name__ == "__main__":
    main()
