"""The live-stream half of :class:`~recovery_store.disk.DiskStore` (its layout is described
there): leases, revisions, cancel marks, outcomes, and the incremental read of a reader.

A mixin, so that ``disk`` keeps to the record itself; it uses the store's cache, its
transactions and its head helpers.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

import diskcache

from .base import _closed, _lease_lost, dump_meta, new_lease_token, validate_stream_id, validate_ttl

__all__ = ["WAIT_POLL_INTERVAL", "DiskLiveStreams"]

#: How often ``wait_for`` looks at the database: a reader in another process sees a write
#: at most this late (plus one read), for one small indexed SELECT per reader per tick.
WAIT_POLL_INTERVAL = 0.02


class DiskLiveStreams:
    """Live streams on a diskcache directory (mixed into ``DiskStore``)."""

    _cache: diskcache.Cache
    _closed: bool
    ttl: float

    def _txn(self) -> Any:
        raise NotImplementedError

    def _head(self, sid: str) -> Optional[Dict[str, Any]]:
        raise NotImplementedError

    def _write_head(self, sid: str, head: Dict[str, Any]) -> None:
        raise NotImplementedError

    def read_text(self, stream_id: str, cursor: Any = None) -> Optional[Tuple[str, bool, Any]]:
        """Only the pieces appended since ``cursor`` (``(epoch, pieces)`` of the last read)
        while the head's epoch is the same; else the whole text. One transaction."""
        validate_stream_id(stream_id)
        with self._txn():
            head = self._head(stream_id)
            if head is None:
                return None
            epoch, count = head.get("epoch"), head["n"]
            since = 0
            if (
                epoch is not None and isinstance(cursor, (list, tuple)) and len(cursor) == 2
                and cursor[0] == epoch and isinstance(cursor[1], int) and 0 <= cursor[1] <= count
            ):
                since = cursor[1]
            pieces = [self._cache.get(f"p:{stream_id}:{i}") for i in range(since, count)]
        if any(not isinstance(piece, str) for piece in pieces):
            return None  # incomplete or damaged: load() says what is wrong
        return "".join(pieces), since == 0, (epoch, count) if epoch is not None else None

    # -- live streams ----------------------------------------------------------------------
    def acquire_lease(self, stream_id: str, ttl: float) -> Optional[str]:
        validate_stream_id(stream_id)
        ttl = validate_ttl(ttl)
        with self._txn():  # SQLite's write lock: one acquirer at a time, across processes
            if self._lease_holder(stream_id) is not None:
                return None
            token = new_lease_token()
            self._write_lease(stream_id, token, ttl)
            return token

    def renew_lease(self, stream_id: str, token: str, ttl: float) -> bool:
        validate_stream_id(stream_id)
        ttl = validate_ttl(ttl)
        with self._txn():
            if self._lease_holder(stream_id) != token:
                return False
            self._write_lease(stream_id, token, ttl)
            return True

    def release_lease(self, stream_id: str, token: str) -> bool:
        validate_stream_id(stream_id)
        with self._txn():
            if self._lease_holder(stream_id) != token:
                return False
            return bool(self._cache.delete("l:" + stream_id))

    def leased(self, stream_id: str) -> bool:
        validate_stream_id(stream_id)
        if self._closed:
            raise _closed(self)
        return self._lease_holder(stream_id, retry=True) is not None

    # A lease is timed on CLOCK_MONOTONIC (time.monotonic), never on the wall clock that
    # diskcache's expire uses: a clock step (NTP, a user) must not end a live producer's
    # lease and give the stream two owners. CLOCK_MONOTONIC is one clock for the whole
    # machine on Linux, macOS and Windows, so every process sharing this directory reads
    # the same deadline the same way. It starts over at boot: a deadline more than its ttl
    # ahead cannot have been written on this boot, so its holder is gone.
    def _write_lease(self, sid: str, token: str, ttl: float) -> None:
        lease = {"token": token, "until": time.monotonic() + ttl, "ttl": ttl}
        # diskcache's (wall-clock) expiry only reclaims the space of a dead holder's lease,
        # long after the lease itself has ended.
        self._cache.set("l:" + sid, lease, expire=max(self.ttl, ttl))

    def _lease_holder(self, sid: str, retry: bool = False) -> Optional[str]:
        """The token of the live lease on ``sid``, or None (free, ended, or damaged);
        a write with ``lease=`` checks it in its own transaction."""
        lease = self._cache.get("l:" + sid, retry=retry)
        if not isinstance(lease, dict):
            return None
        token, until, ttl = lease.get("token"), lease.get("until"), lease.get("ttl")
        if not isinstance(token, str) or not isinstance(until, (int, float)) or not isinstance(ttl, (int, float)):
            return None  # damaged by a hand: free
        left = until - time.monotonic()
        return token if 0 < left <= ttl else None

    def revision(self, stream_id: str) -> int:
        validate_stream_id(stream_id)
        if self._closed:
            raise _closed(self)
        head = self._head(stream_id)
        rev = head.get("rev", 0) if head is not None else 0
        return rev if isinstance(rev, int) and not isinstance(rev, bool) else 0

    def wait_for(self, stream_id: str, after: int, timeout: float) -> int:
        deadline = time.monotonic() + max(0.0, float(timeout))
        while True:
            current = self.revision(stream_id)
            remaining = deadline - time.monotonic()
            if current != after or remaining <= 0:
                return current
            time.sleep(min(WAIT_POLL_INTERVAL, remaining))

    def cancel(self, stream_id: str) -> None:
        validate_stream_id(stream_id)
        with self._txn():
            self._cache.set("x:" + stream_id, True, expire=self.ttl)
            head = self._head(stream_id)
            if head is not None:
                self._write_head(stream_id, head)  # a write: readers see a new revision

    def cancelled(self, stream_id: str) -> bool:
        validate_stream_id(stream_id)
        if self._closed:
            raise _closed(self)
        return self._cache.get("x:" + stream_id, retry=True) is not None

    def set_outcome(self, stream_id: str, outcome: Dict[str, Any], ttl: float) -> None:
        validate_stream_id(stream_id)
        dump_meta(outcome)
        ttl = validate_ttl(ttl)
        with self._txn():
            self._cache.set("o:" + stream_id, outcome, expire=ttl)
            head = self._head(stream_id)
            if head is not None:
                self._write_head(stream_id, head)
            else:  # the record is gone: a new store-wide revision still tells pollers
                self._cache.set("revision", self._cache.get("revision", 0) + 1, expire=2 * self.ttl)

    def outcome(self, stream_id: str) -> Optional[Dict[str, Any]]:
        validate_stream_id(stream_id)
        if self._closed:
            raise _closed(self)
        found = self._cache.get("o:" + stream_id, retry=True)
        return found if isinstance(found, dict) else None


    def clear_outcome(self, stream_id: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        with self._txn():  # the lease checked in the same transaction as the delete
            if lease is not None and self._lease_holder(stream_id) != lease:
                raise _lease_lost(stream_id)
            self._cache.delete("o:" + stream_id)
