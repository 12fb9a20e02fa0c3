"""``Handoff``: the bounded queue between a stream's worker and its consumer.

The part of ``queue.Queue`` a stream uses (``put``/``put_nowait``/``get``/``get_nowait``,
raising ``queue.Full``/``queue.Empty``), built for one producer and one consumer so that a
hand-over costs one thread wake at most, and none while the consumer is busy:

- the items are a ``deque`` under one plain lock, held only to look at it and the flags;
- a side that must wait says so (``_consumer_waiting``/``_producer_waiting``) and blocks on
  a lock of its own, which the other side releases once, after leaving the shared lock.

``queue.Queue`` woke a waiting consumer twice per item (its condition's waiter lock, then
the condition's mutex, still held by the notifying producer) and built a lock per wait;
on loopback that was ~1.5 us of CPU per handed-over batch (benchmarks/bench_throughput.py,
one HTTP chunk per event).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any, Deque, Optional

__all__ = ["Handoff"]


class Handoff:
    """A bounded FIFO for one producer thread and one consumer thread."""

    __slots__ = ("_consumer_waiting", "_items", "_lock", "_maxsize", "_producer_waiting", "_room", "_wake")

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._items: Deque[Any] = deque()
        self._lock = threading.Lock()
        # Each is held (acquired) while nobody is to be woken; the other side releases it
        # once to wake a side that set its waiting flag.
        self._wake = threading.Lock()  # the consumer waits here for an item
        self._wake.acquire()
        self._room = threading.Lock()  # the producer waits here for room
        self._room.acquire()
        self._consumer_waiting = False
        self._producer_waiting = False

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        """Add ``item`` whether or not there is room (the end marker, after a drain)."""
        with self._lock:
            self._items.append(item)
            wake = self._consumer_waiting
            self._consumer_waiting = False
        if wake:
            self._wake.release()

    def put(self, item: Any, timeout: Optional[float] = None) -> None:
        """Add ``item``, waiting while the queue is full (at most ``timeout`` seconds, then
        ``queue.Full``)."""
        while True:
            with self._lock:
                if len(self._items) < self._maxsize:
                    self._items.append(item)
                    wake = self._consumer_waiting
                    self._consumer_waiting = False
                    break
                self._producer_waiting = True
            if not self._wait(self._room, timeout, "_producer_waiting"):
                raise queue.Full
        if wake:
            self._wake.release()

    def get_nowait(self) -> Any:
        return self.get(timeout=0.0)

    def get(self, timeout: Optional[float] = None) -> Any:
        """The oldest item, waiting for one (at most ``timeout`` seconds, then ``queue.Empty``)."""
        while True:
            with self._lock:  # nothing in here allocates: a collection here could run a finalizer
                items = self._items
                if items:
                    item = items.popleft()
                    room = self._producer_waiting
                    self._producer_waiting = False
                    break
                waiting = timeout is None or timeout > 0
                if waiting:  # a get_nowait (a drain from another thread) leaves a waiting consumer's flag alone
                    self._consumer_waiting = True
            if not waiting or not self._wait(self._wake, timeout, "_consumer_waiting"):
                raise queue.Empty
        if room:
            self._room.release()
        return item

    def _wait(self, gate: "threading.Lock", timeout: Optional[float], flag: str) -> bool:
        """Block on ``gate`` until the other side releases it; False after ``timeout``.
        The caller set ``flag`` under the lock; whoever clears it owns the wake-up."""
        if gate.acquire(timeout=-1 if timeout is None else timeout):
            return True
        with self._lock:
            if getattr(self, flag):  # nobody woke us: withdraw
                setattr(self, flag, False)
                return False
        # The other side cleared the flag and is about to release the gate (or just did):
        # take that release, so the gate is held again for the next wait.
        gate.acquire()
        return True
