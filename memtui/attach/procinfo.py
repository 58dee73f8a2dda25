"""What /proc says about a process, read without touching it: owner, signal dispositions, start
time, environment, which Python it runs, and whether we may ptrace it. Stdlib only."""
from __future__ import annotations

import os
import re
from typing import Dict, NamedTuple, Optional, Tuple

CAP_SYS_PTRACE = 19
_LIBPY = re.compile(r"lib(python|pypy)(\d)\.?(\d+)?")
_EXE = re.compile(r"^(python|pypy)(\d)\.(\d+)")
_DYNLOAD = re.compile(r"/(python|pypy)(\d)\.(\d+)/|\.(cpython)-(\d)(\d+)")


class PythonInfo(NamedTuple):
    version: Optional[Tuple[int, int]]  # (3, 11); None when not a Python we can tell
    implementation: str  # "cpython", "pypy" or "" (not Python)
    binary: str  # the file the interpreter lives in (exe or libpython)

    @property
    def label(self) -> str:
        if self.implementation == "unknown":
            return "a process whose memory maps we may not read"
        if self.version is None:
            return "not Python"
        name = "Python" if self.implementation == "cpython" else "PyPy"
        return "%s %d.%d" % (name, self.version[0], self.version[1])


def status(pid: int, task: Optional[str] = None) -> Dict[str, str]:
    """/proc/PID/status (or one thread's) as a dict; OSError when the process is gone."""
    out: Dict[str, str] = {}
    where = "/proc/%d/task/%s/status" % (pid, task) if task else "/proc/%d/status" % pid
    with open(where) as fh:
        for line in fh:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _mask_has(mask_hex: str, bit: int) -> bool:
    try:
        return bool(int(mask_hex, 16) >> bit & 1)
    except ValueError:
        return False


def signal_handled(st: Dict[str, str], signum: int) -> bool:
    """True when the process catches *signum* (SigCgt) and does not ignore it (SigIgn)."""
    return _mask_has(st.get("SigCgt", "0"), signum - 1) and \
        not _mask_has(st.get("SigIgn", "0"), signum - 1)


def environ(pid: int) -> Optional[Dict[str, str]]:
    """The environment the process started with (None when unreadable)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    env: Dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def python_info(pid: int) -> PythonInfo:
    """Which Python *pid* runs: a mapped libpython3.X/libpypy, else the executable's name, else a
    mapped ``pythonX.Y/`` library directory (a venv or embedded interpreter)."""
    try:
        exe = os.readlink("/proc/%d/exe" % pid)
    except OSError:
        exe = ""
    maps = ""
    try:
        with open("/proc/%d/maps" % pid) as fh:
            maps = fh.read()
    except PermissionError:
        if not exe:  # a non-dumpable process, or /proc mounted with hidepid
            return PythonInfo(None, "unknown", "")
    except OSError:
        pass
    paths = {line.split(None, 5)[5] for line in maps.splitlines() if len(line.split(None, 5)) == 6}
    for path in sorted(paths):
        m = _LIBPY.search(os.path.basename(path))
        if m and m.group(3):
            return PythonInfo((int(m.group(2)), int(m.group(3))),
                              "pypy" if m.group(1) == "pypy" else "cpython", path)
    m = _EXE.match(os.path.basename(exe))
    if m:
        return PythonInfo((int(m.group(2)), int(m.group(3))),
                          "pypy" if m.group(1) == "pypy" else "cpython", exe)
    for path in sorted(paths):
        m = _DYNLOAD.search(path)
        if m:
            kind, major, minor = m.group(1, 2, 3) if m.group(1) else m.group(4, 5, 6)
            return PythonInfo((int(major), int(minor)), "pypy" if kind == "pypy" else "cpython",
                              exe)
    return PythonInfo(None, "", exe)


def ptrace_problem(pid: int, scope: Optional[int] = None,
                   has_cap: Optional[bool] = None) -> Optional[str]:
    """Why the kernel will refuse to let us ptrace *pid*, as a clause, or None when it should
    allow it. Covers yama's ptrace_scope, a missing CAP_SYS_PTRACE (containers), and a process
    already being traced. *scope* and *has_cap* default to this machine's."""
    try:
        ours = status(os.getpid())
    except OSError:
        return None  # gone: the caller reports that
    found = tracer_of(pid)
    if found:
        return "it is already being traced by PID %d (%s) — a debugger, strace or py-spy" % found
    if has_cap is None:
        has_cap = _mask_has(ours.get("CapEff", "0"), CAP_SYS_PTRACE)
    if scope is None:
        scope = _read_int("/proc/sys/kernel/yama/ptrace_scope")
    if scope == 3:
        return "the kernel forbids ptrace entirely (kernel.yama.ptrace_scope = 3)"
    if scope == 2 and not has_cap:
        return ("only a process with CAP_SYS_PTRACE may ptrace here (kernel.yama.ptrace_scope = "
                "2) and this one does not have it")
    if scope == 1 and not has_cap and not _is_ancestor(os.getpid(), pid):
        return ("kernel.yama.ptrace_scope = 1 lets a process ptrace only its own children, and "
                "this one has no CAP_SYS_PTRACE (as in a container without --cap-add=SYS_PTRACE)")
    return None


def tracer_of(pid: int) -> Optional[Tuple[int, str]]:
    """(pid, name) of a process tracing any thread of *pid*, or None."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        try:
            tracer = int(status(pid, tid).get("TracerPid", "0") or 0)
        except (OSError, ValueError):
            continue
        if tracer:
            return tracer, _comm(tracer)
    return None


def _is_ancestor(ancestor: int, pid: int) -> bool:
    seen = 0
    while pid > 1 and seen < 64:
        try:
            pid = int(status(pid).get("PPid", "0"))
        except (OSError, ValueError):
            return False
        if pid == ancestor:
            return True
        seen += 1
    return False


def _comm(pid: int) -> str:
    try:
        with open("/proc/%d/comm" % pid) as fh:
            return fh.read().strip() or "?"
    except OSError:
        return "?"


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None
