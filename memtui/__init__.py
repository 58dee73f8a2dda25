"""memtui: see and tune the memory of running Python services.

``memtui.start()`` runs the agent in this process with the environment's profile
(``profiles/ENV.toml``, when there is one); ``memtui.install()`` installs it dormant until
SIGUSR2. The building blocks (``memtui.Cache``, ``memtui.cached``, ``memtui.ResourcePool``,
``memtui.WorkerPool``, ``memtui.AsyncLimiter``, ``memtui.BatchProcessor``) and ``memtui.watch()``
load on first use, so ``import memtui`` stays a few milliseconds and standard-library only.
"""
from typing import Any

from .agent import AgentOptions, current, install, register, start, stop, unregister

__version__ = "0.1.0"

# name -> module under memtui.runtime; imported when first asked for (PEP 562)
_LAZY = {
    "Cache": "cache", "cached": "cache",
    "ResourcePool": "pool", "PoolTimeout": "pool", "PoolClosed": "pool",
    "WorkerPool": "workers", "QueueFull": "workers",
    "AsyncLimiter": "limiter",
    "BatchProcessor": "batch",
    "watch": "adapters", "unwatch": "adapters",
}

__all__ = [
    "AgentOptions", "current", "install", "register", "start", "stop", "unregister", "__version__",
    # loaded on first use (see _LAZY)
    "AsyncLimiter", "BatchProcessor", "Cache", "PoolClosed", "PoolTimeout", "QueueFull",
    "ResourcePool", "WorkerPool", "cached", "unwatch", "watch",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'memtui' has no attribute %r" % name)
    import importlib

    value = getattr(importlib.import_module("memtui.runtime." + module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
