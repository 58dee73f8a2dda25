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
        elif cmd == "ping":
            print("pong", flush=True)
        elif cmd == "exit":
            sys.stdout.flush()
            sys.exit(int(arg or 0))


if __name__ == "__main__":
    main()
