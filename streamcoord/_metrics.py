"""Stream metrics: cheap counters on the hot path, immutable snapshots for callers, and
one shared timer thread that reports every stream's metrics about once a second.

The counters are always kept (a few integer additions per network read), so
``stream.metrics`` always holds the latest snapshot. Reporting is what ``track_metrics``
turns on: ``on_metrics(snapshot)`` about once a second while the stream runs, also while
nothing arrives (waiting for headers, a retry wait, a stall), and exactly once at the end;
with ``track_metrics=True`` and no ``on_metrics``, the same snapshots are logged at INFO.
The periodic calls are scheduled by one timer thread for all streams (``_Ticker``) and
made by a few caller threads, all started with the first reporting stream and gone with
the last, so a thousand streams cost no thread each, and one slow callback delays only
its own stream's reports; the final call comes from the stream's worker, after the last
periodic one.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Deque, List, Optional, Set, Tuple

if TYPE_CHECKING:
    from streamcoord._stream_metrics import StreamMetrics

__all__ = ["CALLER_IDLE_SECONDS", "MAX_CALLERS", "METRICS_INTERVAL", "MetricsTracker", "on_metrics_thread"]

logger = logging.getLogger("streamcoord")

# on_metrics is called about this often while a stream runs (seconds).
METRICS_INTERVAL = 1.0
# Periodic on_metrics calls that may run at once (each stream has at most one running):
# this many streams can have a slow callback before the others' reports wait for one.
MAX_CALLERS = 8
# A caller thread with no call to make for this long ends (seconds).
CALLER_IDLE_SECONDS = 2 * METRICS_INTERVAL


class MetricsTracker:
    """Counters updated by the worker (once per network read, not per chunk).

    Plain attribute increments only: the worker is the single writer, readers take a
    snapshot, and a torn read of two ints costs at most a momentarily stale figure.
    ``start()`` registers a reporting stream with the timer; ``finish()`` makes the final
    report. A lock keeps a periodic report and the final one from overlapping, so the
    final report is always the last.
    """

    __slots__ = (
        "stream_id", "provider", "status", "started", "ended", "chunks_received", "bytes_received",
        "errors", "first_chunk_at", "retries", "recoveries", "on_metrics", "_lock", "_timed",
    )

    def __init__(
        self, stream_id: str, provider: str, on_metrics: Optional[Callable[[StreamMetrics], Any]],
        log_reports: bool = False,
    ) -> None:
        self.stream_id = stream_id
        self.provider = provider
        self.status = "streaming"
        self.started = time.monotonic()
        self.ended: Optional[float] = None
        self.chunks_received = 0
        self.bytes_received = 0
        self.errors = 0
        self.first_chunk_at: Optional[float] = None
        self.retries = 0
        self.recoveries = 0
        if on_metrics is None and log_reports:
            on_metrics = self._log
        self.on_metrics = on_metrics
        self._lock = threading.Lock()
        self._timed = False  # registered with the timer

    def snapshot(self) -> StreamMetrics:
        from streamcoord._stream_metrics import StreamMetrics  # built on first use: see there

        end = self.ended if self.ended is not None else time.monotonic()
        seconds = max(end - self.started, 1e-9)
        first = self.first_chunk_at
        return StreamMetrics(
            stream_id=self.stream_id,
            provider=self.provider,
            status=self.status,
            duration_ms=round(seconds * 1000.0, 3),
            chunks_received=self.chunks_received,
            bytes_received=self.bytes_received,
            errors=self.errors,
            chunks_per_second=self.chunks_received / seconds,
            bytes_per_second=self.bytes_received / seconds,
            time_to_first_chunk_ms=None if first is None else round((first - self.started) * 1000.0, 3),
            retries=self.retries,
            recoveries=self.recoveries,
        )

    def start(self) -> None:
        """The stream's worker has started: report periodically from now on."""
        self.started = time.monotonic()
        if self.on_metrics is not None and not self._timed:
            self._timed = True
            _TICKER.add(self)

    def report(self) -> bool:
        """The periodic report (from the timer thread); False once the stream has ended."""
        with self._lock:
            if self.ended is not None:
                return False
            self._call(self.snapshot())
            return True

    def finish(self, status: str) -> None:
        """Record the final status; calls ``on_metrics`` exactly once for the end. A
        snapshot is built for that call only: a stream nobody asks metrics of never
        builds one (nor imports its class)."""
        with self._lock:
            if self.ended is not None:
                return
            self.ended = time.monotonic()
            self.status = status
            if self.on_metrics is not None:
                self._call(self.snapshot())
        if self._timed:
            _TICKER.remove(self)

    def _call(self, snap: StreamMetrics) -> None:
        if self.on_metrics is None:
            return
        try:
            self.on_metrics(snap)
        except Exception:  # a broken callback must not break the stream
            logger.exception(
                "on_metrics callback raised; the stream goes on",
                extra={"stream_id": self.stream_id, "provider": self.provider},
            )

    def _log(self, snap: StreamMetrics) -> None:
        logger.info(
            "metrics: %s, %d chunks, %d bytes in %.0f ms (%.0f chunks/s), %d errors, %d retries, %d recoveries",
            snap.status, snap.chunks_received, snap.bytes_received, snap.duration_ms, snap.chunks_per_second,
            snap.errors, snap.retries, snap.recoveries,
            extra={"stream_id": self.stream_id, "provider": self.provider},
        )


class _Ticker:
    """The one timer thread that schedules every reporting stream's periodic call, and
    the few caller threads that make the calls.

    A heap of (when, sequence, tracker); the timer sleeps until the earliest, hands it to
    a caller thread and schedules it again. A stream whose previous call still runs is
    skipped, not queued; so one slow ``on_metrics`` delays only its own stream's reports,
    while the others' go on from another caller thread (up to ``MAX_CALLERS`` at once
    slow; started on demand, gone after ``CALLER_IDLE_SECONDS`` without work or with the
    last stream). An ended tracker is dropped when it comes up. The timer exits when no
    reporting stream is left and is started again by the next one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: List[Tuple[float, int, MetricsTracker]] = []
        self._order = itertools.count()
        self._live = 0
        self.thread: Optional[threading.Thread] = None
        self._jobs: Deque[MetricsTracker] = collections.deque()
        self._calling: Set[int] = set()  # id() of each tracker whose call is pending or running
        self._callers = 0  # caller threads alive
        self._idle = 0  # of them, waiting for a job

    def add(self, tracker: MetricsTracker) -> None:
        with self._cond:
            self._live += 1
            heapq.heappush(self._heap, (tracker.started + METRICS_INTERVAL, next(self._order), tracker))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="streamcoord-metrics", daemon=True)
                self.thread.start()
            else:
                self._cond.notify_all()

    def remove(self, tracker: MetricsTracker) -> None:
        with self._cond:
            self._live -= 1
            if self._live == 0:
                self._heap.clear()
                self._cond.notify_all()  # nothing left to report: let the threads go

    def _run(self) -> None:
        heap = self._heap
        with self._cond:
            while True:
                if self._live == 0 or not heap:
                    self.thread = None
                    return
                due, _, tracker = heap[0]
                now = time.monotonic()
                if due > now:
                    self._cond.wait(due - now)
                    continue
                heapq.heappop(heap)
                if tracker.ended is not None:
                    continue
                if id(tracker) not in self._calling:  # else its last call still runs: skip this one
                    self._calling.add(id(tracker))
                    self._jobs.append(tracker)
                    if len(self._jobs) > self._idle and self._callers < MAX_CALLERS:
                        self._callers += 1
                        threading.Thread(target=self._call_reports, name="streamcoord-metrics-call", daemon=True).start()
                    self._cond.notify_all()
                # At most one report per interval, however late this one was.
                interval = METRICS_INTERVAL
                heapq.heappush(heap, (max(due + interval, now + interval / 2), next(self._order), tracker))

    def _call_reports(self) -> None:
        _caller.active = True
        with self._cond:
            while True:
                if self._jobs:
                    tracker = self._jobs.popleft()
                    self._cond.release()
                    try:
                        tracker.report()
                    except BaseException:  # a caller serves every stream: never lose it to one callback
                        logger.exception("on_metrics raised; the stream goes on")
                    finally:
                        self._cond.acquire()
                        self._calling.discard(id(tracker))
                    continue
                if self._live == 0:
                    break
                self._idle += 1
                woken = self._cond.wait(CALLER_IDLE_SECONDS)
                self._idle -= 1
                if not woken and not self._jobs:
                    break
            self._callers -= 1


_TICKER = _Ticker()
# Marks the caller threads (on_metrics_thread).
_caller = threading.local()
# A forked child (a WSGI server's worker) has no timer thread: it starts its own.
os.register_at_fork(after_in_child=lambda: _Ticker.__init__(_TICKER))


def on_metrics_thread() -> bool:
    """Whether the caller runs inside a periodic on_metrics call."""
    return getattr(_caller, "active", False)
