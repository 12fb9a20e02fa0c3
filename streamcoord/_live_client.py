"""Live streams on the client: ``start``, ``attach``, ``cancel_stream`` (DESIGN.md "Live
streams"), as a base class of ``Client`` so that ``_client`` keeps to its one job.

The producing side is ``_live`` (lease, cancel watch, outcome), the reading side
``_attach``; this module resolves what they need from the client (the store, the
request, the lease) and holds ``StreamHandle``, what ``start`` returns.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from streamcoord._adapter import validate_messages
from streamcoord._config import Timeout
from streamcoord._keys import check_extra_headers
from streamcoord._options import RECORDING_OPTIONS, StreamOptions, split_options
from streamcoord._spec import Resume
from streamcoord._stream import ChatStream
from streamcoord.errors import RecoveryFailed

# The store-backed parts (recovery_store, _live, _stored, _recovery) are imported by the
# first call that uses a store, not by `import streamcoord`: ~1.5 ms that a client which
# only streams does not pay.
if TYPE_CHECKING:
    from recovery_store import RecoveryStore
    from streamcoord._stored import StoredStream

__all__ = [
    "DEFAULT_LEASE_TTL",
    "LIVE_TOTAL_SECONDS",
    "PRODUCER_OPTIONS",
    "READER_OPTIONS",
    "UNKNOWN_CHARACTER",
    "Continuation",
    "LiveAlready",
    "LiveStreams",
    "StreamHandle",
    "final_text",
    "try_lease",
]

#: The stream options of a detached web answer that shape the generation (``start`` gets
#: them) and those that shape what one reader gets (each ``attach`` gets them).
PRODUCER_OPTIONS = frozenset({"validate_chunk", "on_invalid", "on_error", "timeout", "recovery", "max_line_bytes"})
READER_OPTIONS = frozenset({"track_metrics", "on_metrics", "transform_chunk", "buffer_chunks"})

#: A noncharacter: never part of a model's text, so it matches nothing the producer stores.
UNKNOWN_CHARACTER = "\ufdd0"

#: How a stored stream goes on: the request, the stream's options, where to resume.
Continuation = Tuple[Any, StreamOptions, Resume]

#: How long a lease lives past its last renewal unless ``Client(lease_ttl=)`` says otherwise.
DEFAULT_LEASE_TTL = 10.0

#: A live generation's total deadline when neither the client nor start() sets one: nobody
#: may be reading it to notice a model that never stops.
LIVE_TOTAL_SECONDS = 900.0


class LiveAlready(ValueError):
    """``start`` on an id another producer holds (a ``ValueError``, as DESIGN.md says);
    its own class so that ``web.open_stream(detach=True)`` can attach instead."""


class LiveStreams:
    """``Client``'s live-stream methods (it provides ``_stream`` and ``_build_request``)."""

    recovery_store: Optional[RecoveryStore]
    lease_ttl: float
    timeout: Timeout
    provider: str
    _stream: Any
    _build_request: Any

    def start(self, messages: List[Dict[str, Any]], *, stream_id: str, **options: Any) -> StreamHandle:
        """Generate in the background, whether or not anyone reads: readers in any process
        sharing the recovery store follow it with ``attach(stream_id)``. One producer per
        ``stream_id``: ``ValueError`` if the id is live already. Recovery is on (``recovery=``
        options apply); without ``timeout=`` the generation gets a total deadline of
        ``LIVE_TOTAL_SECONDS``."""
        from recovery_store.base import validate_stream_id
        from streamcoord._stored import store_for_resume

        validate_stream_id(stream_id)
        stream_options, request_options = split_options(options)
        if stream_options.get("stream_recovery") is False:
            raise ValueError("start() always records the stream (recovery is implied); do not pass stream_recovery=False")
        if "stream_id" in stream_options:
            raise TypeError("pass stream_id once, as start(messages, stream_id=...)")
        stream_options.update(stream_id=stream_id, stream_recovery=True)
        messages = validate_messages(messages)
        check_extra_headers(request_options)
        request = self._build_request(messages, request_options)
        opts = StreamOptions(stream_options, self._live_timeout())
        store = store_for_resume(self.recovery_store, stream_id)
        token = try_lease(store, stream_id, self.lease_ttl)
        if token is False:
            raise LiveAlready(
                f"stream {stream_id!r} is live already (another producer holds it): attach to it with "
                f"client.attach({stream_id!r})"
            )
        if not isinstance(token, str):
            raise ValueError(
                f"the recovery store {store!r} does not support live streams; use DiskStore, MemoryStore or RedisStore"
            )
        try:
            stream = self._stream(request, opts, messages, request_options, None, (store, token))
            spec = stream._spec
            if spec.recovery is None:
                raise RecoveryFailed(f"cannot start live stream {stream_id!r}: the recovery store failed to open")
            spec.recovery.start_early(spec.recovery_meta)  # attach works as soon as start returns
        except BaseException:
            store.release_lease(stream_id, token)
            raise
        return StreamHandle(stream, lambda: self.cancel_stream(stream_id))

    def attach(self, stream_id: str, offset: int = 0, **stream_options: Any) -> ChatStream:
        """Follow a live stream from any process sharing the store: its stored text from
        character ``offset``, then each piece as the producer persists it (rewinds
        included), ending with its finish reason and usage, or raising its error. Closing
        it never stops the generation. If the producer died (its lease expired on an
        unfinished record), this process takes the generation over, exactly once.
        ``stream.text`` is what this stream got: the text from ``offset`` on."""
        return self._attach(stream_id, offset, False, stream_options)

    def _attach(self, stream_id: str, offset: int, whole_text: bool, stream_options: Dict[str, Any]) -> ChatStream:
        """``attach``; ``whole_text``: ``stream.text`` is the whole text, the part before
        ``offset`` included (a ``resume`` that follows a live producer, as a resume does)."""
        from recovery_store.base import validate_stream_id
        from streamcoord._stored import load_stored, store_for_resume

        validate_stream_id(stream_id)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a whole number of characters >= 0, got {offset!r}")
        refused = sorted(set(stream_options) & RECORDING_OPTIONS)
        stream_options, request_options = split_options(stream_options)
        if refused or request_options:
            raise TypeError(
                f"attach() takes stream options only (the producer's request and recovery are stored); "
                f"got {sorted(refused + list(request_options))}"
            )
        store = store_for_resume(self.recovery_store, stream_id)
        stored = load_stored(store, stream_id)
        text = stored.text if stored is not None else final_text(store, stream_id)
        if text is None and _leased(store, stream_id):
            text = ""  # its producer took the lease and is about to write the record: follow it
        if text is None:
            raise RecoveryFailed(
                f"no stored stream {stream_id!r}: it is unknown, was completed (and not kept), or has expired"
            )
        if stored is not None and stored.provider != self.provider:
            raise ValueError(
                f"stream {stream_id!r} was started with provider {stored.provider!r}; "
                f"attach to it with Client({stored.provider!r})"
            )
        shown = text[:offset]
        if offset > len(text):
            if stored is None or stored.completed or stored.status_failed:
                raise ValueError(f"offset {offset} is past the {len(text)} characters stored for {stream_id!r}")
            # The caller saw more than is stored now: the producer's recovery cut it back
            # since. Characters that match nothing stand for what the caller has beyond the
            # cut, so the reader's first hand-over announces that rewind.
            shown = text + UNKNOWN_CHARACTER * (offset - len(text))
        stream_options["stream_id"] = stream_id
        from streamcoord._attach import AttachReader, AttachSpec  # the reader machinery, on first attach

        spec = AttachSpec(
            options=StreamOptions(stream_options, self.timeout), provider=self.provider, store=store,
            shown=shown, take_over=lambda: self._take_over(store, stream_id), whole_text=whole_text,
        )
        return ChatStream(spec, worker_type=AttachReader)  # type: ignore[arg-type]

    def cancel_stream(self, stream_id: str) -> None:
        """Stop a live stream from any process sharing the store: its producer stops
        within a second, and its readers end where it stopped."""
        from recovery_store.base import validate_stream_id
        from streamcoord._stored import store_for_resume

        validate_stream_id(stream_id)
        store = store_for_resume(self.recovery_store, stream_id)
        try:
            store.cancel(stream_id)
        except NotImplementedError as exc:
            raise ValueError(str(exc)) from None

    def _start_or_attach(
        self, messages: List[Dict[str, Any]], stream_id: str, offset: Optional[int], options: Dict[str, Any]
    ) -> ChatStream:
        """``web.open_stream(detach=True)``: the first request (``offset`` None) starts the
        generation unless the store knows the id already (a reconnect before the first
        event, or another process was first: ``start``'s ``LiveAlready``); every request
        then attaches, from ``offset``. So a browser reconnecting to any process follows
        the one generation, and closing its stream never stops it."""
        from recovery_store.base import validate_stream_id
        from streamcoord._stored import store_for_resume

        validate_stream_id(stream_id)
        stream_options, request_options = split_options(options)
        reader = {k: v for k, v in stream_options.items() if k in READER_OPTIONS}
        if offset is None:
            producer = {k: v for k, v in stream_options.items() if k in PRODUCER_OPTIONS}
            store = store_for_resume(self.recovery_store, stream_id)
            if not _known(store, stream_id):
                try:
                    self.start(messages, stream_id=stream_id, **producer, **request_options)
                except LiveAlready:
                    pass  # another request (in any process) started it first: follow that one
        return self.attach(stream_id, offset or 0, **reader)

    def _live_timeout(self) -> Timeout:
        """The client's timeout, with a total deadline of ``LIVE_TOTAL_SECONDS`` unless it
        has one: a live generation (started or taken over) may have nobody reading it to
        notice a model that never stops."""
        if self.timeout.total is not None:
            return self.timeout
        return Timeout(self.timeout.idle, connect=self.timeout.connect, total=LIVE_TOTAL_SECONDS)

    def _take_over(self, store: RecoveryStore, stream_id: str) -> Union[bool, StreamHandle]:
        """The producer of ``stream_id`` is gone: produce it here, in the background, from
        what it stored (the recovery continuation). False if another process was faster;
        True if there is nothing left to produce (the reader sees how it ended)."""
        token = try_lease(store, stream_id, self.lease_ttl)
        if not isinstance(token, str):
            return False

        def continuation(stored: StoredStream) -> Optional[Continuation]:
            if store.cancelled(stream_id):
                return None
            request = self._build_request(stored.messages, dict(stored.options))
            opts = StreamOptions(
                {"stream_id": stream_id, "stream_recovery": True, "recovery": stored.recovery}, self._live_timeout()
            )
            return request, opts, Resume(stored.text, len(stored.text), False, stored.resume_state)  # natively where it can

        stream = self._produce_stored(store, stream_id, token, continuation)
        return True if stream is None else StreamHandle(stream, lambda: self.cancel_stream(stream_id))

    def _produce_stored(
        self,
        store: RecoveryStore,
        stream_id: str,
        token: Optional[str],
        continuation: Callable[[StoredStream], Optional[Continuation]],
        stored: Optional[StoredStream] = None,
    ) -> Optional[ChatStream]:
        """Produce ``stream_id`` from its record, as ``resume`` and a take-over do, holding
        the lease ``token`` (None: a store without leases, or a completed record replayed):
        load the record (unless ``stored`` is given; under the lease nobody else changes
        it), build the continuation (``continuation(stored)``: the request, the options and
        where to resume, or None when there is nothing to produce), forget the outcome of
        the generation before (readers follow this one instead of ending with its error),
        start the producer. None, the lease given back, when the record is gone or
        completed meanwhile, or there is nothing to produce; any error gives it back too."""
        from streamcoord._stored import load_stored

        try:
            if stored is None:
                stored = load_stored(store, stream_id)
            planned = None
            if stored is not None and not (token is not None and stored.completed):
                planned = continuation(stored)
            if stored is None or planned is None or (token is not None and not _clear_outcome(store, stream_id, token)):
                if token is not None:
                    store.release_lease(stream_id, token)
                return None
            request, opts, resume = planned
            lease = None if token is None else (store, token)
            return self._stream(request, opts, stored.messages, stored.options, resume, lease)  # type: ignore[no-any-return]
        except BaseException:
            if token is not None:
                store.release_lease(stream_id, token)
            raise


def try_lease(store: RecoveryStore, stream_id: str, ttl: float) -> Union[str, bool, None]:
    """The lease's token; False when another producer holds it; None when the store has
    no leases (a custom store written before live streams)."""
    try:
        token = store.acquire_lease(stream_id, ttl)
    except NotImplementedError:
        return None
    except Exception as exc:
        raise RecoveryFailed(f"the recovery store {store!r} failed to take the lease of {stream_id!r}: {exc}") from exc
    return token if token else False


def _clear_outcome(store: RecoveryStore, stream_id: str, token: str) -> bool:
    """Forget the outcome of the generation before; False if the lease ``token`` lapsed
    already (another producer may have it: produce nothing)."""
    from recovery_store.base import LeaseLost

    try:
        store.clear_outcome(stream_id, lease=token)
    except NotImplementedError:
        pass  # a store written before clear_outcome: a resumed failure's readers may end with the old error
    except LeaseLost:
        return False
    except Exception as exc:
        raise RecoveryFailed(f"the recovery store {store!r} failed to update stream {stream_id!r}: {exc}") from exc
    return True


def _leased(store: RecoveryStore, stream_id: str) -> bool:
    try:
        return store.leased(stream_id)
    except Exception:  # a store without leases (or failing): nothing is being produced
        return False


def _known(store: RecoveryStore, stream_id: str) -> bool:
    """Whether the store has a record, an outcome or a lease for ``stream_id``."""
    try:
        return store.load(stream_id) is not None or final_text(store, stream_id) is not None or _leased(
            store, stream_id)
    except Exception as exc:
        raise RecoveryFailed(f"the recovery store {store!r} failed to read stream {stream_id!r}: {exc}") from exc


def final_text(store: RecoveryStore, stream_id: str) -> Optional[str]:
    """The final text of a stream completed without ``keep`` (kept briefly with its outcome)."""
    try:
        outcome = store.outcome(stream_id)
    except Exception:
        return None
    text = outcome.get("text") if outcome else None
    return text if isinstance(text, str) else None


class StreamHandle:
    """A live generation started by ``client.start``; it runs whether or not anyone reads.

    ``wait(timeout)`` waits for its end; ``text``, ``finish_reason``, ``usage`` and
    ``error`` describe it (the final values once ``done``). ``cancel()`` stops it, as
    ``client.cancel_stream(stream_id)`` does from any process.
    """

    def __init__(self, stream: ChatStream, cancel: Callable[[], None]) -> None:
        self.stream_id = stream.stream_id
        self.provider = stream.provider
        self._stream = stream
        self._cancel = cancel
        live = getattr(stream._spec, "live", None)
        if live is not None:
            live.detached = True  # nobody reads it here: a lost lease stops it
        self.error: Optional[BaseException] = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"streamcoord-live-{self.stream_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for _ in self._stream:  # nobody needs the chunks here: readers attach to the store
                pass
        except BaseException as exc:  # the readers get it through the store; kept here too
            self.error = exc
        finally:
            self._done.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the generation has ended; True if it has."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Stop the generation (wherever readers are); the producer stops within 1 s."""
        self._cancel()

    @property
    def text(self) -> str:
        return self._stream.text

    @property
    def finish_reason(self) -> Optional[str]:
        return self._stream.finish_reason

    @property
    def usage(self) -> Optional[Dict[str, Any]]:
        return self._stream.usage

    def __repr__(self) -> str:
        state = "done" if self.done else "generating"
        return f"<StreamHandle stream_id={self.stream_id!r} provider={self.provider!r} {state}>"
