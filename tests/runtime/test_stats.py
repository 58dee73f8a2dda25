"""The shared measuring pieces: RateMeter on a fake clock, and the strict settings checks."""
from __future__ import annotations

import pytest

from conftest import FakeClock

from memtui.runtime._settings import check_duration, check_fraction, check_int, check_keys
from memtui.runtime._stats import RateMeter


def steady(meter: RateMeter, clock: FakeClock, per_s: int, seconds: int) -> None:
    """*per_s* events spread over each of *seconds* seconds."""
    for _ in range(seconds):
        start = clock.now
        for i in range(per_s):
            clock.now = start + i / float(per_s)
            meter.mark()
        clock.now = start + 1.0


def test_rate_is_zero_before_any_event():
    clock = FakeClock(500.0)
    meter = RateMeter(clock=clock)
    assert meter.per_second() == 0.0
    clock.now += 30
    assert meter.per_second() == 0.0


def test_young_meter_divides_by_the_seconds_it_has_seen_not_the_window():
    clock = FakeClock(500.0)
    meter = RateMeter(window=10, clock=clock)
    steady(meter, clock, 100, 3)
    assert meter.per_second() == pytest.approx(100.0)  # not 300 / 10 = 30


def test_first_second_is_not_reported_until_complete_then_divided_by_one():
    clock = FakeClock(100.0)
    meter = RateMeter(window=10, clock=clock)
    meter.mark(50)
    assert meter.per_second() == 0.0  # the current second is still filling up
    clock.now = 101.2
    assert meter.per_second() == pytest.approx(50.0)


def test_young_meter_counts_from_its_first_event_not_the_start_of_that_second():
    clock = FakeClock(700.75)
    meter = RateMeter(window=10, clock=clock)
    steady(meter, clock, 100, 3)  # 700.75 .. 703.75
    assert meter.per_second() == pytest.approx(100.0)  # 225 events in 2.25 s, not 225 / 3


def test_long_steady_rate_uses_the_full_window():
    clock = FakeClock(500.0)
    meter = RateMeter(window=10, clock=clock)
    steady(meter, clock, 100, 20)
    assert meter.per_second() == pytest.approx(100.0)


def test_rate_decays_when_idle_after_activity():
    clock = FakeClock(500.0)
    meter = RateMeter(window=10, clock=clock)
    steady(meter, clock, 100, 20)
    clock.now += 5
    assert meter.per_second() == pytest.approx(50.0)  # 5 busy seconds of the last 10
    clock.now += 6
    assert meter.per_second() == 0.0


def test_a_burst_after_a_long_idle_spell_counts_the_idle_seconds():
    clock = FakeClock(500.0)
    meter = RateMeter(window=10, clock=clock)
    steady(meter, clock, 10, 1)
    clock.now += 100
    steady(meter, clock, 100, 2)
    assert meter.per_second() == pytest.approx(20.0)  # 200 events over the 10 s window


def test_check_int_is_strict():
    assert check_int("x", "n", 3, 1) == 3
    for bad in (2.5, 3.0, True, "3", None, 0):
        with pytest.raises(ValueError, match="'?n'? must be an integer >= 1"):
            check_int("x", "n", bad, 1)


def test_check_duration_units_positive_and_none():
    assert check_duration("x", "t", "250ms") == 0.25
    assert check_duration("x", "t", 2) == 2.0
    assert check_duration("x", "t", None, none_ok=True) is None
    for bad in (0, "0s", -1, float("nan"), float("inf"), True, "soon", None):
        with pytest.raises(ValueError, match="x: t"):
            check_duration("x", "t", bad)


def test_check_fraction_and_keys():
    assert check_fraction("x", "f", 1) == 1.0
    for bad in (1.5, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="f must be a number in"):
            check_fraction("x", "f", bad)
    check_keys("x", {"a": 1}, ("a", "b"))
    with pytest.raises(ValueError, match="unknown setting 'c'"):
        check_keys("x", {"a": 1, "c": 2}, ("a", "b"))
