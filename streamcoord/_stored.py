"""A stream's recovery store as the client uses it: opened without failing the stream,
written without secrets, and read back for ``resume`` with every field checked.

A store is for surviving this process. One that cannot be opened (a damaged ``cache.db``,
a directory without permissions) must not break a stream that is otherwise fine: the stream
goes on without recovery and the store is named in a WARNING. Taking a stream up again
(``resume``) is different: there the store is the point, so a store that cannot be read or
a record that is not what the client wrote is a ``RecoveryFailed`` naming the store and
what is wrong, never an error from deep inside (``JSONDecodeError``, ``KeyError``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from streamcoord._adapter import validate_messages
from streamcoord._keys import MIN_SECRET_LENGTH, Scrubber
from streamcoord._recovery import RecordWriter, default_store, recovery_options
from streamcoord.errors import RecoveryFailed

if TYPE_CHECKING:  # recovery_store is imported by the first stream that uses a store, not by `import streamcoord`
    from recovery_store import RecoveryStore, StreamRecord

__all__ = ["ScrubbedWrites", "StoredStream", "load_stored", "store_for_resume", "store_for_stream"]

logger = logging.getLogger("streamcoord")


def _where(store: Any) -> str:
    """The store as an error message names it: the directory of a DiskStore, else its repr
    (RedisStore's hides the password)."""
    directory = getattr(store, "directory", None)
    return repr(directory) if isinstance(directory, str) else repr(store)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _cannot_open(exc: BaseException) -> str:
    """Why the default store cannot be opened, naming its directory (StoreUnavailable's
    message does already, and says what to do)."""
    from recovery_store import StoreUnavailable

    if isinstance(exc, StoreUnavailable):
        return str(exc)
    from recovery_store.disk import default_directory  # diskcache: imported when a DiskStore is used

    return f"the recovery store in {default_directory()!r} cannot be opened ({_reason(exc)})"


def store_for_stream(configured: Optional[RecoveryStore], stream_id: str, provider: str) -> Optional[RecoveryStore]:
    """The store a stream with recovery writes to: the client's, else the process's default
    DiskStore; None, logged at WARNING with its directory, when the default cannot be opened."""
    if configured is not None:
        return configured
    try:
        return default_store()
    except Exception as exc:  # any failure to open it: the stream matters more than its store
        logger.warning(
            "%s; streaming without recovery (STREAMCOORD_RECOVERY_DIR chooses another directory)",
            _cannot_open(exc), extra={"stream_id": stream_id, "provider": provider},
        )
        return None


def store_for_resume(configured: Optional[RecoveryStore], stream_id: str) -> RecoveryStore:
    """The store ``resume`` reads: RecoveryFailed, naming the directory, when it cannot be opened."""
    if configured is not None:
        return configured
    try:
        return default_store()
    except Exception as exc:
        raise RecoveryFailed(f"cannot resume stream {stream_id!r}: {_cannot_open(exc)}") from exc


class StoredStream:
    """A stored record, checked: what ``resume`` needs to take the stream up again."""

    def __init__(self, record: StreamRecord, messages: List[Dict[str, Any]], options: Dict[str, Any],
                 recovery: Dict[str, Any], where: str) -> None:
        self.text = record.text
        self.completed = record.status == "completed"
        self.status_failed = record.status == "failed"
        self.provider = record.meta["provider"]
        self.messages = messages
        self.options = options
        self.recovery = recovery
        self.where = where  # the store, as errors name it
        # Where the provider could replay the stream itself (see Adapter.native_resume).
        state = record.meta.get("resume_state")
        self.resume_state: Optional[Dict[str, Any]] = state if isinstance(state, dict) else None


def load_stored(store: RecoveryStore, stream_id: str) -> Optional[StoredStream]:
    """The record of ``stream_id``, checked; None when there is none. A store that fails or
    a record that is not what the client writes is a RecoveryFailed naming the store."""
    from recovery_store.base import validate_stream_id

    validate_stream_id(stream_id)  # the caller's mistake: a ValueError/TypeError as it is
    try:
        record = store.load(stream_id)
    except Exception as exc:
        raise RecoveryFailed(
            f"cannot resume stream {stream_id!r}: the recovery store {_where(store)} failed to read it "
            f"({_reason(exc)}); if the store is damaged, delete it"
        ) from exc
    if record is None:
        return None
    try:
        return _checked(record, _where(store))
    except (TypeError, ValueError) as exc:
        raise RecoveryFailed(
            f"cannot resume stream {stream_id!r}: its record in {_where(store)} is damaged or was changed "
            f"by hand ({exc}); delete it and start a new stream"
        ) from exc


def _checked(record: Any, where: str) -> StoredStream:
    from recovery_store.base import check_record

    meta = check_record(record).meta
    if not isinstance(meta.get("provider"), str):
        raise TypeError("its meta has no provider name")
    try:
        messages = validate_messages(meta.get("messages"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"its stored messages are not valid: {exc}") from None
    options = meta.get("options", {})
    recovery = meta.get("recovery", {})
    for name, value in (("options", options), ("recovery", recovery)):
        if not isinstance(value, dict):
            raise TypeError(f"its stored {name} are a {type(value).__name__}, not a dict")
    try:
        recovery_options(recovery)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"its stored recovery options are not valid: {exc}") from None
    return StoredStream(record, messages, dict(options), dict(recovery), where)


class ScrubbedWrites:
    """The store as a stream writes to it: its secrets replaced by ``***`` first, so a model
    (or a server) that repeats the key never gets it persisted. Only the calls a stream makes.

    A model repeats a key token by token, so a key usually arrives split across several
    network reads, each its own append. Text that ends in what could be the start of a
    secret (``MIN_SECRET_LENGTH`` characters or more) is held back until the next append
    shows whether it is one; a secret that still spans two appends (its first few
    characters were written already) has the whole text written again, scrubbed. Held-back
    text is the one exception to "persisted before the consumer sees it", and it is at
    most one secret long.
    """

    def __init__(self, store: RecordWriter, scrubber: Scrubber) -> None:
        self.store = store
        self._scrubber = scrubber
        self._overlap = max(len(s) for s in scrubber.secrets) - 1
        self._parts: List[str] = []  # the text written so far, unscrubbed (the stream's own str objects)
        self._tail = ""  # its last characters, to see a secret that spans two writes
        self._held = ""  # not written yet: it may be the start of a secret

    def __repr__(self) -> str:
        return repr(self.store)

    def start(self, stream_id: str, meta: Dict[str, Any]) -> None:
        self._parts, self._tail, self._held = [], "", ""
        self.store.start(stream_id, self._scrubber.value(meta))

    def append(self, stream_id: str, text: str) -> None:
        data = self._held + text if self._held else text
        hold = self._secret_start(data)
        self._held = data[len(data) - hold:] if hold else ""
        if hold < len(data):
            self._write(stream_id, data[: len(data) - hold])

    def replace_text(self, stream_id: str, text: str) -> None:
        self._parts, self._held = [text], ""
        self._tail = text[-self._overlap:]
        self.store.replace_text(stream_id, self._scrubber.text(text))

    def update_meta(self, stream_id: str, changes: Dict[str, Any]) -> None:
        self.store.update_meta(stream_id, self._scrubber.value(changes))

    def set_status(self, stream_id: str, status: str) -> None:
        self._flush(stream_id)
        self.store.set_status(stream_id, status)

    def finish(self, stream_id: str, keep: bool = False) -> None:
        self._flush(stream_id)
        self.store.finish(stream_id, keep)

    def _flush(self, stream_id: str) -> None:
        if self._held:
            held, self._held = self._held, ""
            self._write(stream_id, held)

    def _secret_start(self, data: str) -> int:
        """How many characters at the end of ``data`` are the start of a secret (0 if fewer
        than MIN_SECRET_LENGTH). Only the places near the end where a secret's first
        MIN_SECRET_LENGTH characters occur are tried: this runs once per network read."""
        longest = 0
        end = len(data)
        for secret in self._scrubber.secrets:
            opening = secret[:MIN_SECRET_LENGTH]
            at = data.find(opening, max(end - len(secret) + 1, 0))
            while at != -1 and end - at > longest:
                if secret.startswith(data[at:]):
                    longest = end - at
                    break
                at = data.find(opening, at + 1)
        return longest

    def _write(self, stream_id: str, text: str) -> None:
        scrubber = self._scrubber
        before = self._tail
        window = before + text
        self._parts.append(text)
        self._tail = window[-self._overlap:]
        if not scrubber.found(window):
            self.store.append(stream_id, text)
        elif scrubber.text(window) == before + scrubber.text(text):  # every secret lies inside this piece
            self.store.append(stream_id, scrubber.text(text))
        else:  # one began in what was written before
            self.store.replace_text(stream_id, scrubber.text("".join(self._parts)))
