"""The demo service runs on memtui's real building blocks and every one of them reports."""
from __future__ import annotations

import os

from conftest import wait_for
from memtui.client import AgentClient

EXPECTED = {"users": "cache", "search": "cache", "sessions": "cache", "templates": "cache",
            "db": "pool", "requests": "workers", "audit": "batch", "request_log": "custom"}


def test_demo_service_reports_every_block_with_live_numbers(runtime_dir):
    # tests/targets/service.py is not the demo; start the demo module itself as the target
    import subprocess
    import sys

    from conftest import ROOT, Target

    env = dict(os.environ, MEMTUI_RUNTIME_DIR=runtime_dir, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "memtui.demo.service", "--interval", "0.2",
                             "--rate", "150"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    t = Target(proc, "")
    try:
        t = Target(proc, t.readline(timeout=30))
        wait_for(lambda: t.socket and os.path.exists(t.socket), message="demo agent socket")
        with AgentClient(pid=t.pid) as c:
            def ready():
                comps = c.stats()["components"]
                s = {n: v["stats"] for n, v in comps.items()}
                if set(EXPECTED) - set(comps):
                    return None
                if s["search"]["tiers"]["warm"]["demotions"] < 1:
                    return None  # wait until the LFU hot tier has spilled into warm
                return comps

            comps = wait_for(ready, timeout=60, interval=0.3, message="all blocks busy")
        assert {n: comps[n]["kind"] for n in EXPECTED} == EXPECTED
        s = {n: comps[n]["stats"] for n in EXPECTED}
        assert s["requests"]["completed"] > 10 and s["audit"]["items"] > 10
        assert s["users"]["hits"] > 0 and s["users"]["misses"] > 0
        assert s["db"]["created"] >= 1 and s["db"]["size"] >= 1
        assert s["templates"]["hits"] > 0  # the watched functools.lru_cache
        assert s["request_log"]["bytes"] > 0
        assert all("error" not in comps[n] for n in EXPECTED)
        proc.terminate()  # SIGTERM: the demo stops its blocks and removes its temp directory
        assert proc.wait(timeout=15) == 0
    finally:
        t.stop()
