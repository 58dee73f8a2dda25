"""Build a deterministic heap of ~1M live objects, then run each census variant named on the
command line in turn, on that same heap, and print one ``RESULT {json}`` per variant: elapsed
seconds and the peak memory it added (VmHWM reset to the current RSS just before each)."""
from __future__ import annotations

import gc
import json
import os
import sys
import time


class Item:
    def __init__(self, i: int) -> None:
        self.key = 10 ** 12 + i  # a large int: its own object, not the small-int cache
        self.name = "item-%07d" % i
        self.tags = ("t%d" % (i % 97), "u%d" % (i % 89))


def build(n_items: int) -> list:
    items = [Item(i) for i in range(n_items)]
    plain = [{"a": i, "b": float(i), "c": "row"} for i in range(n_items)]  # atomic-only: untracked
    words = ["word-%d" % (i % (n_items // 4 or 1)) for i in range(n_items)]  # many duplicates
    pairs = [[i, i + 1] for i in range(n_items // 2)]
    return [items, plain, words, pairs]


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def run(variant: str) -> dict:
    if variant == "objgraph":
        import objgraph
        return {"top": objgraph.most_common_types(limit=20)[:3]}
    if variant == "muppy":
        from pympler import muppy, summary
        rows = summary.summarize(muppy.get_objects())
        return {"rows": len(rows)}
    from memtui.agent import census
    if variant == "memtui-counts":
        out = census.count_types(limit=20)
        return {"objects": out["objects"]}
    if variant == "memtui-full":
        out = census.census(budget_s=600.0)
        c = out["census"]
        return {"objects": c["objects"], "complete": c["complete"],
                "wasted": (out.get("duplicates") or {}).get("wasted_bytes")}
    if variant == "memtui-snapshot":  # census + duplicates + JSON + gzip + fsync'd file
        import tempfile

        from memtui.agent import snapshots
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o700)
            meta = snapshots.take(None, budget_s=600.0, directory=tmp)
        return {"objects": meta["objects"], "complete": meta["complete"], "file": meta["bytes"]}
    raise SystemExit("unknown variant %r" % variant)


def main() -> None:
    n_items, variants = int(sys.argv[1]), sys.argv[2:]
    import objgraph  # noqa: F401  (import costs are not census costs)
    import pympler.muppy  # noqa: F401
    import pympler.summary  # noqa: F401
    import memtui.agent.census  # noqa: F401
    import memtui.agent.snapshots  # noqa: F401
    heap = build(n_items)
    for variant in variants:
        gc.collect()  # untrack atomic-only dicts and tuples, as a long-running process has
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        base = _status("VmRSS")
        t = time.perf_counter()
        info = run(variant)
        elapsed = time.perf_counter() - t
        peak = _status("VmHWM")
        info.update(variant=variant, elapsed_s=elapsed, extra_bytes=max(0, peak - base),
                    live=len(heap), tracked=len(gc.get_objects()))
        print("RESULT " + json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
