"""A target with one real leak, for the leak-suspect tests: ``leaks.py KIND [key=value ...]``.

KIND is one of
  dict       an unbounded dict keyed by request id holding Request objects
  closure    a list growing inside a closure (Sample objects)
  cycles     Peer pairs in reference cycles through ``__del__``, whose finalizer parks the
             object for a "later retry": every collected cycle comes back, none is ever freed
  classattr  a class attribute accumulating (Event objects in Tracker.history)
  buffer     one receive buffer (a bytearray) extended by 100 bytes per object and never
             consumed: the bytes grow, the count of bytearrays does not
  steady     no leak: each step frees the Items of the previous one and allocates as many
Extra ``key=value`` arguments go to ``memtui.start()`` (JSON values, as in service.py), except
``per_step=N`` (objects per step, default 2000).

Prints ``READY <pid> <socket-path>`` once serving. Commands (one line each, one line back):
  step          grow the leak by per_step objects (steady: replace them) -> "ok <live objects>"
  lines         -> "ok <JSON {kind: line}>": the line of each kind's allocating statement
  exit CODE     exit with CODE
Each allocating statement carries a ``# leak: KIND`` marker; ``lines`` reports where they are.
"""
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.environ.get("MEMTUI_SRC", ROOT))

import memtui  # noqa: E402

KINDS = ("dict", "closure", "cycles", "classattr", "buffer", "steady")


# (1) an unbounded dict keyed by request id -------------------------------------------------------
class Request:
    def __init__(self, rid, started):
        self.rid = rid
        self.started = started


REQUESTS = {}
IDS = iter(range(10 ** 6, 10 ** 12))  # large ints: each id is its own object, like real ids


def grow_dict(n):
    for _ in range(n):
        rid = next(IDS)
        REQUESTS[rid] = Request(rid, time.time())  # leak: dict


# (2) a list growing inside a closure -----------------------------------------------------------
class Sample:
    def __init__(self, value):
        self.value = value


def make_recorder():
    seen = []  # reachable only through the closure cell of record()

    def record(n):
        for i in range(n):
            seen.append(Sample(i * 0.5))  # leak: closure
        return len(seen)

    return record


RECORD = make_recorder()


# (3) reference cycles through objects with __del__ -----------------------------------------------
UNCLOSED = []


class Peer:
    def __init__(self):
        self.other = None

    def __del__(self):
        UNCLOSED.append(self)  # "close it later": resurrects the object and its whole cycle


def grow_cycles(n):
    for _ in range(n // 2):
        a, b = Peer(), Peer()  # leak: cycles
        a.other, b.other = b, a


# (4) a class attribute accumulating --------------------------------------------------------------
class Event:
    def __init__(self, seq):
        self.seq = seq


class Tracker:
    history = []  # one list for the class, appended to by every call, never trimmed
    seq = 0


def grow_classattr(n):
    for _ in range(n):
        Tracker.seq += 1
        Tracker.history.append(Event(Tracker.seq))  # leak: classattr


# (5) one container that only gets longer ---------------------------------------------------------
INBOX = bytearray()  # a receive buffer nobody consumes


def grow_buffer(n):
    INBOX.extend(bytes(100 * n))  # leak: buffer
    return len(INBOX)


# (6) steady: as much freed as allocated -------------------------------------------------------
class Item:
    def __init__(self, n):
        self.n = n


WORK = []


def churn(n):
    WORK[:] = [Item(i) for i in range(n)]  # leak: steady
    scratch = [str(i) * 3 for i in range(n)]  # garbage by the end of the step
    return len(scratch)


def marker_lines():
    import re

    lines = {}
    with open(os.path.abspath(__file__)) as fh:
        for number, text in enumerate(fh, 1):
            m = re.search(r"\S  # leak: (\w+)$", text.rstrip())
            if m:
                lines[m.group(1)] = number
    return lines


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else ""
    if kind not in KINDS:
        sys.exit("usage: leaks.py %s [key=value ...]" % "|".join(KINDS))
    os.chdir(os.environ.get("TARGET_CWD") or "/")
    kwargs = {}
    for arg in sys.argv[2:]:
        key, _, value = arg.partition("=")
        kwargs[key] = json.loads(value) if value[:1] in "0123456789[{tfn\"" else value
    per_step = int(kwargs.pop("per_step", 2000))
    agent = memtui.start(**kwargs)
    print("READY %d %s" % (os.getpid(), (agent and agent.socket_path) or "-"), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "step":
            if kind == "dict":
                grow_dict(per_step)
                live = len(REQUESTS)
            elif kind == "closure":
                live = RECORD(per_step)
            elif kind == "cycles":
                grow_cycles(per_step)
                live = len(UNCLOSED)
            elif kind == "classattr":
                grow_classattr(per_step)
                live = len(Tracker.history)
            elif kind == "buffer":
                live = grow_buffer(per_step)
            else:
                churn(per_step)
                live = len(WORK)
            print("ok %d" % live, flush=True)
        elif cmd == "lines":
            print("ok %s" % json.dumps(marker_lines()), flush=True)
        elif cmd == "ping":
            print("pong", flush=True)
        elif cmd == "exit":
            sys.stdout.flush()
            sys.exit(int(arg or 0))


if __name__ == "__main__":
    main()
