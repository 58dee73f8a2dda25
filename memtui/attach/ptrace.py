"""Call a function inside another process's thread, on Linux x86_64, with ptrace (ctypes).

Why our own instead of gdb: an inferior call in gdb 13 fails on CPUs with AMX state ("Couldn't
write extended state status") and leaves the interrupted syscall returning -ERESTARTNOHAND to
the program — a `time.sleep` in the target raised OSError 514 when we tried. This module saves
and restores the general registers (PTRACE_GETREGS/SETREGS) and the whole extended state — x87,
SSE, AVX, AVX-512, AMX — as the kernel's XSAVE buffer (PTRACE_GETREGSET/SETREGSET NT_X86_XSTATE,
written back at exactly the size read: the kernel refuses any other size with EFAULT, gdb's
"Bad address"), falling back to the SSE/x87 state (PTRACE_GETFPREGS/SETFPREGS) where that is not
available. A thread blocked in a system call has no live vector registers anyway (all are
caller-saved across the libc wrapper); a main thread stopped between two bytecodes may.

Every path ends detached: PTRACE_SEIZE (no SIGSTOP, no PTRACE_O_EXITKILL) means that even if this
process dies the kernel detaches and the thread resumes — only the short window inside a call
(registers swapped) is not self-healing, and :meth:`Tracee.call` restores them on every return,
error or timeout.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
import struct
import threading
import time
from typing import Dict, List, Optional, Sequence

PTRACE_GETREGS, PTRACE_SETREGS = 12, 13
PTRACE_GETFPREGS, PTRACE_SETFPREGS = 14, 15
PTRACE_GETREGSET, PTRACE_SETREGSET, NT_X86_XSTATE = 0x4204, 0x4205, 0x202
XSTATE_MAX = 1 << 17  # bytes; the XSAVE area with AMX tiles is about 11 KiB
PTRACE_CONT, PTRACE_DETACH = 7, 17
PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4206, 0x4207
PTRACE_EVENT_STOP = 128
WALL = 0x40000000

REG_NAMES = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
             "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
             "gs_base", "ds", "es", "fs", "gs")
ARG_REGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
# -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK, -EINTR
RESTART_CODES = {2 ** 64 - n for n in (512, 513, 514, 516, 4)}
MASK = 2 ** 64 - 1

# System calls a thread sleeps in (x86_64 numbers). A thread parked in one of these holds no
# allocator lock and no live vector state, so a call on it (even pthread_create) is safe.
WAITING_SYSCALLS = {
    0: "read", 7: "poll", 23: "select", 34: "pause", 35: "nanosleep", 43: "accept",
    45: "recvfrom", 47: "recvmsg", 61: "wait4", 128: "rt_sigtimedwait", 130: "rt_sigsuspend",
    202: "futex", 230: "clock_nanosleep", 232: "epoll_wait", 247: "waitid", 270: "pselect6",
    271: "ppoll", 281: "epoll_pwait", 288: "accept4", 299: "recvmmsg", 441: "epoll_pwait2",
}


class PtraceError(OSError):
    """A ptrace step failed; ``errno`` says why (EPERM: not permitted, ESRCH: gone)."""


STOP_GRACE = 30.0  # seconds we keep waiting for a thread we interrupted to stop
FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}


class CallFault(Exception):
    """The called function crashed; the thread was restored and the signal withheld."""


class CallTimeout(Exception):
    """The called function did not return in time; the thread was restored regardless."""


_libc = None


def _ptrace(request: int, tid: int, addr: int = 0, data: int = 0) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.ptrace.restype = ctypes.c_long
        _libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
    ctypes.set_errno(0)
    res = _libc.ptrace(request, tid, ctypes.c_void_p(addr), ctypes.c_void_p(data))
    if res == -1 and ctypes.get_errno():
        err = ctypes.get_errno()
        raise PtraceError(err, "ptrace(%d) on %d: %s" % (request, tid, os.strerror(err)))
    return res


def thread_ids(pid: int) -> List[int]:
    """The process's threads, main (== pid) first."""
    tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid) if t.isdigit())
    return sorted(tids, key=lambda t: t != pid)


def thread_state(pid: int, tid: int) -> str:
    """The one-letter state of a thread (R, S, D, T, t, Z ...), "" when unknown."""
    try:
        with open("/proc/%d/task/%d/stat" % (pid, tid), "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0].decode()
    except (OSError, IndexError):
        return ""


def syscall_of(pid: int, tid: int) -> Optional[int]:
    """The system call *tid* is blocked in, from /proc (None when running or unknown)."""
    try:
        with open("/proc/%d/task/%d/syscall" % (pid, tid)) as fh:
            first = fh.read().split()[:1]
    except OSError:
        return None
    if not first or not first[0].lstrip("-").isdigit():
        return None
    nr = int(first[0])
    return nr if nr >= 0 else None


_HELD = threading.Condition()
_held_count = [0]  # threads of other processes this process holds right now


def _holding(change: int) -> None:
    with _HELD:
        _held_count[0] += change
        _HELD.notify_all()


def wait_released(timeout: float) -> bool:
    """Wait until this process holds no thread of another (True), or *timeout* seconds (False).

    A process that exits while it holds a thread in the middle of a call leaves that thread
    running our registers (the kernel detaches it as it is), which kills the target: anything
    that ends this process on purpose (os._exit) waits here first."""
    with _HELD:
        return _HELD.wait_for(lambda: _held_count[0] == 0, timeout)


class Tracee:
    """One seized thread. Use as a context manager: the thread is interrupted on entry and
    detached on exit, whatever happened in between."""

    def __init__(self, pid: int, tid: int, timeout: float = 2.0) -> None:
        self.pid, self.tid, self.timeout = pid, tid, timeout
        self.seized = False
        self._counted = False  # counted in _held_count (see wait_released)
        self.saved: Optional[bytes] = None
        self.saved_fp: Optional[tuple] = None  # (regset, bytes): see _getfpregs
        self.signals: List[int] = []  # real signals that arrived while we held the thread
        self.stopped_at = 0.0
        self.held_s = 0.0  # how long the thread was stopped, for the pause measurement

    # lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> "Tracee":
        _holding(+1)
        self._counted = True
        try:
            _ptrace(PTRACE_SEIZE, self.tid)
        except BaseException:
            self._uncount()
            raise
        self.seized = True
        try:
            _ptrace(PTRACE_INTERRUPT, self.tid)
            try:
                sig, event = self._wait_stop(self.timeout)
            except CallTimeout:
                # The interrupt is still pending: it would stop the thread later with nobody
                # to let it go. Wait for that stop (bounded), then detach below.
                self._wait_stop(STOP_GRACE)
                raise CallTimeout("thread %d of PID %d did not stop within %.0f s"
                                  % (self.tid, self.pid, self.timeout)) from None
            self._note_signal(sig, event)
            self.stopped_at = time.monotonic()
            self.saved = self._getregs()
            self.saved_fp = self._getfpregs()
        except BaseException:
            self.detach()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _note_signal(self, sig: int, event: int) -> None:
        if event == 0 and sig not in (signal.SIGSTOP, signal.SIGTRAP) and sig not in FAULTS:
            self.signals.append(sig)

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            _holding(-1)

    def detach(self) -> None:
        if not self.seized:  # never seized, or the thread ended while we held it
            self._uncount()
            return
        self.seized = False
        try:
            if self.saved is not None:
                self._setregs(self.saved)
                if self.saved_fp is not None:
                    self._setfpregs(self.saved_fp)
        finally:
            if self.stopped_at:
                self.held_s = time.monotonic() - self.stopped_at
            try:
                _ptrace(PTRACE_DETACH, self.tid, 0, 0)
            except PtraceError as exc:
                if exc.errno != errno.ESRCH:  # a thread that exited needs no detaching
                    raise
            finally:
                self._uncount()
            for sig in self.signals:  # withheld while we held the thread: send them on now
                try:
                    os.kill(self.pid, sig)
                except OSError:
                    pass
            self.signals = []

    # state -------------------------------------------------------------------------------------
    def regs(self) -> Dict[str, int]:
        return dict(zip(REG_NAMES, struct.unpack("<27Q", self._getregs())))

    @property
    def in_syscall(self) -> Optional[int]:
        """The interrupted system call's number when the thread was stopped inside one."""
        regs = dict(zip(REG_NAMES, struct.unpack("<27Q", self.saved or b"\0" * 216)))
        if regs["orig_rax"] != MASK and regs["rax"] in RESTART_CODES:
            return regs["orig_rax"]
        return None

    def write(self, address: int, data: bytes) -> None:
        fd = os.open("/proc/%d/mem" % self.pid, os.O_RDWR)
        try:
            if os.pwrite(fd, data, address) != len(data):
                raise PtraceError(errno.EIO, "short write into PID %d" % self.pid)
        finally:
            os.close(fd)

    # calls -------------------------------------------------------------------------------------
    def call(self, function: int, args: Sequence[int] = (), timeout: Optional[float] = None) -> int:
        """Run ``function(*args)`` on this thread and return its rax. The thread's registers are
        put back afterwards, also on timeout (the call is then abandoned where it stands)."""
        assert self.saved is not None and len(args) <= len(ARG_REGS)
        base = dict(zip(REG_NAMES, struct.unpack("<27Q", self.saved)))
        regs = dict(base)
        # Below the red zone, 16-byte aligned, then the return address: 0, so that returning
        # faults (SIGSEGV at rip 0) and hands the thread back to us.
        sp = ((base["rsp"] - 1024) & ~0xF) - 8
        self.write(sp, struct.pack("<Q", 0))
        regs.update(rsp=sp, rip=function, rax=0, orig_rax=MASK)  # orig_rax -1: no syscall restart
        regs["eflags"] &= ~0x400  # the ABI wants the direction flag clear at a call
        for name, value in zip(ARG_REGS, args):
            regs[name] = value & MASK
        self._setregs(struct.pack("<27Q", *(regs[n] for n in REG_NAMES)))
        try:
            _ptrace(PTRACE_CONT, self.tid, 0, 0)
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            while True:
                sig, event = self._wait_stop(deadline - time.monotonic(), interrupt=True)
                now = self.regs()
                if sig == signal.SIGSEGV and now["rip"] == 0:
                    return now["rax"]
                if event == 0 and sig in FAULTS:
                    # Our call faulted: never let the target see that signal. The registers are
                    # put back below; the caller reports the failure.
                    raise CallFault("the call faulted with %s at 0x%x"
                                    % (signal.Signals(sig).name, now["rip"]))
                self._note_signal(sig, event)  # withheld now, sent on after the detach
                _ptrace(PTRACE_CONT, self.tid, 0, 0)
        finally:
            if self.seized:  # else the thread ended meanwhile: nothing to put back
                self._setregs(self.saved)
                if self.saved_fp is not None:
                    self._setfpregs(self.saved_fp)

    # ptrace plumbing ---------------------------------------------------------------------------
    def _wait_stop(self, timeout: float, interrupt: bool = False) -> tuple:
        """Wait for the next stop of the thread: (signal, ptrace event). On timeout with
        *interrupt*, stop it ourselves and raise CallTimeout once it is stopped."""
        deadline = time.monotonic() + max(0.0, timeout)
        delay = 0.0002
        while True:
            tid, status = os.waitpid(self.tid, os.WNOHANG | WALL)
            if tid == self.tid:
                if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                    self.seized = False
                    raise PtraceError(errno.ESRCH, "thread %d of PID %d ended" % (self.tid,
                                                                                  self.pid))
                if os.WIFSTOPPED(status):
                    return os.WSTOPSIG(status), (status >> 16) & 0xFF
            if time.monotonic() >= deadline:
                if not interrupt:
                    raise CallTimeout("thread %d did not stop" % self.tid)
                _ptrace(PTRACE_INTERRUPT, self.tid)
                self._wait_stop(STOP_GRACE)  # stopped before anything is restored
                raise CallTimeout("the call in thread %d did not return" % self.tid)
            time.sleep(delay)
            delay = min(delay * 2, 0.005)

    def _getregs(self) -> bytes:
        buf = ctypes.create_string_buffer(27 * 8)
        _ptrace(PTRACE_GETREGS, self.tid, 0, ctypes.addressof(buf))
        return buf.raw

    def _setregs(self, raw: bytes) -> None:
        buf = ctypes.create_string_buffer(raw, 27 * 8)
        _ptrace(PTRACE_SETREGS, self.tid, 0, ctypes.addressof(buf))

    def _getfpregs(self) -> Optional[tuple]:
        """(NT_X86_XSTATE, the XSAVE buffer) or, without it, (0, the 512-byte FXSAVE area)."""
        buf = ctypes.create_string_buffer(XSTATE_MAX)
        iov = _IoVec(ctypes.addressof(buf), XSTATE_MAX)
        try:
            _ptrace(PTRACE_GETREGSET, self.tid, NT_X86_XSTATE, ctypes.addressof(iov))
            return NT_X86_XSTATE, buf.raw[:iov.len]
        except PtraceError:
            pass
        buf = ctypes.create_string_buffer(512)
        try:
            _ptrace(PTRACE_GETFPREGS, self.tid, 0, ctypes.addressof(buf))
        except PtraceError:
            return None
        return 0, buf.raw

    def _setfpregs(self, saved: tuple) -> None:
        kind, raw = saved
        if kind == NT_X86_XSTATE:
            buf = ctypes.create_string_buffer(raw, len(raw))
            iov = _IoVec(ctypes.addressof(buf), len(raw))
            try:
                _ptrace(PTRACE_SETREGSET, self.tid, NT_X86_XSTATE, ctypes.addressof(iov))
                return
            except PtraceError:
                raw = raw[:512]  # the XSAVE buffer starts with the FXSAVE area: keep that much
        buf = ctypes.create_string_buffer(raw, 512)
        _ptrace(PTRACE_SETFPREGS, self.tid, 0, ctypes.addressof(buf))


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
