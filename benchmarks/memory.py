"""memory: what the agent holds once its history ring is full (interval 0.01 s, history 600).

A fresh target (benchmarks/targets/memory_target.py) starts tracemalloc(1) first, then the agent,
and reports RSS and traced bytes right after start, once 600+ samples were taken (ring full), and
(full run) again at 1200 samples to show the ring is bounded. 'memtui-attributed' counts traced
bytes allocated by lines in memtui's own files. Run with 0 and with 100 registered components
(component_history keeps the last 120 samples' component stats). No target; reported.
The peer is the same process right after start: growth is what the ring adds.
"""
from __future__ import annotations

from typing import List

from . import _common as c


def main(quick: bool = False) -> List[str]:
    marks = [620] if quick else [620, 1220]
    rows = []
    with c.RuntimeDir() as rd:
        # All four targets run at once: they mostly sleep (100 Hz sampling), and this keeps it short.
        procs = {(ncomp, trace): c.spawn("memory_target.py", [str(ncomp)] + [str(m) for m in marks],
                                         env=c.env(rd, **({} if trace else {"BENCH_NOTRACE": "1"})))
                 for ncomp in (0, 100) for trace in (True, False)}
        got = {}
        try:
            for key, p in procs.items():
                got[key] = [c.expect_json(p, "POINT ", timeout=120) for _ in range(1 + len(marks))]
        finally:
            for p in procs.values():
                c.finish(p)
        for ncomp in (0, 100):
            pts, plain = got[(ncomp, True)], got[(ncomp, False)]
            base, pbase = pts[0], plain[0]
            for pt, pp in zip(pts, plain):
                grow = pt["memtui"] - base["memtui"]
                added = pt["rows"] - base["rows"]
                rows.append([
                    "%d components, %s" % (ncomp, "right after start [peer]" if pt is base else
                                            "%d samples taken" % pt["seq"]),
                    pt["rows"], pt["comp_rows"], c.mib(pp["rss"]),
                    "" if pt is base else "%+.2f MiB" % ((pp["rss"] - pbase["rss"]) / 1048576.0),
                    "" if pt is base else "%+.1f KiB" % ((pt["traced"] - base["traced"]) / 1024.0),
                    "%.1f KiB" % (pt["memtui"] / 1024.0),
                    "" if pt is base else "%+.1f KiB" % (grow / 1024.0),
                    "" if pt is base or not added else "%.0f" % (grow / added),
                ])
    notes = [
        "rows = history ring rows (capacity 600); comp rows = samples keeping component stats"
        " (component_history, default 120).",
        "RSS columns come from a second, identical run without tracemalloc (its tables inflate RSS).",
        "traced = tracemalloc(1) current bytes, after gc.collect(); memtui-attributed = traced bytes"
        " allocated by lines in memtui/.",
        "B/sample = memtui-attributed growth / ring rows added (the component history's cost is"
        " amortised into it).",
        "no target; the ring must stop growing once full (compare the 620 and 1220 rows).",
        "the four target processes (0/100 components x traced/untraced) run concurrently.",
    ]
    return [c.table("memory: agent footprint with a full history ring (interval 0.01 s, history 600)",
                    ["state", "rows", "comp rows", "RSS", "RSS growth", "traced growth",
                     "memtui-attributed", "growth", "B/sample"], rows, notes)]


if __name__ == "__main__":
    main()
