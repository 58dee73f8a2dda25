"""An allocation-heavy workload timed from inside: ``alloc_workload.py MODE`` with MODE plain or
tracemalloc (started here, 1 frame); run it under ``memray run`` for memray. Prints RESULT."""
from __future__ import annotations

import json
import sys
import time


def work(rounds: int) -> int:
    total = 0
    for r in range(rounds):
        rows = [{"id": i, "name": "n%d" % i, "tags": [i, r]} for i in range(2000)]
        text = json.dumps(rows)
        total += len(json.loads(text))
    return total


def main() -> None:
    mode, rounds = sys.argv[1], int(sys.argv[2])
    if mode == "tracemalloc":
        import tracemalloc
        tracemalloc.start(1)
    work(5)  # warm up
    t = time.perf_counter()
    work(rounds)
    print("RESULT " + json.dumps({"elapsed_s": time.perf_counter() - t}), flush=True)


if __name__ == "__main__":
    main()
