"""Memory-bound scenario: a service caching rendered results per key under Zipf-distributed traffic.

Usage: bounded_cache_service.py dict|memtui MAX_BYTES REQUESTS SEED
``dict`` caches in an unbounded dict (the common leak-by-design); ``memtui`` in
``Cache(policy="lru", max_bytes=MAX_BYTES)``. Same traffic for both (seeded). Prints
``RESULT {json}`` with hits, misses, hit rate, peak RSS (VmHWM) and RSS at the end.
"""
import bisect
import itertools
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

KEYS = 100_000
VALUE_BYTES = 2048


def zipf_sampler(n: int, s: float, rng: random.Random):
    weights = [1.0 / (k ** s) for k in range(1, n + 1)]
    cum = list(itertools.accumulate(weights))
    total = cum[-1]

    def draw() -> int:
        return bisect.bisect_left(cum, rng.random() * total)

    return draw


def render(key: int) -> bytes:
    """The 'expensive' work whose result is cached: a ~2 KiB response body."""
    return (b"%08d" % key) * (VALUE_BYTES // 8)


def vm_hwm() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    mode, max_bytes, requests, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    draw = zipf_sampler(KEYS, 1.1, rng)
    base = vm_hwm()
    if mode == "memtui":
        from memtui.runtime.cache import Cache

        cache = Cache(name="responses", policy="lru", max_bytes=max_bytes, register=False)
        get, put = cache.get, cache.set
    else:
        store: dict = {}
        get, put = store.get, store.__setitem__
    hits = misses = 0
    for _ in range(requests):
        key = "item:%d" % draw()
        body = get(key)
        if body is None:
            misses += 1
            put(key, render(int(key[5:])))
        else:
            hits += 1
    print("RESULT " + json.dumps({"mode": mode, "hits": hits, "misses": misses,
                                  "hit_rate": hits / requests, "peak_rss": vm_hwm(),
                                  "base_rss": base}), flush=True)


if __name__ == "__main__":
    main()
