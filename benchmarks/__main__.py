"""Run the memtui benchmarks: ``python -m benchmarks [--quick] [overhead|latency|startup|memory ...]``."""
from __future__ import annotations

import argparse
import importlib
import platform
import os
import sys
import time

NAMES = ["overhead", "latency", "startup", "memory", "components", "config_cli", "heap", "dashboard",
         "attach"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("names", nargs="*", choices=NAMES + [[]], metavar="NAME",
                    help="benchmarks to run (default: all): " + ", ".join(NAMES))
    ap.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs")
    args = ap.parse_args(argv)
    names = args.names or NAMES
    print("memtui benchmarks  python %s  %s  %d CPUs  %s" % (
        platform.python_version(), platform.machine(), os.cpu_count() or 0,
        "quick" if args.quick else "full"), flush=True)
    t0 = time.monotonic()
    for name in names:
        t = time.monotonic()
        mod = importlib.import_module("benchmarks." + name)
        mod.main(quick=args.quick)
        print("  (%s took %.1f s)" % (name, time.monotonic() - t), flush=True)
    print("\nall done in %.1f s" % (time.monotonic() - t0), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
