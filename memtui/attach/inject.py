"""Put a running CPython process's agent on: inject a few lines that start it on a new thread.

Python >= 3.14: ``sys.remote_exec`` (run by the target's own interpreter binary, so memtui itself
may run on any version). Older CPython on Linux x86_64: our ptrace injector (see ptrace.py for why
not gdb). What runs in the target at the injection point is only this: a page is mapped, and
either

* **thread route** (some thread is asleep in a system call): that thread is borrowed for one
  ``PyThread_start_new_thread(trampoline, code)`` call. The new native thread takes the GIL with
  ``PyGILState_Ensure`` when the interpreter lets it, runs *code*, releases, unmaps the page. The
  main thread is never stopped unless it is the sleeping one.
* **pending route** (every thread is running, e.g. one tight pure-Python loop): the main thread
  is stopped for one ``Py_AddPendingCall(trampoline, code)``; the interpreter runs it between two
  bytecodes, where any Python code may run.

*code* only starts a daemon thread; that thread makes ``memtui`` importable from this install by
path (nothing else of memtui's environment), starts the agent, and writes a status file we wait
for. Injecting into a process whose agent runs already changes nothing.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import struct
import subprocess
import time
from typing import Any, Dict, Iterator

from .. import paths
from . import elf, ptrace
from .procinfo import PythonInfo

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUNCTIONS = ("PyGILState_Ensure", "PyGILState_Release", "PyRun_SimpleString",
             "Py_AddPendingCall", "PyThread_start_new_thread", "Py_IsInitialized")
LIBC = ("mmap", "mprotect", "munmap")
PROT_RW, PROT_RX, MAP_ANON_PRIVATE = 3, 5, 0x22
PAGE = 4096
LOOKS = 10  # looks for a sleeping thread (5 ms apart) before stopping a running main thread

# Runs on a thread of the target's own (Python 3.9+). Kept to the standard library.
BOOT = r'''
def _memtui_boot(parent, status_path, token):
    import json, os, sys, threading

    def boot():
        result = {"token": token, "pid": os.getpid()}
        try:
            if "memtui" not in sys.modules and parent:
                import importlib.machinery

                class MemtuiOnly:
                    """Makes only the memtui package importable from its install."""
                    def find_spec(self, name, path=None, target=None):
                        if name == "memtui" or name.startswith("memtui."):
                            return importlib.machinery.PathFinder.find_spec(name, path or [parent])
                        return None

                if not any(type(f).__name__ == "MemtuiOnly" for f in sys.meta_path):
                    sys.meta_path.insert(0, MemtuiOnly())  # ours, not another install's
            from memtui.agent import bootstrap
            result.update(bootstrap.injected())
        except BaseException as exc:
            result["result"] = "error"
            result["error"] = "%s: %s" % (type(exc).__name__, exc)
        try:
            tmp = status_path + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(result, fh)
            os.rename(tmp, status_path)
        except OSError:
            pass

    threading.Thread(target=boot, name="memtui-inject", daemon=True).start()
'''


class InjectError(Exception):
    """Injection failed; the message is one sentence about the target."""


def boot_code(parent: str, status_path: str, token: str) -> str:
    return BOOT + "\n_memtui_boot(%r, %r, %r)\n" % (parent, status_path, token)


def run_string(code: str) -> bytes:
    """What PyRun_SimpleString gets: *code* run in a namespace of its own (nothing lands in
    ``__main__``) and no exception ever escapes into the host."""
    return ("try:\n    exec(%r, {'__name__': '__memtui_inject__'})\nexcept BaseException:\n"
            "    pass\n" % code).encode() + b"\0"


# -- machine code (x86_64 System V) -------------------------------------------------------------
def _movabs(reg: str, value: int) -> bytes:
    opcode = {"rax": b"\x48\xb8", "rdi": b"\x48\xbf", "rsi": b"\x48\xbe"}[reg]
    return opcode + struct.pack("<Q", value)


def _unmap_tail(page: int, size: int, munmap: int) -> bytes:
    # munmap(page, size) as a tail call: it returns straight to our caller, off this page.
    return _movabs("rdi", page) + _movabs("rsi", size) + _movabs("rax", munmap) + b"\xff\xe0"


def thread_trampoline(fn: Dict[str, int], page: int, size: int) -> bytes:
    """void start(char *code): g = PyGILState_Ensure(); PyRun_SimpleString(code);
    PyGILState_Release(g); munmap(page)."""
    return (b"\x53" + b"\x48\x89\xfb"                      # push rbx; mov rbx, rdi
            + _movabs("rax", fn["PyGILState_Ensure"]) + b"\xff\xd0"
            + b"\x50" + b"\x48\x83\xec\x08"                 # push rax; sub rsp, 8
            + b"\x48\x89\xdf"                               # mov rdi, rbx
            + _movabs("rax", fn["PyRun_SimpleString"]) + b"\xff\xd0"
            + b"\x48\x83\xc4\x08" + b"\x5f"                 # add rsp, 8; pop rdi
            + _movabs("rax", fn["PyGILState_Release"]) + b"\xff\xd0"
            + b"\x5b"                                       # pop rbx
            + _unmap_tail(page, size, fn["munmap"]))


def pending_trampoline(fn: Dict[str, int], start_thread_at: int) -> bytes:
    """int pending(char *code): PyThread_start_new_thread(start_thread, code); return 0.
    Run by the interpreter between two bytecodes of the main thread: no Python code runs
    there (a signal handler raising meanwhile cannot be swallowed). The page is unmapped by the
    new thread, which cannot get past PyGILState_Ensure before this has returned."""
    return (b"\x48\x83\xec\x08"                               # sub rsp, 8
            + b"\x48\x89\xfe"                                   # mov rsi, rdi (code)
            + _movabs("rdi", start_thread_at)
            + _movabs("rax", fn["PyThread_start_new_thread"]) + b"\xff\xd0"
            + b"\x48\x83\xc4\x08" + b"\x31\xc0" + b"\xc3")      # add rsp, 8; xor eax, eax; ret


# -- the two ways -------------------------------------------------------------------------------
def ptrace_inject(pid: int, payload: bytes, call_timeout: float = 2.0) -> Dict[str, Any]:
    """Inject *payload* (PyRun_SimpleString input) into *pid*. Returns what was done: route,
    thread, how long the borrowed thread was held, and whether that was the main thread."""
    fn = elf.resolve(pid, FUNCTIONS + LIBC, prefer=("libpython", "python", "libc"))
    missing = [name for name in FUNCTIONS + LIBC if name not in fn]
    if missing:
        raise InjectError("its interpreter does not export %s, so it is not a CPython memtui "
                          "can inject into" % ", ".join(missing))
    # Ctrl-C, TERM or HUP to memtui while a call runs in the target would leave the target's
    # thread running our registers: they wait until the thread is ours no more.
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        for _attempt in range(3):
            tid, route = _choose_thread(pid)
            with ptrace.Tracee(pid, tid, timeout=call_timeout) as tracee:
                if route == "thread" and tracee.in_syscall not in ptrace.WAITING_SYSCALLS:
                    continue  # it woke up between our look and the stop: look again
                if tracee.call(fn["Py_IsInitialized"]) & 0xFFFFFFFF == 0:
                    raise InjectError("its Python interpreter is not running (not initialized "
                                      "yet, or already finalized)")
                _start(tracee, fn, route, payload)
            return {"route": route, "tid": tid,
                    "main_held_s": tracee.held_s if tid == pid else 0.0, "held_s": tracee.held_s}
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    raise InjectError("its threads kept waking up while we looked for a sleeping one")


def _start(tracee: ptrace.Tracee, fn: Dict[str, int], route: str, payload: bytes) -> None:
    """Map a page holding the trampolines and *payload*, and start the thread (now, or from a
    pending call)."""
    code_size = 256
    size = (code_size + len(payload) + PAGE - 1) // PAGE * PAGE
    page = tracee.call(fn["mmap"], (0, size, PROT_RW, MAP_ANON_PRIVATE, -1, 0))
    if page >= 2 ** 64 - PAGE:  # MAP_FAILED or -errno
        raise InjectError("mapping a page in it failed")
    start_thread = thread_trampoline(fn, page, size)
    pending_at = page + 128
    code = start_thread.ljust(128, b"\xcc") + pending_trampoline(fn, page)
    assert len(start_thread) <= 128 and len(code) <= code_size
    tracee.write(page, code.ljust(code_size, b"\xcc") + payload)
    if tracee.call(fn["mprotect"], (page, size, PROT_RX)) != 0:
        tracee.call(fn["munmap"], (page, size))
        raise InjectError("making its injected page executable failed (a W^X policy?)")
    if route == "thread":
        ok = tracee.call(fn["PyThread_start_new_thread"], (page, page + code_size))
        ok = ok not in (2 ** 64 - 1, 2 ** 32 - 1)  # PYTHREAD_INVALID_THREAD_ID
    else:
        ok = tracee.call(fn["Py_AddPendingCall"], (pending_at, page + code_size)) \
            & 0xFFFFFFFF == 0
    if not ok:
        tracee.call(fn["munmap"], (page, size))
        raise InjectError("its interpreter refused to %s"
                          % ("start a thread" if route == "thread" else "queue a call"))


def _choose_thread(pid: int) -> tuple:
    """A thread asleep in a system call (another than main when there is one), for the thread
    route; else, after a few looks, the main thread, for the pending route. Threads in uninterruptible sleep (D)
    would not stop for us, and a stopped process (T) would not run what we queue."""
    states = {t: ptrace.thread_state(pid, t) for t in ptrace.thread_ids(pid)}
    if states.get(pid) in ("T", "t"):
        raise InjectError("it is stopped (SIGSTOP, or a debugger holds it); continue it first "
                          "(kill -CONT %d)" % pid)
    asleep: list = []
    for look in range(LOOKS):  # a thread that sleeps most of the time is worth a few looks
        asleep = [t for t in states if ptrace.thread_state(pid, t) == "S"
                  and ptrace.syscall_of(pid, t) in ptrace.WAITING_SYSCALLS]
        if asleep or look == LOOKS - 1:
            break
        time.sleep(0.005)
    others = [t for t in asleep if t != pid]
    if others:
        return others[0], "thread"
    if asleep:
        return asleep[0], "thread"
    if states.get(pid) == "D":
        raise InjectError("its main thread is in uninterruptible sleep (state D, e.g. waiting "
                          "on a disk or a vfork child) and no other thread sleeps; try again "
                          "in a moment")
    return pid, "pending"


def remote_exec(pid: int, info: PythonInfo, code: str, directory: str, token: str) -> Dict[str, Any]:
    """Python >= 3.14: have an interpreter of the target's own version ``sys.remote_exec`` the
    code. The script stays until the target has read it (the caller removes it)."""
    python = _python_binary(pid, info)
    script = os.path.join(directory, "%d.inject-%s.py" % (pid, token))
    fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(run_string(code)[:-1].decode())
    try:
        proc = subprocess.run([python, "-I", "-c", "import sys; sys.remote_exec(%d, %r)"
                               % (pid, script)], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise InjectError("sys.remote_exec did not return within 30 s") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise InjectError("sys.remote_exec failed: %s" % (lines[-1] if lines else proc.returncode))
    return {"route": "remote_exec", "tid": pid, "main_held_s": 0.0, "held_s": 0.0,
            "script": script}


def _python_binary(pid: int, info: PythonInfo) -> str:
    """An interpreter of the target's X.Y: its own executable when that is pythonX.Y, else the
    pythonX.Y next to its libpython (an embedding program's binary would not do)."""
    name = "python%d.%d" % info.version
    exe = os.readlink("/proc/%d/exe" % pid)
    if os.path.basename(exe).startswith(name):
        return "/proc/%d/exe" % pid
    if "libpython" in os.path.basename(info.binary):
        prefix = os.path.dirname(os.path.dirname(info.binary))
        candidate = os.path.join(prefix, "bin", name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise InjectError("it embeds Python %d.%d and no %s was found next to its libpython to run "
                      "sys.remote_exec with" % (info.version + (name,)))


# -- the whole thing ----------------------------------------------------------------------------
def inject(pid: int, info: PythonInfo, timeout: float = 10.0) -> Dict[str, Any]:
    """Inject the agent and wait for its status. Returns the status ({"result": "started" |
    "already", "socket": ...}) plus how it got there; raises InjectError (one clause) otherwise.
    Callers hold :func:`target_lock` around looking and injecting."""
    directory = paths.ensure_private_dir(paths.runtime_dir())
    _check_same_files(pid, directory)
    token = secrets.token_hex(6)
    status_path = os.path.join(directory, "%d.inject-%s.json" % (pid, token))
    code = boot_code(PACKAGE_PARENT, status_path, token)
    started = time.monotonic()
    done: Dict[str, Any] = {}
    status: Dict[str, Any] = {}
    try:
        if info.version is not None and info.version >= (3, 14):
            done = remote_exec(pid, info, code, directory, token)
        else:
            done = ptrace_inject(pid, run_string(code))
        status = _wait_status(pid, status_path, started + timeout)
    finally:
        # After a timeout the target may still read the script and write its status: the
        # status file is then left for `memtui ps` to clean (discovery.remove_leftovers); the
        # script must stay readable.
        leftovers = [status_path + ".tmp"] + ([status_path, done.get("script")] if status else [])
        for leftover in leftovers:
            if leftover:
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
    status.update(done, elapsed_s=time.monotonic() - started)
    return status


@contextlib.contextmanager
def target_lock(pid: int) -> Iterator[None]:
    """One attacher at a time looks at and injects into *pid* (a lock file in our runtime
    directory): a second one then finds the first one's agent instead of its ptrace."""
    directory = paths.ensure_private_dir(paths.runtime_dir())
    path = os.path.join(directory, "%d.inject.lock" % pid)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # `memtui ps` may have removed the file (its process exited) before we locked it
            ours, now = os.fstat(fd), os.lstat(path)
            if (ours.st_dev, ours.st_ino) == (now.st_dev, now.st_ino):
                break
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_same_files(pid: int, directory: str) -> None:
    """The injected code imports memtui from PACKAGE_PARENT and writes its status into our
    runtime *directory*: both must be the same files inside the target (not so in another
    container, or with a private /tmp)."""
    for path in (PACKAGE_PARENT, directory):
        try:
            ours, theirs = os.stat(path), os.stat("/proc/%d/root%s" % (pid, path))
            same = (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)
        except OSError:
            same = False
        if not same:
            raise InjectError("it sees other files than memtui at %s (another mount namespace: "
                              "a container, or a private /tmp); run memtui inside it, or use "
                              "memtui.install()" % path)


def _wait_status(pid: int, path: str, deadline: float) -> Dict[str, Any]:
    while time.monotonic() < deadline:
        try:
            with open(path) as fh:
                return json.load(fh)
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            pass  # half-written cannot happen (rename), but never mind: read again
        if not paths.pid_alive(pid):
            raise InjectError("it exited while the agent was starting")
        time.sleep(0.005)
    raise InjectError("timed out")
