"""A fake agent client for the dashboard tests: the agent's real replies, recorded from the demo
service (tests/tui/data/*.json, paths rewritten to /srv/app), served without a process so that
screens are deterministic. Tests that need a live agent use a real target instead."""
from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from memtui.protocol import AgentGone, NoSuchProcess, RemoteError

DATA = Path(__file__).parent / "data"


def load(name: str) -> Any:
    return json.loads((DATA / (name + ".json")).read_text())


class FakeState:
    """Shared by a fake client and its clones (the app opens a second connection for actions)."""

    def __init__(self) -> None:
        self.data = {p.stem: json.loads(p.read_text()) for p in DATA.glob("*.json")}
        self.alive = True
        self.calls: List[tuple] = []
        self.tracing = bool(self.data["stats"]["heap"]["tracemalloc"].get("tracing"))
        self.snapshots = list(self.data["snapshot_list"]["snapshots"])
        self.applied: List[Dict[str, Any]] = []
        self.lock = threading.Lock()
        self.snapshot_gate: Optional[threading.Event] = None  # set by a test to hold a take
        self.taking = False


class FakeClient:
    def __init__(self, state: Optional[FakeState] = None, pid: int = 14607) -> None:
        self.state = state or FakeState()
        self.pid = pid
        self.server_pid = pid
        self.path = "/tmp/fake/%d.sock" % pid
        self.timeout = 10.0
        self.info: Dict[str, Any] = {}
        self._connected = False

    # connection ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> "FakeClient":
        if not self.state.alive:
            raise NoSuchProcess("No process with PID %d." % self.pid)
        self._connected = True
        self.info = copy.deepcopy(self.state.data["info"])
        return self

    def close(self) -> None:
        self._connected = False

    def clone(self) -> "FakeClient":
        return FakeClient(self.state, self.pid)

    def kill(self) -> None:
        """The agent vanishes: every request and connect fails from now on."""
        self.state.alive = False

    def revive(self) -> None:
        self.state.alive = True

    def _call(self, op: str, **args: Any) -> None:
        self.state.calls.append((op, args))
        if not self.state.alive:
            self._connected = False
            raise AgentGone("PID %d exited while we were talking to its agent." % self.pid)
        if not self._connected:
            raise AgentGone("Not connected to an agent.")

    def ops(self) -> List[str]:
        return [c[0] for c in self.state.calls]

    # reads --------------------------------------------------------------------------------
    def request(self, op: str, timeout: Optional[float] = None, **args: Any) -> Any:
        self._call(op, **args)
        if op == "tuner.recommend":
            return copy.deepcopy(self.state.data["tuner"])
        if op == "hello":
            return copy.deepcopy(self.state.data["info"])
        raise RemoteError("unknown_op", "unknown op %r" % op)

    def stats(self, components: bool = True, fresh: bool = False) -> Dict[str, Any]:
        self._call("stats")
        out = copy.deepcopy(self.state.data["stats"])
        out["heap"]["tracemalloc"]["tracing"] = self.state.tracing
        return out

    def history(self, since: int = 0, limit: Optional[int] = None,
                components: bool = False) -> Dict[str, Any]:
        self._call("history", since=since)
        out = copy.deepcopy(self.state.data["history"])
        out["rows"] = [r for r in out["rows"] if r[0] > since]
        return out

    def events(self, since: int = 0, limit: int = 200) -> Dict[str, Any]:
        self._call("events", since=since)
        out = copy.deepcopy(self.state.data["events"])
        out["events"] = [e for e in out["events"] if e["seq"] > since]
        return out

    def config_get(self) -> Dict[str, Any]:
        self._call("config.get")
        return copy.deepcopy(self.state.data["config"])

    def heap_top(self, limit: int = 20, group_by: str = "lineno") -> Dict[str, Any]:
        self._call("heap.top", limit=limit)
        if not self.state.tracing:
            raise RemoteError("unavailable", "tracemalloc is not tracing in PID %d" % self.pid)
        out = copy.deepcopy(self.state.data["heap_top"])
        out["entries"] = out["entries"][:limit]
        return out

    def heap_types(self, limit: int = 50) -> Dict[str, Any]:
        self._call("heap.types", limit=limit)
        out = copy.deepcopy(self.state.data["heap_types"])
        out["types"] = out["types"][:limit]
        return out

    def heap_referrers(self, type_name: str, limit: Optional[int] = None,
                       depth: Optional[int] = None, budget_s: Optional[float] = None,
                       **more: Any) -> Dict[str, Any]:
        self._call("heap.referrers", type=type_name)
        out = copy.deepcopy(self.state.data["referrers"])
        out.pop("asked", None)
        out["type"] = type_name
        return out

    def snapshot_status(self) -> Dict[str, Any]:
        self._call("snapshot.status")
        if self.state.taking:
            return {"running": True, "phase": "census", "done": 40000, "total": 80000}
        return {"running": False}

    def snapshot_list(self) -> Dict[str, Any]:
        self._call("snapshot.list")
        out = copy.deepcopy(self.state.data["snapshot_list"])
        out["snapshots"] = copy.deepcopy(self.state.snapshots)
        return out

    def snapshot_diff(self, a: Optional[str] = None, b: Optional[str] = None,
                      **more: Any) -> Dict[str, Any]:
        self._call("snapshot.diff", a=a, b=b)
        out = copy.deepcopy(self.state.data["snapshot_diff"])
        out["a"], out["b"] = a or out["a"], b or out["b"]
        return out

    def snapshot_suspects(self, last: Optional[int] = None, **more: Any) -> Dict[str, Any]:
        self._call("snapshot.suspects", last=last)
        return copy.deepcopy(self.state.data["suspects"])

    # actions ------------------------------------------------------------------------------
    def snapshot_take(self, reason: Optional[str] = None, trace: Optional[bool] = None,
                      budget_s: Optional[float] = None,
                      timeout: Optional[float] = None) -> Dict[str, Any]:
        self._call("snapshot.take", reason=reason, trace=trace)
        self.state.taking = True
        try:
            if self.state.snapshot_gate is not None:
                self.state.snapshot_gate.wait(10)
        finally:
            self.state.taking = False
        last = copy.deepcopy(self.state.snapshots[-1])
        n = len(self.state.snapshots) + 1
        last["id"] = last["id"].rsplit("-", 1)[0] + "-%d" % n
        last["reason"] = reason or "manual"
        last["taken_at"] += 10.0
        self.state.snapshots.append(last)
        return last

    def gc_collect(self, generation: int = 2) -> Dict[str, Any]:
        self._call("gc.collect", generation=generation)
        return copy.deepcopy(self.state.data["gc"])

    def trace_start(self, nframes: Optional[int] = None) -> Dict[str, Any]:
        self._call("trace.start")
        already = self.state.tracing
        self.state.tracing = True
        return {"tracing": True, "nframes": nframes or 5, "already": already}

    def trace_stop(self) -> Dict[str, Any]:
        self._call("trace.stop")
        was = self.state.tracing
        self.state.tracing = False
        return {"tracing": False, "was_tracing": was}

    def config_apply(self, settings: Optional[Dict[str, Any]] = None,
                     options: Optional[Dict[str, Any]] = None, env: Optional[str] = None,
                     dry_run: bool = False) -> Dict[str, Any]:
        self._call("config.apply", settings=settings, options=options, env=env,
                   dry_run=dry_run)
        if not dry_run:
            self.state.applied.append({"settings": settings, "options": options, "env": env})
        changed = {}
        for name, values in ((settings or {}).get("caches") or {}).items():
            changed[name] = dict(values)
        return {"dry_run": dry_run, "changed": changed, "options": {}, "errors": {},
                "tuner": {}}


# -- components panes: the agent's per-component history, and figures that change ------------
# component_history.json is the `components` list of a real history(components=True) reply from
# the demo service (seqs 1..58 like history.json, the cold tier's file renamed to pid 14607).


class ComponentHistoryClient(FakeClient):
    """A FakeClient whose agent keeps component history (the agent's default): history(
    components=True) also returns each recorded sample's component stats."""

    def clone(self) -> "ComponentHistoryClient":
        return ComponentHistoryClient(self.state, self.pid)

    def history(self, since: int = 0, limit: Optional[int] = None,
                components: bool = False) -> Dict[str, Any]:
        if not components:
            return super().history(since, limit)
        self._call("history", since=since, components=True)
        out = copy.deepcopy(self.state.data["history"])
        out["rows"] = [r for r in out["rows"] if r[0] > since]
        rows = [r for r in copy.deepcopy(self.state.data["component_history"]["components"])
                if r["seq"] > since]
        out["components"] = rows[-limit:] if limit else rows
        return out


def record_sample(state: FakeState, edit: Any) -> int:
    """The agent records one more sample: ``edit(components)`` changes a copy of the stats
    reply's components ({name: {"kind", "stats"}}), which also becomes a new row of the history
    and of the component history. Each document is swapped in whole, so a poll in flight reads
    the old or the new one, never half of each. Returns the new seq."""
    stats = copy.deepcopy(state.data["stats"])
    edit(stats["components"])
    seq = stats["seq"] + 1
    hist = copy.deepcopy(state.data["history"])
    row = list(hist["rows"][-1])
    row[0], row[1] = seq, row[1] + hist["interval"]
    hist["rows"].append(row)
    hist["last_seq"] = seq
    stats["seq"], stats["t"], stats["components_t"] = seq, row[1], row[1]
    comp = copy.deepcopy(state.data["component_history"])
    comp["components"].append({"seq": seq, "components": copy.deepcopy(stats["components"])})
    with state.lock:
        state.data["component_history"] = comp
        state.data["history"] = hist
        state.data["stats"] = stats
    return seq
