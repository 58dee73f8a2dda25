"""Every dashboard test sees times in UTC, so clock text is the same on every machine."""
from __future__ import annotations

import time

import pytest


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
