"""The recovery-store contract: what the coordinator persists so a broken stream can resume.

A stream's record is small and boring on purpose: the request metadata a continuation
needs (``meta``), the assistant text produced so far (``text``), a ``status`` and the time
of the last write. The coordinator writes the text *before* the consumer sees it, so even a
killed process leaves behind everything the user was shown.

Every backend (memory, disk, Redis) implements the same semantics, checked by one shared
test suite:

* ``append`` costs O(len(delta)): a long answer arrives in thousands of small pieces, and
  rewriting one growing string would make persisting an answer quadratic.
* Records live ``ttl`` seconds after their *last write*; ``load`` returns ``None`` after
  that. Operations that modify a record (``append``, ``replace_text``, ``set_status``,
  ``finish(keep=True)``) raise ``KeyError`` for an unknown or expired
  record instead of silently creating a half record without its ``meta``.
* Values are JSON only (never pickle), so a store can be read by another process, another
  Python version or another language, and a tampered store cannot execute code.
* ``stream_id`` becomes part of storage keys, so it is restricted to a safe alphabet.

Live streams (one producer, any number of readers in any process sharing the store) add:

* a **lease** per stream id (``acquire_lease``/``renew_lease``/``release_lease``/
  ``leased``): at most one holder at a time, identified by a random token; it lives
  ``ttl`` seconds past its last renewal, timed by the store (a monotonic clock in
  memory and on disk (the machine's), Redis's ``PX`` in Redis), never by a wall clock that
  can step.
* **fenced writes**: ``append``, ``replace_text``, ``set_status`` and ``update_meta`` take
  ``lease=token``; such a write is refused with :class:`LeaseLost`, in the same atomic step
  as the write, unless ``token`` holds the lease then. So a producer that was paused past
  its lease (GC, SIGSTOP) and woke up can never write into its successor's generation.
  Stores that do so say ``fenced_writes = True``.
* a **revision** per record (``revision``/``wait_for``): a number that changes on every
  write, from one store-wide counter, so a reader can block until something changed
  instead of polling the whole record. An unknown record's revision is 0.
* a **cancel mark** (``cancel``/``cancelled``) another process can set, and the producer's
  **outcome** (``set_outcome``/``outcome``: finish reason, usage or error, JSON); ``start``
  clears both, and ``clear_outcome`` (fenced by ``lease=`` like the writes) the outcome
  alone: a producer that takes a failed stream up again (``resume``) continues its record.
  These keys sit beside the record: a record written here is still read by older versions.
* an incremental read (``read_text``) for readers that follow a record: only the text
  appended since the reader's last read, until a ``start`` or ``replace_text`` (a new
  ``epoch`` beside the text) makes the next read whole.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import math
import re
import secrets
from typing import Any, Dict, Optional, cast

__all__ = [
    "DEFAULT_TTL",
    "STATUSES",
    "LeaseLost",
    "RecoveryStore",
    "StoreUnavailable",
    "StreamRecord",
    "check_record",
    "dump_meta",
    "new_lease_token",
    "validate_status",
    "validate_stream_id",
    "validate_text",
    "validate_ttl",
]

logger = logging.getLogger("streamcoord.recovery_store")

#: Default lifetime of a record after its last write: 24 hours.
DEFAULT_TTL = 86400.0

#: The statuses a record can have.
STATUSES = ("streaming", "completed", "failed")

#: What a stream id may be (the one definition; streamcoord checks ``stream_id=`` by it).
STREAM_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")

# Top-level meta keys that would mean someone is about to persist credentials. The store
# "holds only what a resume needs" (DESIGN.md, Logging and security); headers never are.
# Only top-level keys are checked: a request body may legitimately contain a tool schema
# with a parameter called "headers".
_SECRET_META_KEYS = frozenset(
    {
        "headers",
        "authorization",
        "proxy-authorization",
        "api_key",
        "api-key",
        "apikey",
        "x-api-key",
        "x-goog-api-key",
        "cookie",
    }
)


class StoreUnavailable(OSError):
    """The store cannot be opened or used: a damaged database file, a directory that is not
    one or cannot be read, a server that is down. The message names the store and what to do.

    streamcoord never lets it reach a stream: a stream goes on without recovery (logged at
    WARNING), and ``Client.resume`` raises ``RecoveryFailed`` with this as its cause.
    """


class LeaseLost(Exception):
    """A write with ``lease=token`` while ``token`` no longer holds the lease (it expired,
    or another producer took it): nothing was written. The writer writes no more, unless
    it can take the lease again (an expired lease nobody took)."""


def _lease_lost(stream_id: str) -> LeaseLost:
    return LeaseLost(f"the lease of stream {stream_id!r} is held by another producer now (or expired); not written")


@dataclasses.dataclass
class StreamRecord:
    """One stream's persisted state, as returned by :meth:`RecoveryStore.load`.

    ``meta`` is a fresh copy: mutating it does not change the store.
    """

    stream_id: str
    meta: Dict[str, Any]  # JSON-able: provider, request body (never headers/keys), strategy, model...
    text: str  # all assistant text persisted so far, in order
    status: str  # "streaming" | "completed" | "failed"
    updated_at: float  # time.time() of the last write


def check_record(record: Any) -> StreamRecord:
    """``record`` (what a store's ``load`` returned) if it has the shape of a StreamRecord,
    else ValueError saying what is wrong: for a store that was damaged or changed by hand."""
    if not isinstance(record, StreamRecord):
        raise ValueError(f"the store returned a {type(record).__name__}, not a StreamRecord")
    if not isinstance(record.meta, dict):
        raise ValueError(f"its meta is a {type(record.meta).__name__}, not a dict")
    if not isinstance(record.text, str):
        raise ValueError(f"its text is a {type(record.text).__name__}, not a str")
    if record.status not in STATUSES:
        raise ValueError(f"its status is {str(record.status)[:40]!r}, not one of {', '.join(STATUSES)}")
    if isinstance(record.updated_at, bool) or not isinstance(record.updated_at, (int, float)):
        raise ValueError("its updated_at is not a number")
    return record


def validate_stream_id(stream_id: Any) -> str:
    """Return ``stream_id`` if it is safe to embed in a storage key, else raise."""
    if not isinstance(stream_id, str):
        raise TypeError(f"stream_id must be a str, not {type(stream_id).__name__}")
    if not STREAM_ID_RE.fullmatch(stream_id):
        raise ValueError(
            "stream_id must be 1 to 200 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'; "
            f"got {stream_id[:50]!r}{'...' if len(stream_id) > 50 else ''}"
        )
    return stream_id


def validate_text(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    return text


def validate_status(status: Any) -> str:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(map(repr, STATUSES))}; got {status!r}")
    return cast(str, status)  # one of STATUSES


def validate_ttl(ttl: Any) -> float:
    try:
        value = float(ttl)
    except (TypeError, ValueError):
        raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"ttl must be a positive, finite number of seconds; got {ttl!r}")
    return value


def new_lease_token() -> str:
    """A lease holder's identity: random, so two processes can never share one."""
    return secrets.token_hex(16)


def dump_meta(meta: Any) -> str:
    """Serialize ``meta`` to JSON, with a clear ``TypeError`` if it cannot be.

    NaN and infinities are rejected because they are not JSON (other languages and strict
    parsers reading the store would choke). Non-str dict keys are converted to str by
    ``json`` exactly as on every backend, so a round trip is the same everywhere.
    """
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, not {type(meta).__name__}")
    for key in meta:
        if isinstance(key, str) and key.lower() in _SECRET_META_KEYS:
            raise ValueError(
                f"meta must not contain {key!r}: the recovery store holds only what a resume "
                "needs (the request body, never headers or API keys)"
            )
    try:
        return json.dumps(meta, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta must be JSON-serializable (dicts, lists, str, numbers, bool, None): {exc}") from exc


class RecoveryStore(abc.ABC):
    """Where partial stream output is persisted. Subclasses must be thread-safe.

    The coordinator calls ``start`` once, ``append`` for every piece of text before the
    consumer sees it, ``replace_text`` after a recovery rewind, and ``finish`` at the end.
    ``client.resume`` calls ``load``.
    """

    ttl: float = DEFAULT_TTL
    #: Whether the write methods take ``lease=`` (see the module docstring); a store
    #: written before live streams does not, and its producers are fenced by renewal only.
    fenced_writes: bool = False

    @abc.abstractmethod
    def start(self, stream_id: str, meta: Dict[str, Any]) -> None:
        """Create (or overwrite) a record: status ``"streaming"``, text ``""``."""

    @abc.abstractmethod
    def append(self, stream_id: str, text: str) -> None:
        """Append ``text`` in O(len(text)) and refresh the expiry. ``KeyError`` if unknown."""

    @abc.abstractmethod
    def replace_text(self, stream_id: str, text: str) -> None:
        """Atomically set the whole text (after a rewind). ``KeyError`` if unknown."""

    @abc.abstractmethod
    def set_status(self, stream_id: str, status: str) -> None:
        """Set the status (one of :data:`STATUSES`). ``KeyError`` if unknown."""

    @abc.abstractmethod
    def load(self, stream_id: str) -> Optional[StreamRecord]:
        """The record, or ``None`` if it is unknown or expired."""

    @abc.abstractmethod
    def delete(self, stream_id: str) -> None:
        """Remove the record; deleting an unknown record is not an error."""

    def update_meta(self, stream_id: str, changes: Dict[str, Any]) -> None:
        """Merge ``changes`` (JSON) into the record's meta: what a provider needs to take
        the stream up itself (a response id), learnt after ``start``. ``KeyError`` if
        unknown. A store without it raises NotImplementedError, and its streams are
        taken up by their recovery strategy instead."""
        raise NotImplementedError(f"{type(self).__name__} cannot update a record's meta")

    def finish(self, stream_id: str, keep: bool = False) -> None:
        """Mark the stream completed: kept (status ``"completed"``) if ``keep``, else deleted.

        Deleting is idempotent, so ``finish(id)`` on an unknown record does nothing;
        ``finish(id, keep=True)`` on an unknown record raises ``KeyError``.
        """
        if keep:
            self.set_status(stream_id, "completed")
        else:
            self.delete(validate_stream_id(stream_id))

    # -- live streams (see the module docstring); stores written before them raise ------
    def acquire_lease(self, stream_id: str, ttl: float) -> Optional[str]:
        """Atomically take the lease of ``stream_id`` for ``ttl`` seconds: a new token if it
        was free (never held, released or expired), else ``None``."""
        raise _no_live_streams(self)

    def renew_lease(self, stream_id: str, token: str, ttl: float) -> bool:
        """Extend the lease to ``ttl`` seconds from now if ``token`` still holds it; False
        if it expired or another holder has it (then the caller must stop producing)."""
        raise _no_live_streams(self)

    def release_lease(self, stream_id: str, token: str) -> bool:
        """Give the lease up if ``token`` holds it (True); another holder's lease is kept."""
        raise _no_live_streams(self)

    def leased(self, stream_id: str) -> bool:
        """Whether anyone holds a live lease on ``stream_id``."""
        raise _no_live_streams(self)

    def revision(self, stream_id: str) -> int:
        """The record's revision: changes on every write; 0 for an unknown record."""
        raise _no_live_streams(self)

    def wait_for(self, stream_id: str, after: int, timeout: float) -> int:
        """Block until the record's revision differs from ``after`` (written, deleted or
        cancelled meanwhile) or ``timeout`` seconds passed; returns the revision then."""
        raise _no_live_streams(self)

    def cancel(self, stream_id: str) -> None:
        """Mark ``stream_id`` cancelled (for ``ttl``) and wake its readers; the producer
        sees it through :meth:`cancelled`. A later ``start`` of the id clears the mark."""
        raise _no_live_streams(self)

    def cancelled(self, stream_id: str) -> bool:
        """Whether ``stream_id`` was cancelled since its last ``start``."""
        raise _no_live_streams(self)

    def set_outcome(self, stream_id: str, outcome: Dict[str, Any], ttl: float) -> None:
        """Record how the generation ended (a JSON dict), for ``ttl`` seconds, and wake the
        readers. It outlives a deleted record, so readers still catching up can end."""
        raise _no_live_streams(self)

    def outcome(self, stream_id: str) -> Optional[Dict[str, Any]]:
        """What :meth:`set_outcome` recorded since the last ``start`` or ``clear_outcome``,
        or ``None``."""
        raise _no_live_streams(self)

    def clear_outcome(self, stream_id: str, *, lease: Optional[str] = None) -> None:
        """Forget the recorded outcome (a new generation continues the record, so readers
        follow it instead of ending with the old one). With ``lease=token``: refused with
        :class:`LeaseLost`, in the same atomic step, unless ``token`` holds the lease."""
        raise _no_live_streams(self)

    def read_text(self, stream_id: str, cursor: Any = None) -> Optional["tuple[str, bool, Any]"]:
        """For a live reader: ``(text, whole, cursor)``, the text added since ``cursor`` (what
        an earlier call returned; ``whole`` False), or the whole text (``whole`` True: no
        cursor, the text was replaced or restarted since, or the store cannot tell);
        ``None`` when there is no record. The stores read only what is new; this default
        reads the whole record. The stores' cursors are ``(epoch, position)`` pairs, the
        epoch new on every ``start`` and ``replace_text``: a live producer compares epochs
        to tell whether another producer took its text over."""
        record = self.load(stream_id)
        return None if record is None else (record.text, True, None)

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources; idempotent. Further use raises ``ValueError``."""

    def __enter__(self) -> "RecoveryStore":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _unknown(stream_id: str) -> KeyError:
    """The error for writing to a record that does not exist (or has expired)."""
    return KeyError(f"no recovery record for stream_id {stream_id!r} (never started, deleted or expired)")


def _closed(store: object) -> ValueError:
    return ValueError(f"{type(store).__name__} is closed")


def _no_live_streams(store: object) -> NotImplementedError:
    return NotImplementedError(
        f"{type(store).__name__} does not support live streams (leases, revisions, cancel marks); "
        "use MemoryStore, DiskStore or RedisStore, or implement those methods"
    )
