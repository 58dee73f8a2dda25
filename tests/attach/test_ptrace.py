"""The injector's safety net, on real processes: a call that faults or never returns is undone,
the fault is never delivered, and the target carries on as if nothing happened."""
from __future__ import annotations

import platform
import time

import pytest

from memtui.attach import elf, ptrace
from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 injector")


def _ticks_go_on(target, more: int = 3) -> None:
    before = target.ticks()
    wait_for(lambda: target.ticks() >= before + more, timeout=10, message="ticks")
    assert target.alive()


def test_a_faulting_call_is_undone_and_the_signal_withheld(launch):
    target = launch("sleep")
    with ptrace.Tracee(target.pid, target.pid) as tracee:
        with pytest.raises(ptrace.CallFault, match="SIGSEGV"):
            tracee.call(0x10, ())  # jumps to an unmapped address
        assert tracee.signals == []
    _ticks_go_on(target)
    assert "Traceback" not in target.stop()


def test_a_call_that_never_returns_times_out_and_is_undone(launch):
    target = launch("sleep")
    pause = elf.resolve(target.pid, ["pause"], prefer=("libc",))["pause"]
    started = time.monotonic()
    with ptrace.Tracee(target.pid, target.pid, timeout=0.5) as tracee:
        with pytest.raises(ptrace.CallTimeout):
            tracee.call(pause, ())
    assert time.monotonic() - started < 5
    _ticks_go_on(target)
    assert "Traceback" not in target.stop()


def test_a_plain_call_returns_its_value_and_restores_the_thread(launch):
    target = launch("loop")  # interrupted mid-bytecode, not in a system call
    getpid = elf.resolve(target.pid, ["getpid"], prefer=("libc",))["getpid"]
    with ptrace.Tracee(target.pid, target.pid) as tracee:
        assert tracee.in_syscall is None
        assert tracee.call(getpid, ()) == target.pid
        assert tracee.call(getpid, ()) == target.pid
    _ticks_go_on(target)
    assert "Traceback" not in target.stop()


def _cpu_has(flag: str) -> bool:
    with open("/proc/cpuinfo") as fh:
        return any(line.startswith("flags") and flag in line.split() for line in fh)


@pytest.mark.skipif(not _cpu_has("avx"), reason="no AVX registers on this CPU")
def test_a_call_gives_back_the_whole_vector_state_not_only_sse(launch):
    """The upper halves of the YMM registers (AVX) live outside the 512-byte FXSAVE area: a
    call that changes them must not leave them changed (a thread stopped between two bytecodes
    may be using them)."""
    avx = slice(576, 576 + 256)  # YMM_Hi128 in the standard XSAVE layout
    target = launch("loop")
    getpid = elf.resolve(target.pid, ["getpid"], prefer=("libc",))["getpid"]
    with ptrace.Tracee(target.pid, target.pid) as tracee:
        original = tracee.saved_fp
        assert original[0] == ptrace.NT_X86_XSTATE and len(original[1]) > 576 + 256
        state = bytearray(original[1])
        state[avx] = bytes(range(256))  # as if the thread held these when we stopped it
        state[512] |= 0b100  # XSTATE_BV: the AVX component is in use
        tracee._setfpregs((ptrace.NT_X86_XSTATE, bytes(state)))  # noqa: SLF001
        tracee.saved_fp = tracee._getfpregs()  # noqa: SLF001 - what detach/call give back
        assert tracee.saved_fp[1][avx] == bytes(range(256))
        tracee._setfpregs(original)  # noqa: SLF001 - the call "clobbers" them
        assert tracee.call(getpid, ()) == target.pid
        assert tracee._getfpregs()[1][avx] == bytes(range(256))  # noqa: SLF001 - given back
        tracee.saved_fp = original  # the thread leaves with what it really had
    _ticks_go_on(target)
    assert "Traceback" not in target.stop()


def test_signals_arriving_while_a_thread_is_held_are_sent_on(launch):
    target = launch("signals")
    sleep = elf.resolve(target.pid, ["sleep"], prefer=("libc",))["sleep"]
    with ptrace.Tracee(target.pid, target.pid) as tracee:
        import os
        import signal
        import threading

        def send():
            time.sleep(0.3)
            os.kill(target.pid, signal.SIGUSR1)
            os.kill(target.pid, signal.SIGUSR2)

        sender = threading.Thread(target=send)
        sender.start()
        tracee.call(sleep, (1,))
        sender.join()
    wait_for(lambda: "GOT USR1" in target.lines and "GOT USR2" in target.lines, timeout=10,
             message="both signals delivered")
    _ticks_go_on(target)


# What ends memtui while an injection holds a thread: the picker injects on a worker thread, and
# SIGTERM/SIGHUP close it, ending the process after CLOSE_GRACE if the app does not close.
_ENDED_MID_CALL = r"""
import os, signal, sys, threading, time
from memtui.attach import elf, ptrace
from memtui.cli.dashboard import CLOSE_GRACE, SignalsCloseDashboard

class NeverCloses:  # an app whose terminal is gone: closing it hangs
    def call_from_thread(self, *args):
        pass

pid = int(sys.argv[1])
sleep = elf.resolve(pid, ["sleep"], prefer=("libc",))["sleep"]
held = threading.Event()

def inject():
    with ptrace.Tracee(pid, pid, timeout=30) as tracee:
        held.set()
        tracee.call(sleep, (int(CLOSE_GRACE) + 2,))  # the target runs our call past the grace

with SignalsCloseDashboard(NeverCloses()):
    threading.Thread(target=inject, daemon=True).start()
    held.wait(10)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
"""


def test_memtui_ended_by_a_signal_mid_call_first_gives_the_thread_back(launch, agent_env):
    import subprocess
    import sys

    from memtui.cli.dashboard import CLOSE_GRACE

    target = launch("sleep")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _ENDED_MID_CALL, str(target.pid)],
                         env=agent_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 128 + 15, out.stderr  # ended by the close path's os._exit ...
    assert time.monotonic() - started > CLOSE_GRACE + 1  # ... only once the call was over
    _ticks_go_on(target)  # without the wait the target ran on into address 0 and died
    assert "Traceback" not in target.stop()


def test_a_thread_that_dies_while_held_is_not_counted_as_held(launch):
    """Else every later close would wait out wait_released's whole timeout."""
    import os
    import signal
    import threading

    target = launch("sleep")
    sleep = elf.resolve(target.pid, ["sleep"], prefer=("libc",))["sleep"]
    killer = threading.Timer(0.5, os.kill, (target.pid, signal.SIGKILL))
    killer.start()
    with pytest.raises(ptrace.PtraceError, match="ended"):
        with ptrace.Tracee(target.pid, target.pid, timeout=10) as tracee:
            tracee.call(sleep, (3,))
    killer.join()
    assert ptrace.wait_released(0.5)
