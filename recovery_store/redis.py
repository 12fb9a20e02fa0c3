"""A recovery store in Redis, for several web nodes or machines sharing resumable streams.

Layout, per stream, under ``prefix`` (default ``"streamcoord:"``):

* ``{prefix}{id}:head``: a hash with ``meta`` (JSON text), ``status`` and ``updated_at``;
  an append only rewrites ``updated_at``, never the (possibly large) meta.
* ``{prefix}{id}:text``: a string grown with ``APPEND``, so an append costs O(len(delta))
  and ``load`` is a single ``GET``.

Live streams add, beside the record (which older versions still read as before):

* ``rev`` in the head: the store-wide counter ``{prefix}revision`` (``INCR``) at the last
  write, and an entry in the Redis Stream ``{prefix}{id}:events`` (``XADD``, capped) in
  the same transaction, so a reader blocks in ``XREAD BLOCK`` until a write lands.
* ``{prefix}{id}:lease``: the holder's token, taken with ``SET NX PX`` and renewed or
  released by Lua scripts that first check the token, so only the holder can; Redis's
  own expiry ends it, whatever the clocks of the machines say.
* A write with ``lease=token`` also WATCHes ``{prefix}{id}:lease`` and checks the token
  before ``MULTI``: a producer that lost its lease writes nothing (``LeaseLost``).
* ``{prefix}{id}:cancel``: the cancel mark, ``SET PX ttl``; ``{prefix}{id}:outcome``: how
  the generation ended (JSON), ``SET PX``.

That code (leases, the wake-up of readers, cancel marks, outcomes and the incremental read
of a reader) is in ``_redis_live``; this module keeps to the record itself.

Both record keys get ``PEXPIRE ttl`` on every write. Writes to an existing record run as
optimistic transactions (``WATCH`` the head, check it, then ``MULTI``/``EXEC``), so an
append can never resurrect a record that was deleted or expired meanwhile.

The ``redis`` package is an optional extra, imported only when a store is created.
Strings are sent as UTF-8 bytes (``surrogatepass``) and decoded here, so the store works
whatever ``decode_responses`` setting a client passed in ``client=`` has.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from typing import Any, Callable, Dict, Optional

from ._redis_live import RedisLiveStreams, _b, _s
from .base import (
    DEFAULT_TTL,
    RecoveryStore,
    StreamRecord,
    _closed,
    _lease_lost,
    _unknown,
    dump_meta,
    validate_status,
    validate_stream_id,
    validate_text,
    validate_ttl,
)

__all__ = ["RedisStore"]


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise ImportError(
            "RedisStore needs the 'redis' package, an optional extra: pip install streamcoord[redis]"
        ) from exc
    return redis


class RedisStore(RedisLiveStreams, RecoveryStore):
    """Recovery records in Redis. Thread-safe (redis-py pools connections).

    ``client`` may be an existing ``redis.Redis``; then ``url`` is ignored and ``close()``
    leaves that client open. ``clock`` (default :func:`time.time`) stamps ``updated_at``
    and decides expiry on ``load``; Redis's own ``PEXPIRE`` reclaims the keys.
    """

    fenced_writes = True  # writes take lease= (see the store contract)

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        ttl: float = DEFAULT_TTL,
        prefix: str = "streamcoord:",
        *,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = validate_ttl(ttl)
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        self.prefix = prefix
        self._clock = clock
        self._ttl_ms = max(1, math.ceil(self.ttl * 1000))
        if client is None:
            self._redis = _import_redis().Redis.from_url(url)
            self._owns_client = True
            self._url: Optional[str] = url
        else:
            self._redis = client
            self._owns_client = False
            self._url = None
        self._closed = False
        self._register_live_scripts()

    def __repr__(self) -> str:
        where = "client=..." if self._url is None else repr(_redact_url(self._url))
        return f"RedisStore({where}, ttl={self.ttl!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> Any:
        """The underlying ``redis.Redis`` client."""
        return self._redis

    # -- helpers ---------------------------------------------------------------------------
    def _keys(self, sid: str) -> "tuple[str, str]":
        if self._closed:
            raise _closed(self)
        return f"{self.prefix}{sid}:head", f"{self.prefix}{sid}:text"

    def _key(self, sid: str, suffix: str) -> str:
        if self._closed:
            raise _closed(self)
        return f"{self.prefix}{sid}:{suffix}"

    def _expired(self, updated_at: Any) -> bool:
        return updated_at is None or self._clock() - float(_s(updated_at)) >= self.ttl

    def _update(
        self, sid: str, write: Callable[[Any, str, str, Dict[str, Any]], None], *fields: str,
        lease: Optional[str] = None,
    ) -> None:
        """Run ``write(pipe, head, text, values)`` in a transaction on an existing record.

        ``values`` holds the head's ``updated_at`` and ``fields``; ``KeyError`` if the record
        is unknown or expired, ``LeaseLost`` if ``lease`` is given and is not the lease's
        token. ``write`` queues commands; the stamp and expiries are added.
        """
        head, text = self._keys(sid)
        names = ("updated_at",) + fields
        lease_key = self._key(sid, "lease")
        watched = [head, lease_key] if lease is not None else [head]

        def txn(pipe: Any) -> None:
            got = pipe.hmget(head, *names)
            if self._expired(got[0]):
                raise _unknown(sid)
            # The lease key is WATCHed with the head: if it changes (expires, is taken)
            # between this check and EXEC, the transaction runs again and sees that.
            if lease is not None and _s(pipe.get(lease_key)) != lease:
                raise _lease_lost(sid)
            rev = self._redis.incr(self.prefix + "revision")
            pipe.multi()
            write(pipe, head, text, dict(zip(names, got)))
            pipe.hset(head, mapping={"updated_at": repr(self._clock()), "rev": rev})
            self._announce(pipe, sid, rev)
            pipe.pexpire(head, self._ttl_ms)
            pipe.pexpire(text, self._ttl_ms)

        self._redis.transaction(txn, *watched)

    # -- the contract ----------------------------------------------------------------------
    def start(self, stream_id: str, meta: Dict[str, Any]) -> None:
        validate_stream_id(stream_id)
        meta_json = dump_meta(meta)
        head, text = self._keys(stream_id)
        rev = self._redis.incr(self.prefix + "revision")
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(head, text, self._key(stream_id, "cancel"), self._key(stream_id, "outcome"))
        mapping = {
            "meta": _b(meta_json), "status": "streaming", "updated_at": repr(self._clock()), "rev": rev,
            "epoch": secrets.token_hex(8),
        }
        pipe.hset(head, mapping=mapping)
        pipe.pexpire(head, self._ttl_ms)
        self._announce(pipe, stream_id, rev)
        pipe.execute()

    def append(self, stream_id: str, text: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        validate_text(text)
        data = _b(text)

        def write(pipe: Any, head: str, key: str, values: Dict[str, Any]) -> None:
            if data:
                pipe.append(key, data)

        self._update(stream_id, write, lease=lease)

    def replace_text(self, stream_id: str, text: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        validate_text(text)
        data = _b(text)

        def write(pipe: Any, head: str, key: str, values: Dict[str, Any]) -> None:
            if data:
                pipe.set(key, data)
            else:
                pipe.delete(key)
            pipe.hset(head, "epoch", secrets.token_hex(8))  # new text: readers read it whole

        self._update(stream_id, write, lease=lease)

    def update_meta(self, stream_id: str, changes: Dict[str, Any], *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)

        def write(pipe: Any, head: str, key: str, values: Dict[str, Any]) -> None:
            meta = values.get("meta")
            merged = dict(json.loads(_s(meta)) if meta is not None else {}, **changes)
            pipe.hset(head, "meta", _b(dump_meta(merged)))

        self._update(stream_id, write, "meta", lease=lease)

    def set_status(self, stream_id: str, status: str, *, lease: Optional[str] = None) -> None:
        validate_stream_id(stream_id)
        validate_status(status)

        def write(pipe: Any, head: str, key: str, values: Dict[str, Any]) -> None:
            pipe.hset(head, "status", status)

        self._update(stream_id, write, lease=lease)

    def load(self, stream_id: str) -> Optional[StreamRecord]:
        validate_stream_id(stream_id)
        head, text = self._keys(stream_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hmget(head, "meta", "status", "updated_at")
        pipe.get(text)
        (meta, status, updated_at), data = pipe.execute()
        if meta is None or status is None:
            return None
        field = "updated_at"
        try:  # what another writer (or a hand) may have put there: ValueError naming the field
            stamp = float(_s(updated_at))
            if self._expired(updated_at):
                return None
            field = "meta"
            meta_value = json.loads(_s(meta))
            field = "text"
            text_value = _s(data) if data is not None else ""
            field = "status"
            status_value = validate_status(_s(status))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the {field} of stream {stream_id!r} in Redis is damaged ({type(exc).__name__}: {exc})") from exc
        return StreamRecord(stream_id=stream_id, meta=meta_value, text=text_value, status=status_value, updated_at=stamp)

    def delete(self, stream_id: str) -> None:
        validate_stream_id(stream_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(*self._keys(stream_id))
        self._announce(pipe, stream_id, 0)
        pipe.execute()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owns_client:
                self._redis.close()


def _redact_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``: reprs never show passwords."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://***@{host}"
