"""BatchProcessor: collect single items into batches (by size or age), run a batch handler with
bounded concurrency, hand each caller a Future for its own item; optional result cache.
"""
from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from concurrent.futures import Future, wait as wait_futures
from typing import Any, Callable, Dict, List, Mapping, Optional

from ._settings import Tunable, check_duration, check_int, check_keys
from ._stats import _CHECK, _KEEP, Clock, LatencyWindow, _wake_all, register_component
from .workers import QueueFull, WorkerPool

__all__ = ["BatchProcessor"]

_MISS = object()
_LIVE: "weakref.WeakSet[BatchProcessor]" = weakref.WeakSet()


class BatchProcessor(Tunable):
    """``bp.submit(item) -> Future`` resolving to ``handler(batch)[i]`` for that item.

    ``handler(list) -> list`` of equal length; if it raises (or returns the wrong length) every
    future of that batch fails with the error. A batch is cut when ``batch_size`` items wait or
    the oldest has waited ``flush_interval`` seconds (one daemon flusher thread watches the age).
    At most ``max_concurrency`` batches run at once; further cut batches queue, and past
    ``max_queued_batches`` submit blocks (back-pressure). ``result_cache`` is anything with
    ``get(key, default)`` and ``set(key, value)``; ``key(item)`` (default: the item) keys it.
    Cached items resolve at once and never enter a batch.

    The flusher holds the processor weakly while nothing is buffered: one dropped without
    ``close()`` is collected and its threads exit. In a forked child the processor gets fresh
    locks and a new flusher (on the next submit); items buffered or queued in the parent are
    dropped there (their futures are the parent's).
    """

    kind = "batch"

    def __init__(self, handler: Callable[[List[Any]], List[Any]], batch_size: int = 100,
                 flush_interval: Any = 0.5, max_concurrency: int = 2,
                 result_cache: Any = None, key: Optional[Callable[[Any], Any]] = None,
                 max_queued_batches: int = 1000, name: Optional[str] = None,
                 register: bool = True, clock: Clock = time.monotonic) -> None:
        self.name = name or "batch"
        self._handler = handler
        self._cache = result_cache
        self._key = key if key is not None else (lambda item: item)
        self._clock = clock
        self._init_sync()
        self._buf: List[tuple] = []  # (item, future, submitted_at)
        self._first_at = 0.0
        self._closed = False
        self._inflight: set = set()  # futures of dispatched batches
        self._pending = 0  # items submitted and not yet resolved (buffered, queued or running)
        self.batches = self.items = self.errors = self.cache_hits = 0
        self._latency = LatencyWindow()
        self._batch_ms = LatencyWindow(256)
        self.batch_size, self.flush_interval, self.max_concurrency = 1, 0.5, 1
        self._set(dict(batch_size=batch_size, flush_interval=flush_interval,
                         max_concurrency=max_concurrency))
        check_int("batch processor %r" % self.name, "max_queued_batches", max_queued_batches, 1)
        self._runner = WorkerPool(min_workers=0, max_workers=self.max_concurrency,
                                  queue_size=max_queued_batches, when_full="block",
                                  idle_timeout=30.0, batch=1, name=self.name + ".runner",
                                  register=False)
        register_component(self, register)
        self._flusher: Optional[threading.Thread] = None
        self._start_flusher()
        _LIVE.add(self)

    def _init_sync(self) -> None:
        self._lock = lock = threading.Lock()
        self._cond = cond = threading.Condition(lock)
        # _wake=: bound now, since at interpreter exit the module globals may already be None
        self._ref = weakref.ref(self, lambda _ref, _wake=_wake_all: _wake(lock, cond))

    def _start_flusher(self) -> None:
        self._flusher = threading.Thread(target=_flush_loop, args=(self._ref, self._lock,
                                                                   self._cond), daemon=True,
                                         name="memtui-%s-flusher" % self.name)
        self._flusher.start()

    def _after_fork(self) -> None:
        """In a forked child (see the class doc); the runner pool resets itself."""
        self._init_sync()
        self._buf, self._inflight, self._pending, self._flusher = [], set(), 0, None

    # -- settings -----------------------------------------------------------------------------
    def _current_settings(self) -> Dict[str, Any]:
        return {"batch_size": self.batch_size, "flush_interval": self.flush_interval,
                "max_concurrency": self.max_concurrency}

    def _checked(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        owner = "batch processor %r" % self.name
        check_keys(owner, values, self.SETTINGS)
        new = self._current_settings()
        for k, v in values.items():
            new[k] = check_duration(owner, k, v) if k == "flush_interval" else \
                check_int(owner, k, v, 1)
        return new

    SETTINGS = ("batch_size", "flush_interval", "max_concurrency")

    def configure(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """Retune ``batch_size``, ``flush_interval`` (units allowed), ``max_concurrency``;
        returns what changed. A bad value raises ValueError and changes nothing."""
        with self._lock:
            changed = self._set(values)
            self._cond.notify_all()
        if "max_concurrency" in changed:
            self._runner.configure({"max_workers": self.max_concurrency})
        return changed

    # -- intake -------------------------------------------------------------------------------
    def submit(self, item: Any) -> "Future[Any]":
        """Queue *item*; the Future resolves to its result. RuntimeError after close()."""
        f: Future = Future()
        if self._cache is not None:
            value = self._cache.get(self._key(item), _MISS)
            if value is not _MISS:
                f.set_result(value)
                with self._lock:
                    self.cache_hits += 1
                return f
        now = self._clock()
        with self._lock:
            if self._closed:
                raise RuntimeError("batch processor %r is closed; cannot submit" % self.name)
            buf = self._buf
            if not buf:
                self._first_at = now
                if self._flusher is None:  # only after a fork
                    self._start_flusher()
                _KEEP.add(self)  # until the flusher holds us (see _stats._KEEP)
                self._cond.notify()  # the flusher starts timing this batch
            buf.append((item, f, now))
            self._pending += 1
            batch = self._cut() if len(buf) >= self.batch_size else None
        if batch:
            self._dispatch(batch)
        return f

    def _cut(self) -> List[tuple]:
        """Under the lock: take the buffered items as one batch."""
        batch, self._buf = self._buf, []
        return batch

    def _dispatch(self, batch: List[tuple]) -> None:
        try:
            fut = self._runner.submit(self._run, batch)  # blocks when too many batches queue up
        except (RuntimeError, QueueFull):  # closed meanwhile, or a handler submitting while the
            # queue is full (a runner thread must not wait on its own pool): run it here
            self._run(batch)
            return
        with self._lock:
            self._inflight.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: Future) -> None:
        with self._lock:
            self._inflight.discard(fut)

    def _run(self, batch: List[tuple]) -> None:
        live = [entry for entry in batch if entry[1].set_running_or_notify_cancel()]
        t0 = self._clock()
        error: Optional[BaseException] = None
        results: Any = None
        if live:
            try:
                results = self._handler([entry[0] for entry in live])
                if results is None or len(results) != len(live):
                    raise ValueError("batch handler of %r returned %s results for %d items"
                                     % (self.name, "no" if results is None else len(results),
                                        len(live)))
                results = list(results)
            except BaseException as exc:  # every caller of this batch sees the error
                error = exc
        end = self._clock()
        if error is None and self._cache is not None:
            for (item, _, _), value in zip(live, results):
                try:
                    self._cache.set(self._key(item), value)
                except Exception:
                    pass  # a cache that refuses a value must not fail the callers
        with self._lock:
            self._pending -= len(batch)
            if live:
                self.batches += 1
                self.items += len(live)
                self._batch_ms.add(end - t0)
                if error is not None:
                    self.errors += 1
                for entry in live:
                    self._latency.add(end - entry[2])
        for i, (_, f, _) in enumerate(live):
            if error is not None:
                f.set_exception(error)
            else:
                f.set_result(results[i])

    # -- flushing -----------------------------------------------------------------------------
    def tick(self) -> bool:
        """Dispatch the buffered items if the oldest is ``flush_interval`` old (by the injected
        clock). The flusher calls this; tests with a fake clock may too. True if it cut one."""
        with self._lock:
            due = bool(self._buf) and \
                self._clock() - self._first_at >= self.flush_interval
            batch = self._cut() if due else None
        if batch:
            self._dispatch(batch)
        return bool(batch)

    def flush(self, wait: bool = True, timeout: Optional[float] = None) -> bool:
        """Dispatch what is buffered now; with *wait*, return once every batch dispatched so far
        has finished (True) or *timeout* passed (False)."""
        with self._lock:
            batch = self._cut() if self._buf else None
        if batch:
            self._dispatch(batch)
        if not wait:
            return True
        with self._lock:
            running = list(self._inflight)
        return not wait_futures(running, timeout=timeout).not_done

    def close(self, wait: bool = True) -> None:
        """Stop the flusher, dispatch what is buffered and (with *wait*) finish every batch and
        stop the runner threads before returning."""
        with self._lock:
            if self._closed:
                batch = None
            else:
                self._closed = True
                batch = self._cut() if self._buf else None
            self._cond.notify_all()
        if batch:
            self._dispatch(batch)
        flusher = self._flusher
        if flusher is not None and threading.current_thread() is not flusher:
            flusher.join()
        self._runner.shutdown(wait=wait)

    def __enter__(self) -> "BatchProcessor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(wait=True)

    # -- reporting ----------------------------------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        with self._lock:
            out = {
                "batches": self.batches, "items": self.items, "errors": self.errors,
                "pending": self._pending, "latency_p50_ms": self._latency.percentile_ms(50),
                "latency_p95_ms": self._latency.percentile_ms(95), "cache_hits": self.cache_hits,
                "buffered": len(self._buf), "batches_inflight": len(self._inflight),
                "batch_p95_ms": self._batch_ms.percentile_ms(95),
                "batch_size": self.batch_size, "flush_interval": self.flush_interval,
                "max_concurrency": self.max_concurrency, "closed": self._closed,
            }
        return out

    def __repr__(self) -> str:
        return "<BatchProcessor %r pending=%d>" % (self.name, self._pending)


def _flush_loop(ref: "weakref.ref[BatchProcessor]", lock: Any, cond: Any) -> None:
    """The flusher thread: cuts a batch when the oldest buffered item is flush_interval old. It
    holds the processor only while items are buffered (they keep it alive until dispatched)."""
    bp = ref()
    while bp is not None:
        with lock:
            if bp._closed:
                return
            if not bp._buf:
                bp = None
                if ref() is None:  # this thread dropped the last reference
                    return
                cond.wait(_CHECK)  # submit wakes us when a batch starts
                bp = ref()
                _KEEP.discard(bp)
                continue
            remaining = bp._first_at + bp.flush_interval - bp._clock()
            if remaining > 0:
                cond.wait(remaining)
        bp.tick()


def _after_fork_in_child() -> None:
    for bp in list(_LIVE):
        try:
            bp._after_fork()
        except Exception:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_all() -> None:  # runs before the worker pools' hook (LIFO): buffered items still run
    for bp in list(_LIVE):
        try:
            bp.close(wait=True)
        except Exception:
            pass
