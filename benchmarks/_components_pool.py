"""Pool and worker rows for the components benchmark: WorkerPool vs ThreadPoolExecutor on tiny
tasks, ResourcePool acquire+release vs a bare queue.Queue pool. ``run(quick)`` returns rows;
printing is left to benchmarks/components.py.
"""
from __future__ import annotations

import os
import queue
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List

from memtui.runtime.pool import ResourcePool
from memtui.runtime.workers import WorkerPool


def _noop() -> None:
    return None


def _drive(executor: Any, n: int) -> float:
    """Seconds to submit *n* tiny tasks and collect every result."""
    t0 = time.perf_counter()
    futures = [executor.submit(_noop) for _ in range(n)]
    for f in futures:
        f.result()
    return time.perf_counter() - t0


def _workers_round(n: int, workers: int) -> Dict[str, float]:
    with ThreadPoolExecutor(max_workers=workers) as tpe:
        _drive(tpe, 2000)  # warm: threads started
        peer = _drive(tpe, n)
    with WorkerPool(min_workers=1, max_workers=workers, queue_size=n + 2000,
                    register=False) as pool:
        _drive(pool, 2000)
        ours = _drive(pool, n)
    return {"ours": ours, "peer": peer}


def _acquire_release(pool: ResourcePool, n: int) -> float:
    acquire = pool.acquire
    t0 = time.perf_counter()
    for _ in range(n):
        with acquire(timeout=1.0):
            pass
    return time.perf_counter() - t0


def _queue_pool(q: "queue.Queue[Any]", n: int) -> float:
    get, put = q.get, q.put
    t0 = time.perf_counter()
    for _ in range(n):
        res = get(timeout=1.0)
        try:
            pass
        finally:
            put(res)
    return time.perf_counter() - t0


def _paired(rounds: int, one: Callable[[int], Dict[str, float]]) -> Dict[str, float]:
    """Alternate ours/peer each round (order rotated), keep medians and the median ratio."""
    ours, peer, ratios = [], [], []
    for r in range(rounds):
        res = one(r)
        ours.append(res["ours"])
        peer.append(res["peer"])
        ratios.append(res["ours"] / res["peer"])
    return {"ours": statistics.median(ours), "peer": statistics.median(peer),
            "ratio": statistics.median(ratios)}


def run(quick: bool) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    n_tasks = 100_000
    workers = min(4, os.cpu_count() or 1)
    w = _paired(3 if quick else 7, lambda r: _workers_round(n_tasks, workers))
    rows.append({
        "what": "WorkerPool throughput, %dk tiny tasks, %d workers" % (n_tasks // 1000, workers),
        "peer": "concurrent.futures.ThreadPoolExecutor(%d)" % workers,
        "ns_per_op_ours": w["ours"] / n_tasks * 1e9, "ns_per_op_peer": w["peer"] / n_tasks * 1e9,
        "ratio": w["ratio"], "target": "<= 1.0x",
        "ops_per_s_ours": n_tasks / w["ours"], "ops_per_s_peer": n_tasks / w["peer"],
    })

    n_acq = 50_000 if quick else 200_000
    pool = ResourcePool(object, min_size=4, max_size=4, register=False)
    q: "queue.Queue[Any]" = queue.Queue()
    for _ in range(4):
        q.put(object())

    def acq_round(r: int) -> Dict[str, float]:
        if r % 2:
            peer = _queue_pool(q, n_acq)
            ours = _acquire_release(pool, n_acq)
        else:
            ours = _acquire_release(pool, n_acq)
            peer = _queue_pool(q, n_acq)
        return {"ours": ours, "peer": peer}

    acq_round(0)  # warm
    a = _paired(5 if quick else 9, acq_round)
    pool.close()
    rows.append({
        "what": "ResourcePool acquire+release (uncontended, stats on)",
        "peer": "queue.Queue get+put pool",
        "ns_per_op_ours": a["ours"] / n_acq * 1e9, "ns_per_op_peer": a["peer"] / n_acq * 1e9,
        "ratio": a["ratio"], "target": "<= 1.5x",
        "ops_per_s_ours": n_acq / a["ours"], "ops_per_s_peer": n_acq / a["peer"],
    })
    return rows


if __name__ == "__main__":  # a quick look without the lead's table
    for row in run(quick=True):
        print(row)
