"""WorkerPool: a priority thread pool with a bounded queue that scales with backlog and reports
itself; AsyncLimiter: bounded concurrency for asyncio code, reporting the same shape.
"""
from __future__ import annotations

import atexit
import bisect
import os
import threading
import time
import weakref
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional

from ._settings import Tunable, check_duration, check_int, check_keys
from ._stats import _CHECK, _KEEP, Clock, LatencyWindow, RateMeter, _wake_all, register_component

__all__ = ["WorkerPool", "QueueFull"]

_now = time.perf_counter
_TINY = 0.0002  # a task this short (seconds) may be taken in a batch with others
_BATCH_BUDGET = 0.002  # a batch running longer than this hands its untouched rest back
_LIVE: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


class QueueFull(Exception):
    """The pool's queue is full (or intake is throttled) and the policy says not to wait longer."""


class WorkerPool(Tunable):
    """Run callables on up to ``max_workers`` threads: ``pool.submit(fn, *a, priority=0)``.

    Lower ``priority`` runs first, FIFO within a priority. At most ``queue_size`` tasks wait; past
    that ``when_full="raise"`` raises ``QueueFull`` and ``"block"`` waits up to ``block_timeout``
    seconds (None: forever) for room. Workers start when the backlog outgrows them and exit after
    ``idle_timeout`` idle seconds, down to ``min_workers``. ``throttle()`` (memory pressure) stops
    intake: submit behaves as if the queue were full while workers keep draining what is queued.
    While recent tasks were tiny (< 0.2 ms) a worker takes a few per visit to the queue (its fair
    share, at most ``batch``) and hands back the untouched rest if a task overruns (2 ms), so an
    urgent task queued meanwhile may wait behind that short batch, never behind a slow one.

    A task running on the pool that submits to it while the queue is full gets ``QueueFull`` at
    once, even with ``"block"``: a worker waiting on its own pool could wait for itself forever.
    Worker threads hold the pool weakly: a pool dropped without ``shutdown()`` is collected once
    its queue is drained, and its workers exit, as ThreadPoolExecutor's do. In a forked
    child the parent's workers do not exist: the pool gets fresh locks, starts workers again on
    the next submit, and drops the tasks queued in the parent (their futures are the parent's;
    they run there and are never resolved in the child).
    """

    kind = "workers"

    def __init__(self, min_workers: int = 1, max_workers: Optional[int] = None,
                 queue_size: int = 1000, when_full: str = "raise",
                 block_timeout: Any = None, idle_timeout: Any = 30.0, batch: int = 32,
                 name: Optional[str] = None, register: bool = True,
                 clock: Clock = time.monotonic) -> None:
        self.name = name or "workers"
        self._reset()
        self._stopping = False
        self._throttled = False
        self._seq = 0
        self._task_cost: Optional[float] = None  # recent mean run time of one task (EWMA)
        self.completed = self.failed = self.rejected = self.cancelled = 0
        self._latency = LatencyWindow()
        self._rate = RateMeter(clock=clock)
        self.min_workers, self.max_workers, self.queue_size = 0, 1, 1
        self.when_full, self.block_timeout, self.idle_timeout = "raise", None, None
        self.batch = 1
        self._set(dict(min_workers=min_workers, max_workers=max_workers or os.cpu_count() or 1,
                         queue_size=queue_size, when_full=when_full,
                         block_timeout=block_timeout, idle_timeout=idle_timeout, batch=batch))
        register_component(self, register)
        _LIVE.add(self)
        with self._mutex:
            while self._nworkers < self.min_workers:
                self._spawn()

    def _reset(self) -> None:
        """Locks, queue and thread state, new (at start and, see the class doc, in a forked
        child). ``_ref`` is all a worker thread holds; its callback wakes the idle workers so
        they exit as soon as the pool is collected (``_wake`` bound now: at interpreter exit
        the module's globals may already be None)."""
        self._mutex = mutex = threading.Lock()
        self._work = work = threading.Condition(mutex)  # idle workers wait here
        self._room = threading.Condition(mutex)  # blocked submitters wait here
        self._ref = weakref.ref(self, lambda _ref, _wake=_wake_all: _wake(mutex, work))
        self._queues: Dict[int, Deque[tuple]] = {}
        self._prios: List[int] = []  # priorities whose deque is non-empty, ascending
        self._queued = 0
        self._threads: set = set()
        self._nworkers = self._active = self._idle_waiting = self._wakeups = self._blocked = 0

    # -- settings -----------------------------------------------------------------------------
    def _current_settings(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in _SETTINGS}

    def _checked(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """The whole new set, every value checked strictly (ValueError naming the key; unknown
        keys too); changes nothing."""
        owner = "worker pool %r" % self.name
        check_keys(owner, values, _SETTINGS)
        new = self._current_settings()
        for key, value in values.items():
            if key in ("block_timeout", "idle_timeout"):
                value = check_duration(owner, key, value, none_ok=True)
            elif key == "max_workers" and value is None:  # as in the constructor
                value = os.cpu_count() or 1
            elif key == "when_full":
                if value not in ("raise", "block"):
                    raise ValueError("%s: when_full is 'raise' or 'block', not %r"
                                     % (owner, value))
            else:
                value = check_int(owner, key, value, 0 if key == "min_workers" else 1)
            new[key] = value
        if new["min_workers"] > new["max_workers"]:
            raise ValueError("%s: need min_workers <= max_workers, got %d/%d"
                             % (owner, new["min_workers"], new["max_workers"]))
        return new

    def configure(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """Retune live; returns what changed. A bad value raises ValueError and changes nothing.
        Fewer max_workers: the surplus exit as they go idle; more room: blocked submitters wake."""
        with self._mutex:
            changed = self._set(values)
            while self._nworkers < self.min_workers and not self._stopping:
                self._spawn()
            self._work.notify_all()
            self._room.notify_all()
        return changed

    # -- intake -------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, priority: int = 0,
               **kwargs: Any) -> "Future[Any]":
        """Queue ``fn(*args, **kwargs)``; returns its Future. Raises QueueFull (see class doc)
        and RuntimeError after shutdown."""
        f: Future = Future()
        item = (fn, args, kwargs, f, _now(), priority)
        with self._mutex:
            if self._queued >= self.queue_size or self._throttled or self._stopping:
                self._wait_for_room()
            q = self._queues.get(priority)
            if not q:
                q = self._open(priority)
            q.append(item)
            self._queued += 1
            if self._idle_waiting > self._wakeups:
                # wake one sleeper per task only while sleepers outnumber wake-ups on their way
                self._wakeups += 1
                _KEEP.add(self)
                self._work.notify()
            elif self._nworkers < self.max_workers and self._queued > self._nworkers:
                self._spawn()
            while self._nworkers < self.min_workers:  # only after a fork: start them again
                self._spawn()
        return f

    def _open(self, priority: int) -> Deque[tuple]:
        q = self._queues.get(priority)
        if q is None:
            if len(self._queues) > 64:  # forget drained priorities (callers may use many)
                for p in [p for p, d in self._queues.items() if not d]:
                    del self._queues[p]
            q = self._queues[priority] = deque()
        bisect.insort(self._prios, priority)
        return q

    def _wait_for_room(self) -> None:
        """Under the mutex: return once a task may be queued, else raise."""
        deadline = None
        while True:
            if self._stopping:
                raise RuntimeError("worker pool %r is shut down; cannot submit" % self.name)
            if self._queued < self.queue_size and not self._throttled:
                return
            if self.when_full == "block" and self._queued >= self.queue_size and \
                    threading.current_thread() in self._threads:
                self.rejected += 1
                raise QueueFull("worker pool %r rejected a task submitted by one of its own "
                                "workers: its queue is full (%d of queue_size %d) and a worker "
                                "cannot wait on its own pool (it may be the one that has to make "
                                "room); raise queue_size or submit from outside the pool"
                                % (self.name, self._queued, self.queue_size))
            if self.when_full == "block":
                if deadline is None and self.block_timeout is not None:
                    deadline = _now() + self.block_timeout
                remaining = None if deadline is None else deadline - _now()
                if remaining is None or remaining > 0:
                    self._blocked += 1
                    try:
                        self._room.wait(remaining)
                    finally:
                        self._blocked -= 1
                    continue
            self.rejected += 1
            why = ("intake is throttled (memory pressure)" if self._throttled else
                   "its queue is full (%d of queue_size %d)" % (self._queued, self.queue_size))
            waited = (" after waiting %.3gs" % self.block_timeout) if self.when_full == "block" \
                else ""
            raise QueueFull("worker pool %r rejected a task: %s%s; raise queue_size, use "
                            "when_full='block', or slow the producer" % (self.name, why, waited))

    def throttle(self, on: bool = True) -> bool:
        """Stop (or resume) intake; queued work keeps running. Returns whether it changed."""
        with self._mutex:
            changed = self._throttled != bool(on)
            self._throttled = bool(on)
            if not on:
                self._room.notify_all()
        return changed

    # -- workers ------------------------------------------------------------------------------
    def _spawn(self) -> None:
        """Under the mutex."""
        self._seq += 1
        _KEEP.add(self)
        t = threading.Thread(target=_work_loop, args=(self._ref, self._mutex, self._work),
                             name="memtui-%s-%d" % (self.name, self._seq),
                             daemon=True)  # exit joins them (atexit below), as TPE does
        self._nworkers += 1
        self._threads.add(t)
        t.start()

    def _take(self) -> List[tuple]:
        """Under the mutex: this worker's share of the queue, most urgent first. Only while
        recent tasks were tiny is the share more than one task: a batch saves lock round trips
        but would hold tasks back behind a slow one."""
        cost = self._task_cost
        want = 1 if cost is None or cost > _TINY else \
            min(self.batch, self._queued // self._nworkers + 1)
        batch: List[tuple] = []
        prios, queues = self._prios, self._queues
        while len(batch) < want and prios:
            need = want - len(batch)
            p = prios[0]
            q = queues[p]
            if len(q) <= need:
                queues[p] = deque()
                del prios[0]
                batch.extend(q)
            elif need == 1:
                batch.append(q.popleft())
            else:
                pop = q.popleft
                batch.extend([pop() for _ in range(need)])
        self._queued -= len(batch)
        return batch

    def _give_back(self, rest: List[tuple]) -> None:
        """Return untouched tasks to the front of their queues (a slow task overran the batch)."""
        with self._mutex:
            for item in reversed(rest):
                q = self._queues.get(item[5])
                if not q:
                    q = self._open(item[5])
                q.appendleft(item)
            self._queued += len(rest)
            n = min(len(rest), self._idle_waiting - self._wakeups)
            if n > 0:
                self._wakeups += n
                self._work.notify(n)

    # -- shutdown -----------------------------------------------------------------------------
    def shutdown(self, wait: bool = True, cancel_pending: bool = False) -> None:
        """Stop intake; run what is queued (or cancel it); with *wait*, return only when every
        worker thread has exited."""
        with self._mutex:
            self._stopping = True
            if cancel_pending:
                for q in self._queues.values():
                    for item in q:
                        if item[3].cancel():
                            self.cancelled += 1
                    q.clear()
                self._prios.clear()
                self._queued = 0
            self._work.notify_all()
            self._room.notify_all()
        if wait:
            me = threading.current_thread()
            while True:
                with self._mutex:
                    threads = [t for t in self._threads if t is not me]
                if not threads:
                    break
                for t in threads:
                    t.join()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown(wait=True)

    # -- reporting ----------------------------------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        with self._mutex:
            workers, active, queued = self._nworkers, self._active, self._queued
            p50 = self._latency.percentile_ms(50)
            p95 = self._latency.percentile_ms(95)
            rate = self._rate.per_second()
        return {
            "active": active, "idle": max(0, workers - active), "queued": queued,
            "queue_size": self.queue_size, "min_workers": self.min_workers,
            "max_workers": self.max_workers, "completed": self.completed, "failed": self.failed,
            "rejected": self.rejected, "latency_p50_ms": p50, "latency_p95_ms": p95,
            "throughput_per_s": rate, "throttled": self._throttled, "workers": workers,
            "cancelled": self.cancelled, "blocked_submitters": self._blocked,
            "shutdown": self._stopping,
        }

    def __repr__(self) -> str:
        return "<WorkerPool %r workers=%d queued=%d>" % (self.name, self._nworkers, self._queued)


def _work_loop(ref: "weakref.ref[WorkerPool]", mutex: Any, work: Any) -> None:
    """A worker thread. It holds its pool only while there is work: idle, it keeps the weak
    reference alone, so a dropped pool is collected and the worker exits."""
    me = threading.current_thread()
    pool = ref()
    _KEEP.discard(pool)
    lat = pool._latency if pool is not None else None
    done = failed = 0
    lats: List[float] = []
    busy = False
    began = ended = 0.0
    try:
        while pool is not None:
            with mutex:
                if busy:
                    busy = False
                    pool._active -= 1
                    pool.completed += done
                    pool.failed += failed
                    pool._rate.mark(done + failed)
                    per_task = (ended - began) / max(1, len(lats))
                    cost = pool._task_cost
                    pool._task_cost = per_task if cost is None else 0.7 * cost + 0.3 * per_task
                    for x in lats:
                        lat.add(x)  # type: ignore[union-attr]
                    lats.clear()
                    done = failed = 0
                idle_until = -1.0
                while not pool._queued:
                    if pool._stopping or pool._nworkers > pool.max_workers:
                        return
                    now = _now()
                    timeout = pool.idle_timeout
                    if idle_until < 0.0 or now >= idle_until:
                        if idle_until >= 0.0 and pool._nworkers > pool.min_workers:
                            return  # idle for idle_timeout
                        idle_until = now + (timeout if timeout is not None else 1e18)
                    pool._idle_waiting += 1
                    pool = None  # wait holding only the weak reference
                    if ref() is None:  # this thread dropped the last one
                        work.notify_all()
                        return
                    notified = work.wait(min(_CHECK, idle_until - now))
                    pool = ref()
                    if pool is None:
                        return
                    _KEEP.discard(pool)
                    pool._idle_waiting -= 1
                    if pool._wakeups:
                        pool._wakeups -= 1
                    if notified:
                        idle_until = -1.0
                batch = pool._take()
                pool._active += 1
                busy = True
                if pool._blocked:
                    pool._room.notify(len(batch))
            began = ended = _now()
            left = len(batch)
            for fn, args, kwargs, f, t, _ in batch:
                left -= 1
                if not f.set_running_or_notify_cancel():
                    continue
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    f.set_exception(exc)
                    failed += 1
                else:
                    f.set_result(result)
                    done += 1
                ended = _now()
                lats.append(ended - t)
                if left and ended - began > _BATCH_BUDGET:
                    pool._give_back(batch[-left:])
                    break
            # drop references to the last task before sleeping
            batch = fn = args = kwargs = f = result = None  # type: ignore
    finally:
        if pool is not None:
            with mutex:
                pool._nworkers -= 1
                pool._threads.discard(me)
                if busy:  # only when a BaseException escaped the loop above
                    pool._active -= 1
                    pool.completed += done
                    pool.failed += failed
                if pool._queued and not pool._stopping and pool._nworkers == 0:
                    pool._spawn()  # never strand queued work


def _after_fork_in_child() -> None:
    _KEEP.clear()
    for pool in list(_LIVE):
        try:
            pool._reset()
        except Exception:  # pragma: no cover - one pool must not stop the child
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

_SETTINGS = ("min_workers", "max_workers", "queue_size", "when_full", "block_timeout",
             "idle_timeout", "batch")


@atexit.register
def _shutdown_all() -> None:  # finish queued work at exit, as ThreadPoolExecutor does
    for pool in list(_LIVE):
        try:
            pool.shutdown(wait=True)
        except Exception:
            pass

WorkerPool.SETTINGS = _SETTINGS  # the keys configure() takes; the agent passes profiles only these
