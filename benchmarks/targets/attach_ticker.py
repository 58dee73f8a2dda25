"""Pause probe for the attach benchmark: ``attach_ticker.py MODE [LIFETIME_S]``.

Measures from inside how long this process stops while something attaches to it. Every 0.5 s it
prints ``tick T0 T1 MAXGAP_MS LOOPS`` (flushed): the window [T0, T1] in time.monotonic() (the
system-wide CLOCK_MONOTONIC, comparable with the benchmark's clock), the largest gap between two
consecutive wake-ups of the ticker in it, and the iterations of the busy loop per second (0 when
there is none). MODE:
  sleep  the main thread is the ticker: time.sleep(0.001) and note the gap, nothing else.
  loop   the main thread spins in a tight pure-Python loop; the ticker runs on a second thread.
  loop1  one thread only, spinning; the "ticker" is the loop itself (gap between iterations), so
         no thread is ever asleep in a system call.
Exits after LIFETIME_S (default 120) or when its parent goes away, whichever first.
"""
import os
import sys
import threading
import time

WINDOW = 0.5


def main() -> None:
    mode = sys.argv[1]
    lifetime = float(sys.argv[2]) if len(sys.argv) > 2 else 120.0
    parent = os.getppid()
    count = [0]
    clock = time.monotonic
    born = clock()

    def report(t0: float, now: float, gap: float, loops: int) -> None:
        print("tick %.6f %.6f %.3f %d" % (t0, now, gap * 1000.0, loops / (now - t0)), flush=True)
        if now - born > lifetime or os.getppid() != parent:
            os._exit(0)

    def ticker() -> None:
        last = t0 = clock()
        gap, seen = 0.0, count[0]
        while True:
            time.sleep(0.001)
            now = clock()
            if now - last > gap:
                gap = now - last
            last = now
            if now - t0 >= WINDOW:
                loops = count[0]
                report(t0, now, gap, loops - seen)
                t0, gap, seen = now, 0.0, loops

    print("ready %d" % os.getpid(), flush=True)
    if mode == "sleep":
        ticker()
    elif mode == "loop":
        threading.Thread(target=ticker, name="ticker", daemon=True).start()
        c = count
        while True:
            c[0] += 1
    elif mode == "loop1":
        last = t0 = clock()
        gap, n = 0.0, 0
        while True:
            n += 1
            now = clock()
            if now - last > gap:
                gap = now - last
            last = now
            if now - t0 >= WINDOW:
                report(t0, now, gap, n)
                t0, gap, n = now, 0.0, 0
    else:
        raise SystemExit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
