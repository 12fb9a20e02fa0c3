"""An in-process recovery store: for tests, and for apps that only need to survive a
dropped connection (not a dead process).

It follows the exact semantics of the persistent stores, including the JSON round trip of
``meta``: a ``meta`` that works here works on disk and in Redis too.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Callable, Dict, List, Optional

from .base import (
    DEFAULT_TTL,
    RecoveryStore,
    StreamRecord,
    _closed,
    _unknown,
    dump_meta,
    validate_status,
    validate_stream_id,
    validate_text,
    validate_ttl,
)

__all__ = ["MemoryStore"]


class _Entry:
    __slots__ = ("meta_json", "pieces", "status", "updated_at", "deadline")

    def __init__(self, meta_json: str, updated_at: float, deadline: float) -> None:
        self.meta_json = meta_json  # kept serialized: every load hands out a fresh copy
        self.pieces: List[str] = []  # list.append keeps append O(len(delta))
        self.status = "streaming"
        self.updated_at = updated_at
        self.deadline = deadline


class MemoryStore(RecoveryStore):
    """Records in a dict guarded by a lock; expiry measured on a monotonic clock.

    ``clock`` (default :func:`time.monotonic`) is only used for expiry, so tests can move
    time forward; ``StreamRecord.updated_at`` is always wall-clock :func:`time.time`.
    Expired records are dropped when touched and swept at most once per ``ttl`` (or minute).
    """

    def __init__(self, ttl: float = DEFAULT_TTL, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = validate_ttl(ttl)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: Dict[str, _Entry] = {}
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

    def _writable(self, stream_id: str, now: float) -> _Entry:
        entry = self._live(stream_id, now)
        if entry is None:
            raise _unknown(stream_id)
        entry.updated_at = time.time()
        entry.deadline = now + self.ttl
        return entry

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(self.ttl, 60.0)
        for key in [k for k, e in self._entries.items() if now >= e.deadline]:
            del self._entries[key]

    # -- the contract ----------------------------------------------------------------------
    def start(self, stream_id: str, meta: dict) -> None:
        validate_stream_id(stream_id)
        meta_json = dump_meta(meta)
        with self._lock:
            if self._closed:
                raise _closed(self)
            now = self._clock()
            self._sweep(now)
            self._entries[stream_id] = _Entry(meta_json, time.time(), now + self.ttl)

    def append(self, stream_id: str, text: str) -> None:
        validate_stream_id(stream_id)
        validate_text(text)
        with self._lock:
            entry = self._writable(stream_id, self._clock())
            if text:
                entry.pieces.append(text)

    def replace_text(self, stream_id: str, text: str) -> None:
        validate_stream_id(stream_id)
        validate_text(text)
        with self._lock:
            entry = self._writable(stream_id, self._clock())
            entry.pieces = [text] if text else []

    def update_meta(self, stream_id: str, changes: dict) -> None:
        validate_stream_id(stream_id)
        with self._lock:
            entry = self._writable(stream_id, self._clock())
            entry.meta_json = dump_meta(dict(json.loads(entry.meta_json), **changes))

    def set_status(self, stream_id: str, status: str) -> None:
        validate_stream_id(stream_id)
        validate_status(status)
        with self._lock:
            self._writable(stream_id, self._clock()).status = status

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

    def delete(self, stream_id: str) -> None:
        validate_stream_id(stream_id)
        with self._lock:
            if self._closed:
                raise _closed(self)
            self._entries.pop(stream_id, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._entries.clear()
