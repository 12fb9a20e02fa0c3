"""An in-process recovery store: for tests, and for apps that only need to survive a
dropped connection (not a dead process).

It follows the exact semantics of the persistent stores, including the JSON round trip of
``meta``: a ``meta`` that works here works on disk and in Redis too.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .base import (
    DEFAULT_TTL,
    RecoveryStore,
    StreamRecord,
    _closed,
    _lease_lost,
    _unknown,
    dump_meta,
    new_lease_token,
    validate_status,
    validate_stream_id,
    validate_text,
    validate_ttl,
)

__all__ = ["MemoryStore"]


class _Entry:
    __slots__ = ("meta_json", "pieces", "status", "updated_at", "deadline", "revision", "epoch", "length")

    def __init__(self, meta_json: str, updated_at: float, deadline: float, revision: int) -> None:
        self.meta_json = meta_json  # kept serialized: every load hands out a fresh copy
        self.pieces: List[str] = []  # list.append keeps append O(len(delta))
        self.status = "streaming"
        self.updated_at = updated_at
        self.deadline = deadline
        self.revision = revision
        self.epoch = revision  # the revision of the last start or replace_text (see read_text)
        self.length = 0  # characters of text


class MemoryStore(RecoveryStore):
    """Records in a dict guarded by a lock; expiry measured on a monotonic clock.

    ``clock`` (default :func:`time.monotonic`) is only used for expiry, so tests can move
    time forward; ``StreamRecord.updated_at`` is always wall-clock :func:`time.time`.
    Expired records are dropped when touched and swept at most once per ``ttl`` (or minute).
    Leases expire on the same clock; readers waiting in ``wait_for`` sleep on a condition
    variable that every write notifies.
    """

    fenced_writes = True  # writes take lease= (see the store contract)

    def __init__(self, ttl: float = DEFAULT_TTL, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = validate_ttl(ttl)
        self._clock = clock
        self._lock = threading.Condition()
        self._entries: Dict[str, _Entry] = {}
        self._leases: Dict[str, Tuple[str, float]] = {}  # stream id -> (token, deadline)
        self._cancels: Dict[str, float] = {}  # stream id -> deadline of the mark
        self._outcomes: Dict[str, Tuple[str, float]] = {}  # stream id -> (JSON, deadline)
        self._revision = 0  # store-wide, so a restarted record never repeats a revision
        self._closed = False
        self._next_sweep = clock() + min(self.ttl, 60.0)

    def __repr__(self) -> str:
        return f"MemoryStore(ttl={self.ttl!r}, records={len(self._entries)})"

    # -- helpers (call with the lock held) ------------------------------------------------
    def _live(self, stream_id: str, now: float) -> Optional[_Entry]:
        if self._closed:
            raise _closed(self)
        entry = self._entries.get(stream_id)
        if entry is not None and now >= entry.deadline:
            del self._entries[stream_id]
            return None
        return entry

    def _writable(self, stream_id: str, now: float, lease: Optional[str] = None) -> _Entry:
        entry = self._live(stream_id, now)
        if entry is None:
            raise _unknown(stream_id)
        if lease is not None and (self._lease(stream_id, now) or ("",))[0] != lease:
            raise _lease_lost(stream_id)
        entry.updated_at = time.time()
        entry.deadline = now + self.ttl
        entry.revision = self._changed()
        return entry

    def _changed(self) -> int:
        self._revision += 1
        self._lock.notify_all()
        return self._revision

    def _lease(self, stream_id: str, now: float) -> Optional[Tuple[str, float]]:
        if self._closed:
            raise _closed(self)
        lease = self._leases.get(stream_id)
        if lease is not None and now >= lease[1]:
            del self._leases[stream_id]
            return None
        return lease

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(self.ttl, 60.0)
        for key in [k for k, e in self._entries.items() if now >= e.deadline]:
            del self._entries[key]
        for key in [k for k, (_, deadline) in self._leases.items() if now >= deadline]:
            del self._leases[key]
        for key in [k for k, deadline in self._cancels.items() if now >= deadline]:
            del self._cancels[key]
        for key in [k for k, (_, deadline) in self._outcomes.items() if now >= deadline]:
            del self._outcomes[key]

    # -- the contract ----------------------------------------------------------------------
    def start(self, stream_id: str, meta: Dict[str, Any]) -> None:
        validate_stream_id(stream_id)
        meta_json = dump_meta(meta)
        with self._lock:
            if self._closed:
                raise _closed(self)
            now = self._clock()
            self._sweep(now)
            self._cancels.pop(stream_id, None)
            self._outcomes.pop(stream_id, None)
            self._entries[stream_id] = _Entry(meta_json, time.time(), now + self.ttl, self._changed())

    def append(self, stream_id: str, text: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        validate_text(text)
        with self._lock:
            entry = self._writable(stream_id, self._clock(), lease)
            if text:
                entry.pieces.append(text)
                entry.length += len(text)

    def replace_text(self, stream_id: str, text: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        validate_text(text)
        with self._lock:
            entry = self._writable(stream_id, self._clock(), lease)
            entry.pieces = [text] if text else []
            entry.length = len(text)
            entry.epoch = entry.revision

    def update_meta(self, stream_id: str, changes: Dict[str, Any], *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        with self._lock:
            entry = self._writable(stream_id, self._clock(), lease)
            entry.meta_json = dump_meta(dict(json.loads(entry.meta_json), **changes))

    def set_status(self, stream_id: str, status: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        validate_status(status)
        with self._lock:
            self._writable(stream_id, self._clock(), lease).status = status

    def load(self, stream_id: str) -> Optional[StreamRecord]:
        validate_stream_id(stream_id)
        with self._lock:
            entry = self._live(stream_id, self._clock())
            if entry is None:
                return None
            if len(entry.pieces) > 1:  # compact, so repeated loads stay cheap
                entry.pieces = ["".join(entry.pieces)]
            return StreamRecord(
                stream_id=stream_id,
                meta=json.loads(entry.meta_json),
                text=entry.pieces[0] if entry.pieces else "",
                status=entry.status,
                updated_at=entry.updated_at,
            )

    def read_text(self, stream_id: str, cursor: Any = None) -> Optional[Tuple[str, bool, Any]]:
        """The text added since ``cursor`` (``(epoch, length)`` of the last read) while no
        ``start``/``replace_text`` came between; else the whole text. O(what is new)."""
        validate_stream_id(stream_id)
        with self._lock:
            entry = self._live(stream_id, self._clock())
            if entry is None:
                return None
            total, pieces = entry.length, entry.pieces
            position = (entry.epoch, total)
            if not (
                isinstance(cursor, tuple) and len(cursor) == 2 and cursor[0] == entry.epoch
                and isinstance(cursor[1], int) and 0 <= cursor[1] <= total
            ):
                return "".join(pieces), True, position
            missing, i, new = total - cursor[1], len(pieces), []
            while missing > 0:  # appends are whole pieces: the new text is the last few
                i -= 1
                new.append(pieces[i])
                missing -= len(pieces[i])
            text = "".join(reversed(new))
            return (text[-missing:] if missing < 0 else text), False, position

    def delete(self, stream_id: str) -> None:
        validate_stream_id(stream_id)
        with self._lock:
            if self._closed:
                raise _closed(self)
            if self._entries.pop(stream_id, None) is not None:
                self._changed()

    # -- live streams ----------------------------------------------------------------------
    def acquire_lease(self, stream_id: str, ttl: float) -> Optional[str]:
        validate_stream_id(stream_id)
        ttl = validate_ttl(ttl)
        with self._lock:
            now = self._clock()
            if self._lease(stream_id, now) is not None:
                return None
            token = new_lease_token()
            self._leases[stream_id] = (token, now + ttl)
            return token

    def renew_lease(self, stream_id: str, token: str, ttl: float) -> bool:
        validate_stream_id(stream_id)
        ttl = validate_ttl(ttl)
        with self._lock:
            now = self._clock()
            lease = self._lease(stream_id, now)
            if lease is None or lease[0] != token:
                return False
            self._leases[stream_id] = (token, now + ttl)
            return True

    def release_lease(self, stream_id: str, token: str) -> bool:
        validate_stream_id(stream_id)
        with self._lock:
            lease = self._lease(stream_id, self._clock())
            if lease is None or lease[0] != token:
                return False
            del self._leases[stream_id]
            return True

    def leased(self, stream_id: str) -> bool:
        validate_stream_id(stream_id)
        with self._lock:
            return self._lease(stream_id, self._clock()) is not None

    def revision(self, stream_id: str) -> int:
        validate_stream_id(stream_id)
        with self._lock:
            entry = self._live(stream_id, self._clock())
            return 0 if entry is None else entry.revision

    def wait_for(self, stream_id: str, after: int, timeout: float) -> int:
        validate_stream_id(stream_id)
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self._lock:
            while True:
                entry = self._live(stream_id, self._clock())
                current = 0 if entry is None else entry.revision
                remaining = deadline - time.monotonic()
                if current != after or remaining <= 0:
                    return current
                self._lock.wait(remaining)

    def cancel(self, stream_id: str) -> None:
        validate_stream_id(stream_id)
        with self._lock:
            now = self._clock()
            if self._live(stream_id, now) is not None:
                self._writable(stream_id, now)  # a write: wakes the readers
            self._cancels[stream_id] = now + self.ttl

    def cancelled(self, stream_id: str) -> bool:
        validate_stream_id(stream_id)
        with self._lock:
            if self._closed:
                raise _closed(self)
            deadline = self._cancels.get(stream_id)
            return deadline is not None and self._clock() < deadline

    def set_outcome(self, stream_id: str, outcome: Dict[str, Any], ttl: float) -> None:
        validate_stream_id(stream_id)
        outcome_json = dump_meta(outcome)
        ttl = validate_ttl(ttl)
        with self._lock:
            now = self._clock()
            if self._live(stream_id, now) is not None:
                self._writable(stream_id, now)
            self._outcomes[stream_id] = (outcome_json, now + ttl)
            self._lock.notify_all()

    def outcome(self, stream_id: str) -> Optional[Dict[str, Any]]:
        validate_stream_id(stream_id)
        with self._lock:
            if self._closed:
                raise _closed(self)
            found = self._outcomes.get(stream_id)
            if found is None or self._clock() >= found[1]:
                return None
            outcome: Dict[str, Any] = json.loads(found[0])
            return outcome

    def clear_outcome(self, stream_id: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        with self._lock:
            if self._closed:
                raise _closed(self)
            if lease is not None and (self._lease(stream_id, self._clock()) or ("",))[0] != lease:
                raise _lease_lost(stream_id)
            self._outcomes.pop(stream_id, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._outcomes.clear()
            self._entries.clear()
            self._leases.clear()
            self._cancels.clear()
            self._lock.notify_all()  # waiting readers find the store closed
