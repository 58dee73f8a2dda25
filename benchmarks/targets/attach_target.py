"""Attach-latency target: ``attach_target.py MODE``; prints ``ready PID`` and waits.

MODE: plain (no memtui at all: for the inject and external ways), agent (``memtui.start()``: an
agent listening) or install (``memtui.install()``: dormant until SIGUSR2). The main thread then
sleeps in a blocking read of stdin, as an idle service sits in a system call; EOF (the benchmark
closing the pipe, or dying) ends it.
"""
import os
import sys


def main() -> None:
    mode = sys.argv[1]
    if mode == "agent":
        import memtui
        if memtui.start() is None:
            raise SystemExit("memtui.start() returned None")
    elif mode == "install":
        import memtui
        if not memtui.install():
            raise SystemExit("memtui.install() returned False")
    elif mode != "plain":
        raise SystemExit("unknown mode %r" % mode)
    print("ready %d" % os.getpid(), flush=True)
    while sys.stdin.readline():
        pass


if __name__ == "__main__":
    main()
