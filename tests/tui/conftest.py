"""Every dashboard test sees times in UTC, so clock text is the same on every machine; snapshot
tests also drop the developer's MEMTUI* settings (`no_memtui_env`)."""
from __future__ import annotations

import os
import time

import pytest


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def no_memtui_env(monkeypatch):
    for key in [k for k in os.environ if k.startswith("MEMTUI")]:
        monkeypatch.delenv(key)
