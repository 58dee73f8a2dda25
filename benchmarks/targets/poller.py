"""External client for the overhead benchmark: ``poller.py PID INTERVAL`` connects an AgentClient
to PID, prints ``CONNECTED``, then calls ``stats`` every INTERVAL seconds until stdin closes and
prints ``POLLED {json}`` (requests made, mean and max latency)."""
import json
import sys
import threading
import time

from memtui.client import AgentClient


def main():
    pid, interval = int(sys.argv[1]), float(sys.argv[2])
    client = AgentClient(pid=pid).connect()
    client.stats()
    print("CONNECTED", flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    lat = []
    nxt = time.monotonic()
    while not done.is_set():
        t0 = time.perf_counter()
        client.stats()
        lat.append(time.perf_counter() - t0)
        nxt += interval
        done.wait(max(0.0, nxt - time.monotonic()))
    client.close()
    print("POLLED " + json.dumps({"n": len(lat), "mean_ms": 1000 * sum(lat) / len(lat),
                                  "max_ms": 1000 * max(lat)}), flush=True)


if __name__ == "__main__":
    main()
