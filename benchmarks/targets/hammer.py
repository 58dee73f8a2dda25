"""Latency client: ``hammer.py (agent PID | echo PATH) [RATE]`` connects one AgentClient, prints
``CONNECTED``, then reads ``go T0 SECONDS`` and, from wall-clock time T0, sends ``stats`` requests
for SECONDS: back to back, or RATE per second (a polling dashboard). Prints ``LAT [...]`` with every
round trip in microseconds."""
import json
import random
import sys
import time

from memtui.client import AgentClient


def main():
    kind, where = sys.argv[1], sys.argv[2]
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    client = AgentClient(pid=int(where)) if kind == "agent" else AgentClient(path=where)
    client.connect()
    client.stats()
    print("CONNECTED", flush=True)
    _, t0, secs = sys.stdin.readline().split()
    start, secs = float(t0), float(secs)
    while time.time() < start:
        time.sleep(min(0.01, max(0.0, start - time.time())))
    lat = []
    end = time.perf_counter() + secs
    now = time.perf_counter()
    period = 1.0 / rate if rate > 0 else 0.0
    # Independent dashboards are not phase-locked: each starts at a random point of its period.
    next_at = now + (random.uniform(0.0, period) if period else 0.0)
    if period:
        time.sleep(max(0.0, next_at - now))
        now = time.perf_counter()
        end = now + secs
    while now < end:
        client.stats()
        t = time.perf_counter()
        lat.append(int((t - now) * 1e6))
        if period:
            next_at += period
            time.sleep(max(0.0, next_at - t))
            t = time.perf_counter()
        now = t
    client.close()
    print("LAT " + json.dumps(lat), flush=True)


if __name__ == "__main__":
    main()
