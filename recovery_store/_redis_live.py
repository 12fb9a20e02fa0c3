"""The live-stream half of :class:`~recovery_store.redis.RedisStore` (its layout is
described there): leases (Lua scripts that check the holder's token), the wake-up of
readers (a capped Redis Stream per record, ``XREAD BLOCK``), cancel marks, outcomes, and
the incremental read of a reader.

A mixin, so that ``redis`` keeps to the record itself; it uses the store's client, its
keys and its transactions.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Callable, Dict, Optional, Tuple

from .base import _lease_lost, dump_meta, new_lease_token, validate_stream_id, validate_ttl

__all__ = ["EVENTS_KEPT", "RedisLiveStreams"]

# Only the holder (the token) may extend or end a lease: check and act in one step.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# KEYS: the lease, the outcome; ARGV[1]: the writer's token, or '' for an unfenced clear.
_CLEAR_OUTCOME = """
if ARGV[1] ~= '' and redis.call('get', KEYS[1]) ~= ARGV[1] then
  return -1
end
return redis.call('del', KEYS[2])
"""
#: A reader only needs the newest write, not the history: the events stream stays this short.
EVENTS_KEPT = 16


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _s(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def _ms(ttl: float) -> int:
    return max(1, math.ceil(validate_ttl(ttl) * 1000))


class RedisLiveStreams:
    """Live streams in Redis (mixed into ``RedisStore``)."""

    _redis: Any
    _ttl_ms: int

    def _keys(self, sid: str) -> "tuple[str, str]":
        raise NotImplementedError

    def _key(self, sid: str, suffix: str) -> str:
        raise NotImplementedError

    def _expired(self, updated_at: Any) -> bool:
        raise NotImplementedError

    def _update(self, sid: str, write: Callable[..., None], *fields: str, lease: Optional[str] = None) -> None:
        raise NotImplementedError

    def _register_live_scripts(self) -> None:
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._clear_outcome = self._redis.register_script(_CLEAR_OUTCOME)

    def _announce(self, pipe: Any, sid: str, rev: int) -> None:
        """Queue the revision and the wake-up of the readers (inside a transaction)."""
        events = self._key(sid, "events")
        pipe.xadd(events, {"rev": rev}, maxlen=EVENTS_KEPT, approximate=True)
        pipe.pexpire(events, self._ttl_ms)

    def read_text(self, stream_id: str, cursor: Any = None) -> Optional[Tuple[str, bool, Any]]:
        """Only the bytes appended since ``cursor`` (``(epoch, bytes)`` of the last read,
        ``GETRANGE``) while the head's epoch is the same; else the whole text."""
        validate_stream_id(stream_id)
        head, text = self._keys(stream_id)
        valid = isinstance(cursor, tuple) and len(cursor) == 2 and isinstance(cursor[1], int) and cursor[1] >= 0
        since = cursor[1] if valid else 0
        pipe = self._redis.pipeline(transaction=True)
        pipe.hmget(head, "epoch", "status", "updated_at")
        pipe.getrange(text, since, -1)
        pipe.strlen(text)
        (epoch, status, updated_at), data, length = pipe.execute()
        if status is None or self._expired(updated_at):
            return None
        epoch = _s(epoch) if epoch is not None else None
        if since and (epoch is None or cursor[0] != epoch or since > length):
            return self.read_text(stream_id)  # replaced (or restarted) since: the whole text
        return (_s(data) if data else ""), since == 0, (epoch, int(length)) if epoch is not None else None

    # -- leases ----------------------------------------------------------------------------
    def acquire_lease(self, stream_id: str, ttl: float) -> Optional[str]:
        validate_stream_id(stream_id)
        token = new_lease_token()
        return token if self._redis.set(self._key(stream_id, "lease"), token, nx=True, px=_ms(ttl)) else None

    def renew_lease(self, stream_id: str, token: str, ttl: float) -> bool:
        validate_stream_id(stream_id)
        return bool(self._renew(keys=[self._key(stream_id, "lease")], args=[token, _ms(ttl)]))

    def release_lease(self, stream_id: str, token: str) -> bool:
        validate_stream_id(stream_id)
        return bool(self._release(keys=[self._key(stream_id, "lease")], args=[token]))

    def leased(self, stream_id: str) -> bool:
        validate_stream_id(stream_id)
        return bool(self._redis.exists(self._key(stream_id, "lease")))

    # -- revisions and the wake-up of readers ----------------------------------------------
    def _revision(self, head_values: Any) -> int:
        updated_at, rev = head_values
        if rev is None or self._expired(updated_at):
            return 0
        try:
            return int(_s(rev))
        except ValueError:
            return 0  # damaged by a hand: load says what is wrong; here it is just "unknown"

    def revision(self, stream_id: str) -> int:
        validate_stream_id(stream_id)
        head, _ = self._keys(stream_id)
        return self._revision(self._redis.hmget(head, "updated_at", "rev"))

    def wait_for(self, stream_id: str, after: int, timeout: float) -> int:
        validate_stream_id(stream_id)
        head, _ = self._keys(stream_id)
        events = self._key(stream_id, "events")
        deadline = time.monotonic() + max(0.0, float(timeout))
        while True:
            # The newest event and the revision together: a write after this is an event
            # after ``last``, so XREAD returns at once and no wake-up is lost in between.
            pipe = self._redis.pipeline(transaction=True)
            pipe.xrevrange(events, count=1)
            pipe.hmget(head, "updated_at", "rev")
            newest, values = pipe.execute()
            current = self._revision(values)
            remaining = deadline - time.monotonic()
            if current != after or remaining <= 0:
                return current
            last = _s(newest[0][0]) if newest else "0-0"
            self._redis.xread({events: last}, block=max(1, math.ceil(remaining * 1000)), count=1)

    # -- cancel marks and outcomes ---------------------------------------------------------
    def cancel(self, stream_id: str) -> None:
        validate_stream_id(stream_id)
        self._redis.set(self._key(stream_id, "cancel"), "1", px=self._ttl_ms)
        try:
            self._update(stream_id, lambda *args: None)  # a write: readers see a new revision
        except KeyError:
            pass  # no record (yet): the mark alone stops a producer that starts on it

    def cancelled(self, stream_id: str) -> bool:
        validate_stream_id(stream_id)
        return bool(self._redis.exists(self._key(stream_id, "cancel")))

    def set_outcome(self, stream_id: str, outcome: Dict[str, Any], ttl: float) -> None:
        validate_stream_id(stream_id)
        data = _b(dump_meta(outcome))
        self._redis.set(self._key(stream_id, "outcome"), data, px=_ms(ttl))
        try:
            self._update(stream_id, lambda *args: None)  # a write: readers see a new revision
        except KeyError:
            self._redis.xadd(self._key(stream_id, "events"), {"rev": 0}, maxlen=EVENTS_KEPT, approximate=True)

    def outcome(self, stream_id: str) -> Optional[Dict[str, Any]]:
        validate_stream_id(stream_id)
        data = self._redis.get(self._key(stream_id, "outcome"))
        if data is None:
            return None
        try:
            found = json.loads(_s(data))
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def clear_outcome(self, stream_id: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        keys = [self._key(stream_id, "lease"), self._key(stream_id, "outcome")]
        if self._clear_outcome(keys=keys, args=[lease or ""]) == -1:  # checked and deleted in one step
            raise _lease_lost(stream_id)
