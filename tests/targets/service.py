"""A small target process for tests: starts the agent, then obeys one command per stdin line.

Prints ``READY <pid> <socket-path>`` once serving. Commands (each answered by one line):
  alloc MIB     keep MIB mebibytes of live bytearrays      -> "ok <rss>"
  free          drop everything allocated                  -> "ok <rss>"
  objs N        keep N small dicts (Python-heap growth)     -> "ok"
  fork          fork; the child keeps running and prints "child <pid> <socket>" -> "forked <pid>"
  register N    register N trivial components              -> "ok"
  hostile KIND  register a hostile component: block (stats() sleeps 5 s), selfref (a dict that
                refers to itself twice), bigint (10**5000), badstr (str() raises) -> "ok"
  forkexec N    N times: fork, exec /bin/true, wait          -> "ok"
  preexec       subprocess.run(["true"], preexec_fn=...)     -> "ok"
  cache NAME [JSON]  a memtui.Cache named NAME, JSON its constructor keywords -> "ok <name>"
  broken NAME   a "cache" component whose configure() always raises -> "ok <name>"
  fill NAME N   set N new keys in cache NAME               -> "ok <len>"
  len NAME      -> "ok <len>"
  gcthreshold   -> "ok A B C" (gc.get_threshold())
  gcfrozen      -> "ok N" (gc.get_freeze_count())
  options       -> "ok <the agent's options as JSON>"
  widgets N     keep N more instances of class Widget (gc-tracked)             -> "ok <total>"
  atoms N       keep N new datetime.date objects (gc never tracks them), each held by an
                atomic-only dict and an atomic-only tuple, which gc untracks   -> "ok <tracked>"
                (<tracked>: how many of those dicts and tuples gc still tracks; 0 expected)
  dupstr N LEN  keep N separate but equal str objects of LEN characters       -> "ok <size>"
  bigheap N     keep N more one-item lists (a heap a census takes a while on)  -> "ok"
  tracealloc N  keep N 1000-byte bytearrays made on one line -> "ok <file>:<line>" of that line
  snaphold PHASE [BUDGET]  take a snapshot on a thread whose progress callback blocks in
                PHASE ("writing": after the first chunk is written) -> "held <phase> <id>"
  snaprelease   let the held snapshot finish -> "ok <metadata JSON>" or "error <message>"
  ping          -> "pong"
  exit CODE     exit with CODE (atexit runs)               -> (no reply)
Agent options come from MEMTUI_AGENT_OPTIONS, or start() keywords in argv as key=value.

It runs in TARGET_CWD (default "/"), so a ./profiles directory of whoever runs the tests never
reaches the agent: tests that want a profile say so (TARGET_CWD, MEMTUI_PROFILES, profiles=...).
"""
import json
import os
import sys

sys.path.insert(0, os.environ.get("MEMTUI_SRC", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

import memtui  # noqa: E402

KEEP = []
COMPONENTS = []
CACHES = {}
KEYS = iter(range(10 ** 12))  # every key set by "fill" is new
HELD = {}  # the "snaphold" snapshot: its thread, gate, and outcome


class Widget:
    def __init__(self, i):
        self.i = i


class Counter:
    kind = "custom"

    def __init__(self, name):
        self.name = name
        self.n = 0

    def stats(self):
        self.n += 1
        return {"calls": self.n, "size": len(KEEP)}


class Hostile:
    kind = "custom"

    def __init__(self, how):
        self.name = "hostile-" + how
        self.how = how

    def stats(self):
        import time

        if self.how == "block":
            time.sleep(5)
            return {"slept": 5}
        if self.how == "selfref":
            d = {"n": 1}
            d["a"] = d
            d["b"] = d
            return d
        if self.how == "bigint":
            return {"n": 10 ** 5000}

        class BadStr:
            def __str__(self):
                raise RuntimeError("no str")

        return {"bad": BadStr()}


class Broken:
    """A cache-kind component that refuses every setting."""

    kind = "cache"
    SETTINGS = ("max_entries",)

    def __init__(self, name):
        self.name = name

    def stats(self):
        return {}

    def configure(self, values):
        raise RuntimeError("broken on purpose")


def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def snap_hold(phase, budget="1.0"):
    """Take a snapshot on a thread whose progress callback blocks in *phase* until
    "snaprelease": makes a running snapshot observable without sleeps in the product."""
    import threading

    from memtui.agent import snapshots

    gate, blocked = threading.Event(), threading.Event()

    def progress(name, done, total):
        if name == phase and (name != "writing" or done > 0) and not gate.is_set():
            blocked.set()
            gate.wait(60)

    def run():
        try:
            HELD["result"] = snapshots.take(memtui.current(), budget_s=float(budget),
                                            progress=progress)
        except Exception as exc:
            HELD["result"] = "%s: %s" % (type(exc).__name__, exc)
        finally:
            blocked.set()

    HELD.update(gate=gate, thread=threading.Thread(target=run, daemon=True))
    HELD["thread"].start()
    blocked.wait(60)
    print("held %s %s" % (snapshots.status()["phase"], snapshots.status()["id"]), flush=True)


def main():
    os.chdir(os.environ.get("TARGET_CWD") or "/")
    kwargs = {}
    for arg in sys.argv[1:]:
        key, _, value = arg.partition("=")
        kwargs[key] = json.loads(value) if value[:1] in "0123456789[{tfn\"" else value
    mode = kwargs.pop("mode", "start")
    if mode == "install":
        ok = memtui.install(**kwargs)
        print("INSTALLED %s %d" % (ok, os.getpid()), flush=True)
    else:
        agent = memtui.start(**kwargs)
        print("READY %d %s" % (os.getpid(), (agent and agent.socket_path) or "-"), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "alloc":
            KEEP.append([bytearray(1024 * 1024) for _ in range(int(arg))])
            for chunk in KEEP[-1]:
                chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page
            print("ok %d" % rss(), flush=True)
        elif cmd == "free":
            KEEP.clear()
            print("ok %d" % rss(), flush=True)
        elif cmd == "objs":
            KEEP.append([{"i": i} for i in range(int(arg))])
            print("ok", flush=True)
        elif cmd == "register":
            for i in range(int(arg)):
                c = Counter("c%d" % i)
                COMPONENTS.append(c)
                memtui.register(c)
            print("ok", flush=True)
        elif cmd == "fork":
            pid = os.fork()
            if pid == 0:
                import time
                agent = memtui.current()
                for _ in range(100):
                    if agent and agent.socket_path and os.path.exists(agent.socket_path):
                        break
                    time.sleep(0.02)
                    agent = memtui.current()
                print("child %d %s" % (os.getpid(), (agent and agent.socket_path) or "-"), flush=True)
                time.sleep(float(arg or 30))
                os._exit(0)
            print("forked %d" % pid, flush=True)
        elif cmd == "hostile":
            c = Hostile(arg)
            COMPONENTS.append(c)
            memtui.register(c)
            print("ok", flush=True)
        elif cmd == "forkexec":
            for _ in range(int(arg)):
                pid = os.fork()
                if pid == 0:
                    os.execv("/bin/true", ["true"])
                os.waitpid(pid, 0)
            print("ok", flush=True)
        elif cmd == "preexec":
            import subprocess

            subprocess.run(["true"], preexec_fn=lambda: None, check=True)
            print("ok", flush=True)
        elif cmd == "cache":
            name, _, spec = arg.partition(" ")
            cache = memtui.Cache(name=name, **json.loads(spec or "{}"))
            CACHES[cache.name] = cache
            print("ok %s" % cache.name, flush=True)
        elif cmd == "broken":
            c = Broken(arg)
            COMPONENTS.append(c)
            print("ok %s" % memtui.register(c), flush=True)
        elif cmd == "fill":
            name, _, n = arg.partition(" ")
            cache = CACHES[name]
            for _ in range(int(n)):
                cache.set(next(KEYS), 0)
            print("ok %d" % len(cache), flush=True)
        elif cmd == "len":
            print("ok %d" % len(CACHES[arg]), flush=True)
        elif cmd == "gcthreshold":
            import gc

            print("ok %d %d %d" % gc.get_threshold(), flush=True)
        elif cmd == "gcfrozen":
            import gc

            print("ok %d" % gc.get_freeze_count(), flush=True)
        elif cmd == "options":
            agent = memtui.current()
            print("ok %s" % json.dumps(agent.options.to_json() if agent else None), flush=True)
        elif cmd == "widgets":
            KEEP.append([Widget(i) for i in range(int(arg))])
            print("ok %d" % sum(1 for x in KEEP for y in x if type(y) is Widget), flush=True)
        elif cmd == "atoms":
            import datetime
            import gc

            atoms = [datetime.date.fromordinal(1 + i) for i in range(int(arg))]
            held = [{"atom": a} for a in atoms] + [(a, 1.5) for a in atoms]
            del atoms
            gc.collect()  # untracks the atomic-only dicts and tuples, as gc does in a real process
            KEEP.append(held)
            print("ok %d" % sum(1 for h in held if gc.is_tracked(h)), flush=True)
        elif cmd == "dupstr":
            n, _, length = arg.partition(" ")
            values = ["%0*d" % (int(length), 7) for _ in range(int(n))]  # separate objects
            KEEP.append(values)
            print("ok %d" % sys.getsizeof(values[0]), flush=True)
        elif cmd == "bigheap":
            KEEP.append([[i] for i in range(int(arg))])
            print("ok", flush=True)
        elif cmd == "tracealloc":
            line = sys._getframe().f_lineno + 1
            KEEP.append([bytearray(1000) for _ in range(int(arg))])
            print("ok %s:%d" % (os.path.abspath(__file__), line), flush=True)
        elif cmd == "snaphold":
            snap_hold(*arg.split())
        elif cmd == "snaprelease":
            HELD["gate"].set()
            HELD["thread"].join(60)
            out = HELD.pop("result")
            print(("ok %s" % json.dumps(out)) if isinstance(out, dict) else "error %s" % out,
                  flush=True)
        elif cmd == "ping":
            print("pong", flush=True)
        elif cmd == "exit":
            sys.stdout.flush()
            sys.exit(int(arg or 0))


if __name__ == "__main__":
    main()
