"""A process that makes the heap census's life hard, one situation per mode; prints one JSON line.

building  a thread is inside tuple(iterable) with a length hint of 200000 (NULL slots) while the
          census, count_types and safe_repr run; then it is let finish
churn     a thread builds tuple(genexpr) in a loop (each grown by _PyTuple_Resize, which fails if
          anything else holds the tuple) while census and count_types run for SECONDS each
memory    KIND (ints | shared) heap, then one census without duplicates: the peak memory it added
"""
from __future__ import annotations

import gc
import json
import sys
import threading
import time


def building() -> dict:
    release = threading.Event()
    started = threading.Event()
    result: dict = {}

    class Slow:
        def __iter__(self):
            return self

        def __length_hint__(self):
            return 200000

        def __next__(self):
            started.set()
            release.wait(30)
            raise StopIteration

    def build():
        try:
            result["len"] = len(tuple(Slow()))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            result["error"] = "%s: %s" % (type(exc).__name__, exc)

    th = threading.Thread(target=build, daemon=True)
    th.start()
    started.wait(10)
    from memtui.agent import census
    out = census.census(budget_s=30.0)
    counts = census.count_types(limit=None)
    release.set()
    th.join(10)
    return {"containers": [(c["type"], c["len"]) for c in out["containers"]],
            "complete": out["census"]["complete"], "counted": counts["objects"] > 0,
            "host": result}


def churn(seconds: float) -> dict:
    errors: list = []
    built = [0]
    stop = threading.Event()

    def work():
        while not stop.is_set():
            try:
                tuple(str(i) for i in range(30))
                built[0] += 1
            except SystemError as exc:
                errors.append(str(exc))

    sys.setswitchinterval(0.0005)  # switch threads often: more chances to hit the hazard
    th = threading.Thread(target=work, daemon=True)
    th.start()
    time.sleep(0.05)
    from memtui.agent import census
    runs = {"census": 0, "count": 0}
    for name, fn in (("census", lambda: census.census(budget_s=1.0, duplicates=False)),
                     ("count", census.count_types)):
        t = time.monotonic()
        while time.monotonic() - t < seconds:
            fn()
            runs[name] += 1
    stop.set()
    th.join(10)
    return {"runs": runs, "built": built[0], "errors": len(errors), "first": errors[:1]}


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def memory(kind: str) -> dict:
    if kind == "ints":  # one list of 3M distinct ints, each referenced once
        heap = [list(range(10 ** 9, 10 ** 9 + 3_000_000))]
    else:  # 600k strings each held by two lists: all "shared"
        a = ["s%07d" % i for i in range(600_000)]
        heap = [a, list(a)]
    from memtui.agent import census
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS
    base = _status("VmRSS")
    out = census.census(budget_s=60.0, duplicates=False)
    return {"extra": _status("VmHWM") - base, "objects": out["census"]["objects"],
            "complete": out["census"]["complete"], "live": len(heap)}


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "building":
        res = building()
    elif mode == "churn":
        res = churn(float(sys.argv[2]))
    else:
        res = memory(sys.argv[2])
    print(json.dumps(res), flush=True)
