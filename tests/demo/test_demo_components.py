"""`--components N`: the demo adds busy caches, pools and worker pools until N report."""
from __future__ import annotations

import collections

from conftest import wait_for
from memtui import paths
from memtui.client import AgentClient
from memtui.demo import DemoProcess
from test_demo_service import EXPECTED  # the demo's own blocks


def demo(agent_env, *args):
    return DemoProcess(["--interval", "0.2", "--exit-with-parent", *args], env=agent_env)


def test_components_adds_busy_blocks_of_each_kind_up_to_n(agent_env, runtime_dir):
    with demo(agent_env, "--components", "20", "--component-rate", "20") as d:
        with AgentClient(pid=d.pid, path=paths.socket_path(d.pid, runtime_dir)) as client:
            def busy():
                comps = client.stats(fresh=True)["components"]
                added = {n: c for n, c in comps.items() if n not in EXPECTED}
                s = {n: c["stats"] for n, c in added.items()}
                if not s or min(st.get("hits", 0) + st.get("misses", 0) + st.get("acquires", 0)
                                + st.get("completed", 0) for st in s.values()) < 3:
                    return None  # every added block used a few times
                return comps

            comps = wait_for(busy, timeout=30, interval=0.2, message="added blocks in use")
        assert len(comps) == 20
        added = {n: c for n, c in comps.items() if n not in EXPECTED}
        assert set(EXPECTED) <= set(comps) and len(added) == 20 - len(EXPECTED)
        kinds = collections.Counter(c["kind"] for c in added.values())
        assert kinds == {"cache": 4, "pool": 4, "workers": 4}
        assert all("error" not in c for c in added.values())
        # not twelve copies of one figure: sizes and limits differ between blocks of a kind
        cache_limits = {c["stats"]["max_entries"] for c in added.values() if c["kind"] == "cache"}
        assert len(cache_limits) > 1
        pool_use = {c["stats"]["acquires"] for c in added.values() if c["kind"] == "pool"}
        assert len(pool_use) > 1
        assert d.stop() == 0  # SIGTERM: every added block shut down, a clean exit


def test_components_below_the_demos_own_count_adds_none(agent_env, runtime_dir):
    with demo(agent_env, "--components", "3") as d:
        with AgentClient(pid=d.pid, path=paths.socket_path(d.pid, runtime_dir)) as client:
            comps = client.stats()["components"]
        assert set(comps) == set(EXPECTED)
