"""Cache rows of the components table: memtui's Cache against cachetools and functools.lru_cache.

Each figure is ns per operation over a loop of distinct keys, minus the cost of the bare loop;
ours and the peer's run alternately, round after round, and the minimum of each is kept (the
least-disturbed run). Stats are on: they always are. Prints nothing.
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Dict, List, Optional

SIZE = 1000  # entries in every cache


def _loop(op: Callable[[Any], Any], keys: List[int]) -> float:
    t0 = time.perf_counter()
    for k in keys:
        op(k)
    return time.perf_counter() - t0


def _empty(k: Any) -> None:
    return None


def _pair(ours: Callable[[Any], Any], peer: Callable[[Any], Any], keys: List[int],
          rounds: int, prepare: Optional[Callable[[], None]] = None) -> tuple:
    """Best ns/op of ours and of the peer, alternating, with the loop-and-call overhead (a call
    to an empty function) taken off both."""
    best = {"ours": float("inf"), "peer": float("inf"), "empty": float("inf")}
    for r in range(rounds):
        order = [("ours", ours), ("peer", peer), ("empty", _empty)]
        if r % 2:
            order.reverse()
        for label, op in order:
            if prepare is not None:
                prepare()
            best[label] = min(best[label], _loop(op, keys))
    n = len(keys)
    base = best["empty"]
    # Keep a floor so a near-free peer cannot produce a silly ratio.
    return (max(best["ours"] - base, 1e-12) / n * 1e9, max(best["peer"] - base, 1e-12) / n * 1e9)


def _row(what: str, peer: str, ours_ns: float, peer_ns: float,
         target: Optional[str]) -> Dict[str, Any]:
    return {"what": what, "peer": peer, "ns_per_op_ours": round(ours_ns, 1),
            "ns_per_op_peer": round(peer_ns, 1), "ratio": round(ours_ns / peer_ns, 3),
            "target": target}


def run(quick: bool) -> List[Dict[str, Any]]:
    import cachetools  # a dev dependency; the benchmark suite needs it, memtui does not

    from memtui.runtime.cache import Cache, cached

    rounds = 5 if quick else 15
    hit_keys = list(range(SIZE)) * (20 if quick else 60)
    new_keys = list(range(SIZE, SIZE + (20_000 if quick else 60_000)))
    rows: List[Dict[str, Any]] = []

    # -- LRU: Cache.get / set against LRUCache.__getitem__ / get / __setitem__ --------------------
    ours = Cache(name="bench-lru", max_entries=SIZE, register=False)
    peer = cachetools.LRUCache(maxsize=SIZE)
    for k in range(SIZE):
        ours.set(k, k)
        peer[k] = k
    o, p = _pair(ours.get, peer.__getitem__, hit_keys, rounds)
    rows.append(_row("Cache(lru) hit: get(k)", "cachetools.LRUCache[k]", o, p, "<= 1.0x"))
    o, p = _pair(ours.get, peer.get, [-k - 1 for k in hit_keys], rounds)
    rows.append(_row("Cache(lru) miss: get(k)", "cachetools.LRUCache.get(k)", o, p, None))
    ours_set, peer_set = ours.set, peer.__setitem__
    o, p = _pair(lambda k: ours_set(k, k), lambda k: peer_set(k, k), new_keys, rounds)
    rows.append(_row("Cache(lru) set new key, full (evicts one)", "cachetools.LRUCache[k] = v",
                     o, p, None))

    # -- decorators: @cached against @functools.lru_cache -----------------------------------------
    @cached("bench-cached", max_entries=SIZE, register=False)
    def ours_fn(k: int) -> int:
        return k

    @functools.lru_cache(maxsize=SIZE)
    def peer_fn(k: int) -> int:
        return k

    for k in range(SIZE):
        ours_fn(k)
        peer_fn(k)
    o, p = _pair(ours_fn, peer_fn, hit_keys, rounds)
    rows.append(_row("@cached hit: f(k)", "@functools.lru_cache (C) f(k)", o, p, None))
    o, p = _pair(ours_fn, peer_fn, new_keys, rounds)
    rows.append(_row("@cached miss: f(k) computes + stores + evicts", "@functools.lru_cache f(k)",
                     o, p, None))

    # -- TTL: Cache(policy="ttl").get against TTLCache.__getitem__ --------------------------------
    ours_ttl = Cache(name="bench-ttl", policy="ttl", ttl=3600, max_entries=SIZE, register=False)
    peer_ttl = cachetools.TTLCache(maxsize=SIZE, ttl=3600)
    for k in range(SIZE):
        ours_ttl.set(k, k)
        peer_ttl[k] = k
    o, p = _pair(ours_ttl.get, peer_ttl.__getitem__, hit_keys, rounds)
    rows.append(_row("Cache(ttl) hit: get(k)", "cachetools.TTLCache[k]", o, p, "<= 1.0x"))
    ours_set, peer_set = ours_ttl.set, peer_ttl.__setitem__
    o, p = _pair(lambda k: ours_set(k, k), lambda k: peer_set(k, k), new_keys, rounds)
    rows.append(_row("Cache(ttl) set new key, full (evicts one)", "cachetools.TTLCache[k] = v",
                     o, p, None))
    # the stats really were on: every hit above was counted
    assert ours.stats()["hits"] >= len(hit_keys) and ours_ttl.stats()["hits"] >= len(hit_keys)
    return rows


if __name__ == "__main__":  # a quick look; the lead's benchmarks/components.py prints the table
    for row in run(quick=True):
        print(row)
