"""A process to attach to: `python attach_target.py MODE`. Prints "READY <pid>" and then a
"tick N" line every ~0.2 s from its main thread's own work, so a test sees it keep running.

Modes: sleep (main thread in time.sleep), loop (a tight pure-Python loop), threads (workers
sleeping, computing and waiting on a queue; main in join), install (memtui.install(), dormant),
install-dfl / install-ign (install(), then SIGUSR2 reset to default / ignored), catch (its own
SIGUSR2 handler: prints SIGNALLED if ever signalled), signals (prints GOT USR1 / GOT USR2),
install-exec (install(), then exec a shell that traps SIGUSR2), disable-late (sets MEMTUI_DISABLE=1 in
os.environ after start: /proc/PID/environ does not show it). Runs with any Python 3.9+."""
import os
import queue
import signal
import sys
import threading
import time

mode = sys.argv[1] if len(sys.argv) > 1 else "sleep"
out = sys.stdout


def say(text):
    out.write(text + "\n")
    out.flush()


if mode.startswith("install") and mode != "install-exec":
    import memtui

    assert memtui.install()
    if mode == "install-dfl":
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    elif mode == "install-ign":
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
elif mode == "catch":
    signal.signal(signal.SIGUSR2, lambda *a: say("SIGNALLED"))
elif mode == "disable-late":
    os.environ["MEMTUI_DISABLE"] = "1"
elif mode == "signals":
    signal.signal(signal.SIGUSR1, lambda *a: say("GOT USR1"))
    signal.signal(signal.SIGUSR2, lambda *a: say("GOT USR2"))
elif mode == "install-exec":
    import memtui

    assert memtui.install()
    say("READY %d" % os.getpid())
    # Another program under the same PID and start time, catching SIGUSR2 for its own reasons.
    os.execv("/bin/sh", ["sh", "-c", "trap 'echo GOT USR2' USR2; "
                         "while :; do sleep 0.1; echo tick; done"])

say("READY %d" % os.getpid())

if mode == "loop":
    n, last, tick = 0, time.monotonic(), 0
    while True:
        n += 1
        if n % 20000 == 0 and time.monotonic() - last >= 0.2:
            last = time.monotonic()
            tick += 1
            say("tick %d" % tick)
elif mode == "threads":
    q = queue.Queue()
    stop = threading.Event()

    def sleeper():
        while not stop.is_set():
            time.sleep(0.05)

    def spinner():
        x = 0
        while not stop.is_set():
            x = (x + 1) % 1000003

    def waiter():
        q.get()

    workers = [threading.Thread(target=f, daemon=True) for f in (sleeper, spinner, waiter)]
    for w in workers:
        w.start()
    tick = 0
    while True:
        workers[0].join(0.2)  # main waits in a lock (join), as servers do
        tick += 1
        say("tick %d" % tick)
else:
    tick = 0
    while True:
        time.sleep(0.2)
        tick += 1
        say("tick %d" % tick)
