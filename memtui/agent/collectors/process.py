"""Process memory figures: rss, vms, uss, pss, swap, threads, fds, and the memory limit that applies.

On Linux this reads /proc directly: psutil costs ~40 ms and ~2.4 MB to import, which would be most of
the agent's start-up budget in the host. Elsewhere psutil is imported lazily when present.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, Optional

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def machine_ram() -> Optional[int]:
    try:
        return os.sysconf("SC_PHYS_PAGES") * _PAGE
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_limit() -> Optional[int]:
    """The container's memory limit (cgroup v2, then v1), or None when unlimited or unknown."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                raw = fh.read().strip()
        except OSError:
            continue
        if raw.isdigit():
            value = int(raw)
            ram = machine_ram()
            if value > 0 and (ram is None or value < ram):
                return value
    return None


def effective_limit(configured: Optional[int]) -> Dict[str, Any]:
    """The limit alerts are measured against and where it came from."""
    if configured:
        return {"bytes": int(configured), "source": "configured"}
    cg = cgroup_limit()
    if cg:
        return {"bytes": cg, "source": "cgroup"}
    return {"bytes": machine_ram(), "source": "machine"}


class ProcessCollector:
    """Reads this process's memory. ``collect()`` is cheap enough to call per request.

    uss/pss come from /proc/self/smaps_rollup, whose cost grows with the mapping count; the
    collector times each read and spaces reads so they stay under ~1% of wall time.
    """

    def __init__(self, pid: Optional[int] = None) -> None:
        self.pid = pid or os.getpid()
        self._proc = "/proc/%d" % self.pid if self.pid != os.getpid() else "/proc/self"
        self.linux = sys.platform.startswith("linux") and os.path.exists(self._proc + "/statm")
        self._rollup_ok = self.linux and os.path.exists(self._proc + "/smaps_rollup")
        self._rollup_next = 0.0
        self._rollup_cache: Dict[str, int] = {}
        self.rollup_cost_s = 0.0
        self._psutil: Any = None

    def collect(self) -> Dict[str, Any]:
        if self.linux:
            return self._collect_proc()
        return self._collect_portable()

    def _collect_proc(self) -> Dict[str, Any]:
        with open(self._proc + "/statm", "rb") as fh:
            fields = fh.read().split()
        out: Dict[str, Any] = {
            "rss": int(fields[1]) * _PAGE,
            "vms": int(fields[0]) * _PAGE,
            "source": "proc",
        }
        with open(self._proc + "/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmSwap:"):
                    out["swap"] = int(line.split()[1]) * 1024
                elif line.startswith(b"Threads:"):
                    out["threads"] = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    out["rss_peak"] = int(line.split()[1]) * 1024
        try:
            out["fds"] = len(os.listdir(self._proc + "/fd"))
        except OSError:
            out["fds"] = None
        out.update(self._rollup())
        return out

    def _rollup(self) -> Dict[str, int]:
        if not self._rollup_ok:
            return {}
        now = time.monotonic()
        if now < self._rollup_next:
            return self._rollup_cache
        t0 = time.perf_counter()
        values: Dict[str, int] = {}
        try:
            with open(self._proc + "/smaps_rollup", "rb") as fh:
                for line in fh:
                    key, _, rest = line.partition(b":")
                    if key in (b"Pss", b"Private_Clean", b"Private_Dirty"):
                        values[key.decode()] = int(rest.split()[0]) * 1024
        except (OSError, ValueError, IndexError):
            self._rollup_ok = False
            return {}
        cost = time.perf_counter() - t0
        self.rollup_cost_s = cost
        # At most ~1% of wall time on smaps, and never more often than every 0.5 s.
        self._rollup_next = now + max(0.5, cost * 100.0)
        self._rollup_cache = {
            "pss": values.get("Pss", 0),
            "uss": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
        }
        return self._rollup_cache

    def _collect_portable(self) -> Dict[str, Any]:
        if self._psutil is None:
            try:
                import psutil  # noqa: PLC0415 - optional, lazy on purpose

                self._psutil = psutil.Process(self.pid)
            except Exception:
                self._psutil = False
        if self._psutil:
            p = self._psutil
            with p.oneshot():
                mi = p.memory_info()
                out: Dict[str, Any] = {"rss": mi.rss, "vms": mi.vms, "source": "psutil",
                                       "threads": p.num_threads()}
                try:
                    out["fds"] = p.num_fds()
                except Exception:
                    out["fds"] = None
            return out
        import resource  # noqa: PLC0415

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform != "darwin":
            peak *= 1024
        return {"rss": peak, "rss_peak": peak, "source": "rusage"}
