"""The feed: one thread that polls the agent and hands each finished poll over as a Sample.

Polls never overlap — the next one is scheduled only after the last returned (dolphie's
WorkerManager habit). A lost agent is retried with a growing pause and reported, never raised.
No textual here: the app passes two callbacks that post messages."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Tuple

from ..protocol import AgentError, RemoteError, sentence
from .model import Connection, History, Sample, freeze

SampleCallback = Callable[[Sample], None]
ConnectionCallback = Callable[[Connection], None]

MIN_INTERVAL = 0.25
MAX_INTERVAL = 10.0
RETRY_DELAYS = (0.5, 1.0, 2.0, 2.0, 5.0)  # then every 5 s
HISTORY_CAPACITY = 600
EVENTS_CAPACITY = 1000


class Feed:
    """Polls *client* every *interval* seconds on its own thread (see :meth:`start`)."""

    def __init__(self, client: Any, on_sample: SampleCallback,
                 on_connection: ConnectionCallback, interval: float = 1.0,
                 tuner_every: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.on_sample = on_sample
        self.on_connection = on_connection
        self.interval = clamp_interval(interval)
        self.tuner_every = tuner_every
        self.clock = clock
        self.paused = False
        self.want_snapshot_status = False
        self.want_recommendations = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._seq = 0
        self._started_at: Any = None
        self._history = History()
        self._events: Tuple[Any, ...] = ()
        self._events_seq = 0
        self._recs: Tuple[Any, ...] = ()
        self._recs_at = float("-inf")
        self._tuner_ok = True
        self.connection = Connection("live" if getattr(client, "connected", False)
                                     else "connecting", since=clock())

    # control (any thread) -------------------------------------------------------------------
    def start(self) -> "Feed":
        self._thread = threading.Thread(target=self._run, name="memtui-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def poll_now(self) -> None:
        """Poll as soon as the current poll (if any) is done: after an action, say."""
        self._wake.set()

    def set_interval(self, seconds: float) -> float:
        self.interval = clamp_interval(seconds)
        self._wake.set()
        return self.interval

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        self.on_connection(self.connection)  # the app learns where we start (live or not)
        attempt = 0
        while not self._stop.is_set():
            if self.paused:
                self._sleep(self.interval)
                continue
            started = time.monotonic()
            try:
                if not self.client.connected:
                    self.client.connect()
                    self._set_connection("live", "")
                sample = self._poll(started)
            except AgentError as exc:
                self._lost(sentence(exc), attempt)
                attempt += 1
                continue
            except Exception as exc:  # noqa: BLE001 - a bad reply must show, not kill the feed
                self._lost("Unexpected reply from the agent (%s: %s)."
                           % (type(exc).__name__, exc), attempt)
                attempt += 1
                continue
            attempt = 0
            if self.connection.state != "live":
                self._set_connection("live", "")
            self.on_sample(sample)
            wait = self.interval
            if self.want_snapshot_status:
                wait = min(wait, MIN_INTERVAL)
            self._sleep(max(0.0, wait - (time.monotonic() - started)))

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _lost(self, message: str, attempt: int) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a broken socket may fail; we reconnect anyway
            pass
        delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
        # Never reached yet (`memtui run` waiting for its command's agent): still connecting.
        state = "lost" if self._seq else "connecting"
        self._set_connection(state, message, attempts=attempt + 1, retry_in=delay)
        self._stop.wait(delay)

    def _set_connection(self, state: str, message: str, attempts: int = 0,
                        retry_in: float = 0.0) -> None:
        self.connection = Connection(state, message, self.clock(), attempts, retry_in)
        self.on_connection(self.connection)

    def _poll(self, started: float) -> Sample:
        client = self.client
        info = dict(client.info or {})
        if info.get("started_at") != self._started_at:  # a new agent: start the record over
            self._started_at = info.get("started_at")
            self._history, self._events, self._events_seq = History(), (), 0
            self._recs, self._recs_at = (), float("-inf")
        stats = client.stats()
        hist = client.history(since=self._history.last_seq, limit=HISTORY_CAPACITY)
        self._history = self._history.extended(hist.get("fields") or (), hist.get("rows") or (),
                                               HISTORY_CAPACITY)
        ev = client.events(since=self._events_seq, limit=EVENTS_CAPACITY)
        new = tuple(freeze(e) for e in ev.get("events") or ())
        if new:
            self._events = (self._events + new)[-EVENTS_CAPACITY:]
        self._events_seq = int(ev.get("last_seq") or self._events_seq)
        now = time.monotonic()
        agent = info.get("mode") != "external"  # an external view has no tuner, no snapshots
        if agent and self.want_recommendations and self._tuner_ok and \
                now - self._recs_at >= self.tuner_every:
            self._recs_at = now
            try:
                self._recs = tuple(freeze(r) for r in client.request("tuner.recommend") or ())
            except RemoteError as exc:  # an older agent without the op: stop asking
                if exc.code == "unknown_op":
                    self._tuner_ok = False
                else:
                    raise
        status = None
        if self.want_snapshot_status and agent:
            status = freeze(client.snapshot_status())
        self._seq += 1
        return Sample(seq=self._seq, received=self.clock(),
                      poll_ms=(time.monotonic() - started) * 1000.0, info=freeze(info),
                      stats=freeze(stats), history=self._history, events=self._events,
                      recommendations=self._recs, snapshot_status=status)


def clamp_interval(seconds: float) -> float:
    return max(MIN_INTERVAL, min(MAX_INTERVAL, float(seconds)))

