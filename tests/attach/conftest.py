"""Targets for the attach tests: real processes whose stdout a thread collects."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from tests.conftest import ROOT, wait_for

TARGET = ROOT / "tests" / "targets" / "attach_target.py"
PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
INJECTABLE = ("3.9", "3.10", "3.11", "3.12", "3.13")


def pyenv_python(minor: str) -> Optional[str]:
    """The newest pyenv CPython X.Y here, or None."""
    if not PYENV.is_dir():
        return None
    found = sorted((p for p in PYENV.iterdir() if p.name.startswith(minor + ".")
                    and p.name[len(minor) + 1:].isdigit()),
                   key=lambda p: int(p.name.rsplit(".", 1)[1]))
    for p in reversed(found):
        exe = p / "bin" / ("python" + minor)
        if exe.exists():
            return str(exe)
    return None


class Proc:
    """A target with its stdout collected by a thread."""

    def __init__(self, argv: List[str], env: Dict[str, str], preexec=None) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=preexec)
        self.lines: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(lambda: self.lines and self.lines[0].startswith("READY"), timeout=30,
                 message="target READY (stderr: %s)" % self.stderr_if_dead())
        self.pid = self.proc.pid

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stderr_if_dead(self) -> str:
        return self.proc.stderr.read() if self.proc.poll() is not None else ""

    def ticks(self) -> int:
        return sum(1 for line in self.lines if line.startswith("tick"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        return self.proc.stderr.read()


@pytest.fixture
def launch(agent_env):
    started: List[Proc] = []

    def start(mode: str, python: Optional[str] = None, with_memtui: bool = False,
              env: Optional[Dict[str, str]] = None, preexec=None) -> Proc:
        full = dict(agent_env)
        if not with_memtui:
            full.pop("PYTHONPATH", None)  # memtui is not installed in the target's world
        full.update(env or {})
        p = Proc([python or pyenv_python("3.11") or sys.executable, str(TARGET), mode], full,
                 preexec)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
