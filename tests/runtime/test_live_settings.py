"""settings() and preview() on every block with live settings: preview() checks exactly as
configure() does and says what it would change, changing nothing; settings() reads back JSON."""
from __future__ import annotations

import asyncio
import json

import pytest

from memtui.runtime.batch import BatchProcessor
from memtui.runtime.cache import Cache
from memtui.runtime.limiter import AsyncLimiter
from memtui.runtime.pool import ResourcePool
from memtui.runtime.workers import WorkerPool


def make(kind):
    if kind == "cache":
        return Cache(name="c", max_entries=100, register=False)
    if kind == "pool":
        return ResourcePool(factory=object, max_size=4, register=False)
    if kind == "workers":
        return WorkerPool(min_workers=0, max_workers=2, register=False)
    if kind == "batch":
        return BatchProcessor(lambda items: items, register=False)
    return AsyncLimiter(3, register=False)


def close(block):
    for name in ("shutdown", "close"):
        fn = getattr(block, name, None)
        if fn is not None:
            fn()
            return


GOOD = {
    "cache": ({"max_entries": 10, "ttl": "90s", "max_bytes": "1KiB"},
              {"max_entries": 10, "ttl": 90.0, "max_bytes": 1024}),
    "pool": ({"max_size": 6, "idle_timeout": "2m", "min_size": 1},
             {"max_size": 6, "idle_timeout": 120.0, "min_size": 1, "default_size": 1}),
    "workers": ({"max_workers": 3, "block_timeout": "250ms", "when_full": "block"},
                {"max_workers": 3, "block_timeout": 0.25, "when_full": "block"}),
    "batch": ({"batch_size": 10, "flush_interval": "100ms"},
              {"batch_size": 10, "flush_interval": 0.1}),
    "limiter": ({"max_workers": 5}, {"limit": 5}),
}
BAD = {
    "cache": [{"max_entries": -1}, {"max_entries": "7"}, {"policy": "mru"}, {"ttl": 0},
              {"policy": "ttl"}, {"colour": "blue"}, {"max_entries": [1]}, {"max_entries": 1e300}],
    "pool": [{"max_size": 0}, {"min_size": 5}, {"scale_down_threshold": 0.9},
             {"idle_timeout": "later"}, {"x": 1}],
    "workers": [{"max_workers": 2.5}, {"when_full": "drop"}, {"min_workers": 3}, {"x": 1}],
    "batch": [{"batch_size": 0}, {"flush_interval": "bogus"}, {"x": 1}],
    "limiter": [{"limit": 0}, {"limit": True}, {"x": 1}],
}
KINDS = sorted(GOOD)


@pytest.mark.parametrize("kind", KINDS)
def test_settings_lists_every_key_as_json(kind):
    block = make(kind)
    try:
        current = block.settings()
        assert tuple(current) == tuple(block.SETTINGS)
        assert json.loads(json.dumps(current)) == current
        current["x"] = 1  # a copy: changing it changes nothing
        assert "x" not in block.settings()
    finally:
        close(block)


@pytest.mark.parametrize("kind", KINDS)
def test_preview_says_what_configure_then_does(kind):
    block = make(kind)
    values, expected = GOOD[kind]
    try:
        before = block.settings()
        assert block.preview(values) == expected
        assert block.settings() == before  # nothing changed
        assert block.configure(values) == expected
        after = block.settings()
        assert after == dict(before, **expected)
        assert block.preview(values) == {}  # already so
    finally:
        close(block)


@pytest.mark.parametrize("kind, values", [(k, v) for k in KINDS for v in BAD[k]])
def test_preview_refuses_exactly_as_configure_does_and_changes_nothing(kind, values):
    block = make(kind)
    try:
        before = block.settings()
        with pytest.raises(ValueError) as previewed:
            block.preview(values)
        with pytest.raises(ValueError) as configured:
            block.configure(values)
        assert str(previewed.value) == str(configured.value)
        assert block.settings() == before
    finally:
        close(block)


def test_a_cache_that_previews_a_smaller_bound_keeps_its_entries():
    cache = Cache(max_entries=100, register=False)
    for i in range(100):
        cache.set(i, i)
    assert cache.preview({"max_entries": 10}) == {"max_entries": 10}
    assert len(cache) == 100
    cache.configure({"max_entries": 10})
    assert len(cache) == 10


def test_limiter_preview_wakes_nobody():
    async def main():
        limiter = AsyncLimiter(1, register=False)
        await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        assert limiter.preview({"limit": 2}) == {"limit": 2}
        await asyncio.sleep(0.01)
        assert not waiter.done()
        limiter.configure({"limit": 2})
        await asyncio.wait_for(waiter, 1)

    asyncio.run(main())


def test_worker_pool_max_workers_none_means_the_constructors_default():
    """A profile's `max_workers = 0` reaches configure() as None ("the pool's own default")."""
    import os

    with WorkerPool(min_workers=0, max_workers=1, register=False) as pool:
        default = os.cpu_count() or 1
        assert pool.preview({"max_workers": None}) == ({"max_workers": default}
                                                       if default != 1 else {})
        pool.configure({"max_workers": None})
        assert pool.settings()["max_workers"] == default
