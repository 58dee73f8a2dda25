"""End to end: real leaks in a real target, found by the agent's snapshot.suspects op within three
snapshots, naming the leaking type and (when tracing) the leaking line; a steady process has no
suspect; heap.referrers names who holds the leaked objects."""
from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from conftest import TARGETS

from memtui.client import AgentClient, RemoteError

LEAKS = {"dict": "__main__.Request", "closure": "__main__.Sample", "cycles": "__main__.Peer",
         "classattr": "__main__.Event"}
SCRIPT = str(TARGETS / "leaks.py")
# off: no tracemalloc; take: the first snapshot.take starts it (trace: true); boot: on from start
TRACING = ("off", "take", "boot")


def start(start_target, kind: str, tracing: str):
    args = [kind] + (["trace=true"] if tracing == "boot" else [])
    return start_target(*args, script="leaks.py")


def run_steps(target, client: AgentClient, tracing: str, snapshots: int) -> List[Dict[str, Any]]:
    taken = []
    for i in range(snapshots):
        assert target.send("step").startswith("ok ")
        args = {"trace": True} if tracing == "take" and i == 0 else {}
        # Under tracemalloc the census runs ~10x slower; on a loaded machine the default 1 s
        # budget cuts it short, and a partial census is not compared (heapdiff.suspects).
        taken.append(client.snapshot_take(budget_s=30.0, **args))
        assert taken[-1]["complete"], taken[-1]
    return taken


@pytest.mark.parametrize("kind,tracing", [(k, t) for k in sorted(LEAKS) for t in ("off", "take")]
                         + [("dict", "boot")])  # boot: sites already hold a baseline
def test_a_leak_is_the_first_suspect_within_three_snapshots(start_target, kind, tracing):
    target = start(start_target, kind, tracing)
    line = json.loads(target.send("lines").split(" ", 1)[1])[kind]
    with AgentClient(pid=target.pid, path=target.socket, timeout=60) as client:
        taken = run_steps(target, client, tracing, 3)
        result = client.snapshot_suspects()
    found = result["suspects"]
    assert result["snapshots"] == [t["id"] for t in taken]
    assert (result["incomplete"], result["skipped"]) == ([], [])
    summary = [(s["kind"], s["name"], s["size_delta"]) for s in found]
    types = [s for s in found if s["kind"] == "type"]
    assert types and types[0]["name"] == LEAKS[kind], summary
    assert types[0]["steps"] == 2 and types[0]["count_delta"] >= 2 * 1000, types[0]
    sites = [s for s in found if s["kind"] == "site"]
    if tracing == "off":
        assert sites == []
    else:
        assert sites and sites[0]["name"] == "%s:%d" % (SCRIPT, line), summary


@pytest.mark.parametrize("tracing", ("off", "take"))
def test_one_growing_buffer_is_a_suspect_though_its_count_stays_flat(start_target, tracing):
    target = start(start_target, "buffer", tracing)
    line = json.loads(target.send("lines").split(" ", 1)[1])["buffer"]
    with AgentClient(pid=target.pid, path=target.socket, timeout=60) as client:
        run_steps(target, client, tracing, 3)
        found = client.snapshot_suspects()["suspects"]
    summary = [(s["kind"], s["name"], s["count_delta"], s["size_delta"]) for s in found]
    types = [s for s in found if s["kind"] == "type"]
    assert types and types[0]["name"] == "builtins.bytearray", summary
    assert types[0]["count_delta"] == 0 and types[0]["size_delta"] >= 2 * 200_000, summary
    sites = [s for s in found if s["kind"] == "site"]
    if tracing == "take":
        assert sites and sites[0]["name"] == "%s:%d" % (SCRIPT, line), summary


@pytest.mark.parametrize("tracing", TRACING)
def test_a_steady_process_has_no_suspects(start_target, tracing):
    target = start(start_target, "steady", tracing)
    with AgentClient(pid=target.pid, path=target.socket, timeout=60) as client:
        taken = run_steps(target, client, tracing, 4)
        result = client.snapshot_suspects()
    assert result["snapshots"] == [t["id"] for t in taken]
    assert result["suspects"] == []


def test_diff_of_the_latest_two_names_the_leak_first(start_target):
    target = start(start_target, "dict", "take")
    line = json.loads(target.send("lines").split(" ", 1)[1])["dict"]
    with AgentClient(pid=target.pid, path=target.socket, timeout=60) as client:
        first, second = run_steps(target, client, "take", 2)
        latest = client.snapshot_diff()
        explicit = client.snapshot_diff(first["id"], second["id"])
        backwards = client.snapshot_diff(second["id"], first["id"])
    assert (latest["a"], latest["b"]) == (first["id"], second["id"])
    assert latest["types"] == explicit["types"]
    top = latest["types"][0]
    assert (top["type"], top["count_delta"]) == ("__main__.Request", 2000)
    assert latest["sites"][0]["file"] == SCRIPT and latest["sites"][0]["line"] == line
    assert latest["seconds"] > 0 and isinstance(latest["rss_delta"], int)
    assert backwards["types"][-1]["type"] == "__main__.Request"
    assert backwards["types"][-1]["size_delta"] == -top["size_delta"]


HOLDERS = {  # kind -> (the last link's type, its via)
    "dict": ("builtins.module", "REQUESTS"),
    "closure": ("builtins.module", "RECORD"),
    "cycles": ("builtins.module", "UNCLOSED"),
    "classattr": ("builtins.type", "history"),
}


@pytest.mark.parametrize("kind", sorted(HOLDERS))
def test_referrers_of_the_leaked_type(start_target, kind):
    target = start(start_target, kind, "off")
    target.send("step")
    target.send("step")  # a collection has run by now: the cycles came back through __del__
    with AgentClient(pid=target.pid, path=target.socket, timeout=60) as client:
        r = client.heap_referrers(LEAKS[kind], limit=3)
    assert r["complete"] and r["sampled"] == 3
    for chain in r["chains"]:
        text = " <- ".join("%s [%s]" % (link["repr"], link["via"]) for link in chain)
        if kind == "cycles" and chain[-1]["via"] == "other":  # garbage not yet collected
            continue
        assert (chain[-1]["type"], chain[-1]["via"]) == HOLDERS[kind], text
        assert chain[0]["type"] == LEAKS[kind]
    if kind == "classattr":
        assert r["chains"][0][-1]["repr"] == "class __main__.Tracker"


def test_bad_arguments_and_missing_snapshots(start_target):
    target = start(start_target, "steady", "off")
    with AgentClient(pid=target.pid, path=target.socket, timeout=60) as client:
        for op, args in [("heap.referrers", {}), ("heap.referrers", {"type": ""}),
                         ("heap.referrers", {"type": "a b"}),
                         ("heap.referrers", {"type": "x.Y", "budget_s": "1"}),
                         ("heap.referrers", {"type": "x.Y", "limit": 0}),
                         ("snapshot.diff", {"a": "../../etc/passwd"}),
                         ("snapshot.diff", {"a": "1-nope", "b": "2-nope"}),
                         ("snapshot.suspects", {"last": 1})]:
            with pytest.raises(RemoteError) as err:
                client.request(op, **args)
            assert err.value.code == "bad_args", (op, args)
        with pytest.raises(RemoteError) as err:
            client.request("snapshot.diff")
        assert err.value.code == "unavailable" and "take one" in str(err.value)
        target.send("step")
        client.snapshot_take()
        with pytest.raises(RemoteError) as err:
            client.request("snapshot.diff")
        assert err.value.code == "unavailable" and "two snapshots" in str(err.value)
        assert client.request("snapshot.suspects")["suspects"] == []
