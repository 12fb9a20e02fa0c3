"""Live streams, the producing side: one generation per stream id across every process
that shares the store, whether or not anyone reads it.

``LiveProducer`` is what a worker is given when it produces a live stream: it holds the
lease (renewed every third of ``lease_ttl`` on a monotonic clock, stalls included, by its
own small thread), watches for a cancel mark set from anywhere, and at the end records the
outcome (finish reason, usage or error) for the readers, then gives the lease up.
(``StreamHandle``, what ``client.start`` returns, is in ``_live_client``.)
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Type

from streamcoord import errors
from streamcoord._logging import StreamLogger
from streamcoord.errors import (
    APIError,
    CallbackError,
    ChunkValidationError,
    RecoveryFailed,
    StreamcoordError,
    StreamError,
)

if TYPE_CHECKING:  # recovery_store is imported by the first stream that uses a store, not by `import streamcoord`
    from recovery_store import RecoveryStore
    from streamcoord._recovery import RecordWriter

__all__ = [
    "CANCEL_POLL_SECONDS",
    "FINAL_TEXT_SECONDS",
    "FencedWrites",
    "LiveProducer",
    "error_from_outcome",
]

#: How often a producer looks for a cancel mark: ``cancel_stream`` takes effect within this
#: (plus one store read), well inside the 1 s DESIGN.md promises.
CANCEL_POLL_SECONDS = 0.2
#: The least time the final text of a stream completed without ``keep`` stays beside its
#: outcome: readers still catching up, and a browser reconnecting just after the end.
FINAL_TEXT_SECONDS = 30.0

# The error classes an outcome can name: the whole tree in streamcoord.errors. Anything
# else (an exception class of the application's) comes back as a StreamError.
_ERRORS: Dict[str, Type[StreamcoordError]] = {
    name: cls
    for name, cls in ((name, getattr(errors, name)) for name in errors.__all__)
    if isinstance(cls, type) and issubclass(cls, StreamcoordError)
}


class LiveProducer:
    """The lease, the cancel watch and the outcome of one producing worker."""

    def __init__(
        self, store: RecoveryStore, stream_id: str, token: str, lease_ttl: float, keep: bool, provider: str = "-"
    ) -> None:
        self.store = store
        self.stream_id = stream_id
        self.log = StreamLogger(stream_id, provider)
        self.token = token
        self.lease_ttl = lease_ttl
        self.keep = keep  # the caller's choice; the worker itself always keeps the record
        self.cancelled = False  # by a cancel mark (from anywhere)
        self.lost = False  # another producer has the lease now: write nothing more
        self._stop = threading.Event()
        self._released = False
        self._gave_up = False  # release() gave the lease back (it was still this producer's)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._cancel: Optional[Callable[[], None]] = None
        # Where this producer last wrote the whole text (start, replace_text): the store's
        # read cursor there, whose epoch changes when anyone else starts or replaces it.
        self._wrote_text = False
        self._cursor: Any = None
        # Nobody reads this stream but through the store (client.start's StreamHandle): a
        # lost lease stops it. A stream someone reads directly (stream_chat, resume) goes
        # on for that reader instead, no longer recorded: cutting it short would hand its
        # reader a truncated answer that looks complete.
        self.detached = False

    def fence(self, store: RecoveryStore) -> RecordWriter:
        """``store`` as this producer's recovery writes to it: each write carries the
        lease's token, so the store refuses it once another producer holds the lease."""
        return FencedWrites(store, self) if getattr(store, "fenced_writes", False) else store

    def begin(self, cancel: Callable[[], None]) -> None:
        """The worker started: keep the lease and watch for a cancel until ``end``."""
        self._cancel = cancel
        if self.lost:  # a write was refused before the worker ran
            if self.detached:
                cancel()
            return
        self._thread = threading.Thread(
            target=self._keep, args=(cancel,), name=f"streamcoord-lease-{self.stream_id}", daemon=True
        )
        self._thread.start()

    def _keep(self, cancel: Callable[[], None]) -> None:
        renew_every = self.lease_ttl / 3
        next_renewal = time.monotonic()  # at once: the worker may start long after start()
        while True:
            try:
                if self.store.cancelled(self.stream_id):
                    self.cancelled = True
                    cancel()
                    return
                if time.monotonic() >= next_renewal:
                    token = self.token
                    if not self.store.renew_lease(self.stream_id, token, self.lease_ttl) and not self.reclaim(token):
                        self.lose()
                        return
                    next_renewal = time.monotonic() + renew_every
            except Exception as exc:  # a store hiccup: the lease lasts lease_ttl, try again
                self.log.warning("renewing the lease of %r failed (%s: %s)", self.stream_id, type(exc).__name__, exc)
            if self._stop.wait(min(CANCEL_POLL_SECONDS, renew_every)):
                return

    def reclaim(self, failed: str) -> bool:
        """The lease of token ``failed`` lapsed (the stream was read late, or a pause
        outlasted it): take it again if nobody else did meanwhile. The store's atomic
        acquire keeps it to one owner, and a successor that held it in between and has
        finished (or cut the text) keeps its work: the lease goes back untouched. True if
        this producer holds it now (under a new token, which the lease thread or the writer
        may have taken already)."""
        with self._lock:
            if self.lost or self._released:
                return False
            if self.token != failed:
                return True  # the other of the lease thread and the writer reclaimed it
            token = self.store.acquire_lease(self.stream_id, self.lease_ttl)
            if not token:
                return False
            try:
                elsewhere = self._produced_elsewhere()
            except BaseException:
                self.store.release_lease(self.stream_id, token)
                raise
            if elsewhere:
                self.store.release_lease(self.stream_id, token)
                return False
            self.token = token
            return True

    def wrote_text(self) -> None:
        """This producer has just written the whole text (``start``, ``replace_text``),
        holding the lease: note the store's cursor there for ``_produced_elsewhere``."""
        try:
            read = self.store.read_text(self.stream_id)
        except Exception:  # the store's failure shows in the writes; this reclaims as before
            return
        self._wrote_text = True
        self._cursor = read[2] if read is not None else None

    def _produced_elsewhere(self) -> bool:
        """Whether another producer took this stream up while this one's lease had lapsed:
        it recorded an outcome, or deleted, restarted or replaced (a take-over's first
        write) the text this producer wrote. Before this producer's first write (a stream
        read late) there is nothing of its own to compare: it reclaims as before."""
        if not self._wrote_text:
            return False
        sid = self.stream_id
        if self.store.outcome(sid) is not None:
            return True  # this producer's start (or resume) cleared the one before
        read = self.store.read_text(sid, self._cursor)
        if read is None:
            return True
        return bool(_epoch(read[2]) != _epoch(self._cursor))

    def lose(self) -> None:
        """Another producer holds the lease now (this one was paused past it, or its store
        lost it): write nothing more, so attached readers follow only the new producer;
        stop quietly, unless someone reads this stream directly (see ``detached``)."""
        with self._lock:
            if self.lost:
                return
            self.lost = True
        self._stop.set()
        if self._gave_up:  # this producer gave it up itself (its consumer closed the stream): nobody took it
            return
        if self._released:  # closed, but another producer had taken the stream over before
            self.log.warning("lost the lease of live stream %r to another producer before it was closed", self.stream_id)
            return
        if not self.detached:
            self.log.warning(
                "lost the lease of live stream %r to another producer; this stream goes on for its reader, "
                "no longer recorded", self.stream_id,
            )
            return
        self.log.warning("lost the lease of live stream %r to another producer; stopping", self.stream_id)
        if self._cancel is not None:
            self._cancel()

    def end(self, status: str, error: Optional[BaseException], answer: Any) -> None:
        """The worker ended (``status`` completed, failed or cancelled): tell the readers
        how, then give the lease up. A consumer that closed a resumed stream leaves the
        record resumable and says nothing: the next attach or resume takes it over."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        if self.lost:
            return
        try:
            if status == "completed" or status == "failed" or self.cancelled:
                self._write_outcome(status, error, answer)
        except Exception as exc:
            self.log.warning(
                "recording the end of live stream %r failed (%s: %s)", self.stream_id, type(exc).__name__, exc
            )
        finally:
            self.release()

    def _write_outcome(self, status: str, error: Optional[BaseException], answer: Any) -> None:
        store, sid = self.store, self.stream_id
        outcome: Dict[str, Any] = {
            "finish_reason": answer.finish_reason,
            "usage": answer.usage,
            "cancelled": self.cancelled,
            "error": None,
        }
        if error is not None:
            outcome["error"] = {
                "type": type(error).__name__, "message": str(error), "status": getattr(error, "status", None),
                # What the class's constructor takes besides the message (CallbackError,
                # ChunkValidationError), for readers to raise the same error.
                "callback": getattr(error, "callback", None), "reason": getattr(error, "reason", None),
            }
        delete = status == "completed" and not self.keep
        if delete:
            # The record goes; readers still catching up read the end of the text here.
            record = store.load(sid)
            outcome["text"] = record.text if record is not None else ""
        store.set_outcome(sid, outcome, max(self.lease_ttl, FINAL_TEXT_SECONDS) if delete else store.ttl)
        if delete:
            store.delete(sid)

    def release(self) -> None:
        """Give the lease up (once); a close of the consumer's stream calls it too."""
        with self._lock:
            if self._released or self.lost:
                return
            self._released = True
        self._stop.set()
        try:
            self._gave_up = self.store.release_lease(self.stream_id, self.token)
        except Exception as exc:  # it expires by itself within lease_ttl
            self.log.warning("releasing the lease of %r failed (%s: %s)", self.stream_id, type(exc).__name__, exc)


class FencedWrites:
    """The store as a live producer's recovery writes to it (the calls a stream makes):
    every write carries the producer's lease token. A write the store refuses takes a
    lapsed lease again (``reclaim``) or, when it is another's now, marks the producer lost
    (``lose``); nothing it writes after that reaches the store."""

    def __init__(self, store: RecoveryStore, producer: LiveProducer) -> None:
        self.store = store
        self._producer = producer

    def __repr__(self) -> str:
        return repr(self.store)

    def start(self, stream_id: str, meta: Dict[str, Any]) -> None:
        self.store.start(stream_id, meta)  # right after the lease was taken (client.start)
        self._producer.wrote_text()

    def append(self, stream_id: str, text: str) -> None:
        self._write(self.store.append, stream_id, text)

    def replace_text(self, stream_id: str, text: str) -> None:
        if self._write(self.store.replace_text, stream_id, text):
            self._producer.wrote_text()

    def update_meta(self, stream_id: str, changes: Dict[str, Any]) -> None:
        self._write(self.store.update_meta, stream_id, changes)

    def set_status(self, stream_id: str, status: str) -> None:
        self._write(self.store.set_status, stream_id, status)

    def finish(self, stream_id: str, keep: bool = False) -> None:
        if keep:
            self.set_status(stream_id, "completed")
        elif not self._producer.lost:
            self.store.finish(stream_id, False)

    def _write(self, operation: Callable[..., None], stream_id: str, value: Any) -> bool:
        """Write as the lease's holder; True if it was written."""
        from recovery_store.base import LeaseLost

        producer = self._producer
        if producer.lost:
            return False
        token = producer.token
        try:
            operation(stream_id, value, lease=token)
            return True
        except LeaseLost:
            try:
                if producer.reclaim(token):  # it had lapsed, and nobody took it: write as its owner again
                    operation(stream_id, value, lease=producer.token)
                    return True
            except LeaseLost:
                pass
            producer.lose()
            return False


def _epoch(cursor: Any) -> Any:
    """The epoch of a store's read cursor (the stores' cursors are ``(epoch, position)``);
    None from a store that gives no cursor."""
    return cursor[0] if isinstance(cursor, (tuple, list)) and len(cursor) == 2 else None


def error_from_outcome(stream_id: str, provider: str, error: Dict[str, Any], text: str) -> StreamcoordError:
    """The producer's error as a reader raises it: the same class and message."""
    cls = _ERRORS.get(str(error.get("type")), StreamError)
    message = str(error.get("message", f"the producer of live stream {stream_id!r} failed"))
    if issubclass(cls, APIError):
        status = error.get("status")
        return cls(message, status=status if isinstance(status, int) else None, provider=provider)
    if cls is RecoveryFailed:
        return RecoveryFailed(message, partial_text=text)
    if cls is CallbackError:
        return CallbackError(message, str(error.get("callback") or "a callback"))
    if cls is ChunkValidationError:
        reason = error.get("reason")
        return ChunkValidationError(reason if isinstance(reason, str) else message, None)
    try:
        return cls(message)
    except TypeError:  # a class whose constructor takes more than a message
        return StreamError(message)
