"""Stream an answer to a browser over Server-Sent Events, from any WSGI view (Django, Flask).

    from streamcoord import web

    def chat_events(request):                                   # a Django view
        stream = web.open_stream(
            client, [{"role": "user", "content": request.GET["prompt"]}],
            stream_id=request.GET["stream_id"], last_event_id=request.headers.get("Last-Event-ID"),
            model="gpt-4o-mini", track_metrics=True,
        )
        body = web.sse_body(stream, disconnected=web.disconnect_probe(request.META))
        return StreamingHttpResponse(body, headers=web.SSE_HEADERS)

    # Flask: return Response(body, headers=web.SSE_HEADERS), with request.environ for the probe.

With ``detach=True`` the answer is generated apart from the connection (``client.start``)
and every request attaches to it, in whichever process it lands: a browser that leaves
never stops or restarts it, and a Stop button calls ``client.cancel_stream``.

What the page's ``EventSource`` receives (data is JSON; ``id`` is how many characters of
the answer the browser has after the event, so the ``Last-Event-ID`` it sends when it
reconnects is exactly the offset ``client.resume`` continues from)::

    id: 42 / data: {"content": "..."}                  append content
    id: 30 / event: rewind / data: {"rewind": 12}      a recovery cut back: drop the last 12 characters
    event: metrics / data: {...}                       every metrics_interval seconds, if set
    event: error / data: {"error": "ServerError", "message": "..."}     and the stream ends
    event: done / data: {"finish_reason": ..., "usage": ..., "metrics": {...}}   and it ends
    : keep-alive                                       while the model is quiet

Characters are Python's (code points): a page applying a rewind must count code points
(``Array.from(text)``), not UTF-16 units. A ``transform_chunk`` that changes the length of
the text would make the ids disagree with the stored text, so don't use one here.

The body has a ``close()``: WSGI servers call it when the browser goes away (Django's
``StreamingHttpResponse`` and Flask's ``Response`` pass it on), and it stops the worker and
closes the upstream connection. A browser that goes away while the model is quiet is
noticed at the next keep-alive write, or within half a second when the server can tell
(``disconnect_probe``: waitress with ``channel_request_lookahead >= 1``, gunicorn).

Nothing here imports Django or Flask.
"""

from __future__ import annotations

import errno
import json
import math
import re
import socket
import threading
import time
import types
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, Iterator, List, Mapping, Optional, cast

from streamcoord._logging import StreamLogger
from streamcoord._options import STREAM_OPTIONS
from streamcoord._stream import ChatStream
from streamcoord.errors import (
    APIError,
    AuthenticationError,
    ChunkValidationError,
    ConnectionLost,
    ProtocolError,
    RateLimitError,
    RecoveryFailed,
    ServerError,
    StreamcoordError,
    StreamTimeout,
)

if TYPE_CHECKING:
    from streamcoord._client import Client

__all__ = ["SSE_HEADERS", "EventStreamBody", "disconnect_probe", "open_stream", "sse_body"]

#: The response headers of an event stream. ``X-Accel-Buffering: no`` stops nginx (and
#: proxies that follow it) from buffering the answer; ``no-cache`` keeps caches out.
SSE_HEADERS: Mapping[str, str] = types.MappingProxyType({
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
})

#: How long the browser waits before it reconnects (sent as the stream's ``retry:`` field).
RETRY_MS = 2000
#: How often a disconnect probe is asked while the model is quiet (seconds).
PROBE_SECONDS = 0.5

# What a browser may be told about a failure: the class and a generic text, never the
# provider's body, a URL or a key. Subclasses before their bases.
_SAFE_MESSAGES = (
    (AuthenticationError, "The model provider refused the server's credentials."),
    (RateLimitError, "The model provider is busy; try again in a moment."),
    (ServerError, "The model provider had an internal error."),
    (APIError, "The model provider rejected the request."),
    (StreamTimeout, "The model stopped responding."),
    (ConnectionLost, "The connection to the model provider was lost."),
    (ProtocolError, "The model provider sent a malformed stream."),
    (ChunkValidationError, "The answer did not pass validation."),
    (RecoveryFailed, "The answer could not be completed, even after reconnecting."),
    (StreamcoordError, "The answer stream failed."),
)

_LAST_EVENT_ID = re.compile(r"[0-9]{1,15}\Z")

# Where each stream opened by open_stream starts (the characters the browser already has).
_start_offsets: "weakref.WeakKeyDictionary[ChatStream, int]" = weakref.WeakKeyDictionary()
# The stream each id is being served by in this process (see open_stream).
_active: "weakref.WeakValueDictionary[str, ChatStream]" = weakref.WeakValueDictionary()
_active_lock = threading.Lock()


def open_stream(
    client: Client,
    messages: List[Dict[str, Any]],
    *,
    stream_id: str,
    last_event_id: Optional[str] = None,
    detach: bool = False,
    **options: Any,
) -> ChatStream:
    """Start the answer ``stream_id``, or take it up again where the browser left off.

    Without ``last_event_id`` (the request's ``Last-Event-ID`` header, None or "" when
    absent): ``client.stream_chat(messages, stream_id=stream_id, stream_recovery=True,
    **options)``. With one: ``client.resume(stream_id, offset=int(last_event_id))`` with the
    stream options among ``options`` (the request itself, model and messages included, is
    the stored one, so ``messages`` and request options are not used).

    Raises ``ValueError`` for a Last-Event-ID that is not a character count, an offset past
    the stored text, or a malformed ``stream_id`` (answer 400), and lets ``RecoveryFailed``
    out when the id is unknown, was completed (unless ``recovery={"keep": True}``) or has
    expired: answer it with ``410 Gone``, which also stops the browser's EventSource from
    reconnecting (any non-200 answer does), or start over.

    ``detach=True``: the answer is generated apart from any one connection. The first
    request starts it with ``client.start`` (unless the store knows the id already: then,
    and when another process starts it first, it is followed instead), and every request,
    the first included, follows it with ``client.attach`` from ``last_event_id``, in
    whichever process it lands. A browser that goes away closes only its reader: the generation goes on, and a
    reconnect follows it; ``client.cancel_stream(stream_id)`` (a Stop button) ends it. The
    options that shape the generation (request options, ``recovery``, ``timeout``,
    ``validate_chunk``, ``on_error``) go to ``start``; ``track_metrics``, ``on_metrics``,
    ``transform_chunk`` and ``buffer_chunks`` to each reader. All processes need one shared
    store (``DiskStore`` in one directory on one machine, ``RedisStore`` across machines).

    Without ``detach``, a stream of the same id still served in this process (the browser reconnected before
    the server noticed its old connection was gone) is closed first, so that two workers
    never write the same stored record. With several processes, a reconnect may land on
    another one: give them a shared store (``DiskStore`` on one machine, ``RedisStore``
    across machines).
    """
    if not isinstance(stream_id, str):
        raise TypeError(f"stream_id must be a str naming the answer (the page makes it), got {stream_id!r:.80}")
    if options.pop("stream_recovery", True) is not True:
        raise ValueError("open_stream always uses stream_recovery=True: resuming after a reconnect needs it")
    if not isinstance(detach, bool):
        raise TypeError(f"detach must be True or False, got {detach!r:.80}")
    offset = _parse_last_event_id(last_event_id)
    if detach:
        stream = client._start_or_attach(messages, stream_id, offset, options)
        with _active_lock:
            _start_offsets[stream] = offset or 0
        return stream
    _close_active(stream_id)
    if offset is None:
        stream = client.stream_chat(messages, stream_id=stream_id, stream_recovery=True, **options)
        offset = 0
    else:
        stream_options = {k: v for k, v in options.items() if k in STREAM_OPTIONS}
        stream = client.resume(stream_id, offset=offset, **stream_options)
    with _active_lock:
        _start_offsets[stream] = offset
        _active[stream_id] = stream
    return stream


def _parse_last_event_id(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"last_event_id must be the Last-Event-ID header (a str) or None, got {value!r:.80}")
    value = value.strip()
    if not value:
        return None  # EventSource sends no header before the first id; "" means the same
    if not _LAST_EVENT_ID.match(value):
        raise ValueError(f"Last-Event-ID must be a character offset (digits only), got {value!r:.40}")
    return int(value)


def _close_active(stream_id: str) -> None:
    with _active_lock:
        old = _active.pop(stream_id, None)
    if old is not None and not old.closed:
        old.close()  # waits (bounded) for its worker: the stored record is final afterwards


def sse_body(
    stream: ChatStream,
    *,
    keepalive: float = 15.0,
    metrics_interval: Optional[float] = None,
    disconnected: Optional[Callable[[], bool]] = None,
    offset: Optional[int] = None,
) -> "EventStreamBody":
    """The response body for ``stream``: an iterable of ``bytes`` with a ``close()``.

    ``keepalive``: seconds of quiet before a ``: keep-alive`` comment, so that proxies keep
    the connection and a browser that went away is noticed by the write failing.
    ``metrics_interval``: seconds between ``metrics`` events (None: only the final ones in
    ``done``). ``disconnected``: a function that says the browser has gone (see
    ``disconnect_probe``), asked about every half second. ``offset``: the characters the
    browser already has; by default what ``open_stream`` resumed from, else 0.
    """
    if isinstance(keepalive, bool) or not isinstance(keepalive, (int, float)) or not keepalive > 0:
        raise ValueError(f"keepalive must be a number of seconds > 0, got {keepalive!r}")
    if metrics_interval is not None and (
        isinstance(metrics_interval, bool) or not isinstance(metrics_interval, (int, float)) or not metrics_interval > 0
    ):
        raise ValueError(f"metrics_interval must be None or a number of seconds > 0, got {metrics_interval!r}")
    if disconnected is not None and not callable(disconnected):
        raise TypeError(f"disconnected must be a function () -> bool or None, got {disconnected!r:.80}")
    if offset is None:
        with _active_lock:
            offset = _start_offsets.get(stream, 0)
    return EventStreamBody(stream, float(keepalive), metrics_interval, disconnected, offset)


class EventStreamBody:
    """An SSE response body: iterate it once for ``bytes``; ``close()`` closes the stream.

    Errors never escape to the server: they end the stream with an ``error`` event (the
    details go to the ``streamcoord`` log, not to the browser).
    """

    def __init__(
        self,
        stream: ChatStream,
        keepalive: float,
        metrics_interval: Optional[float],
        disconnected: Optional[Callable[[], bool]],
        offset: int,
    ) -> None:
        self.stream = stream
        self.offset = offset  # characters the browser has: the id of the last event sent
        self._keepalive = keepalive
        self._metrics_interval = metrics_interval
        self._disconnected = disconnected
        self._log = StreamLogger(stream.stream_id, stream.provider)
        self._events = self._generate()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._events)

    def close(self) -> None:
        """Stop the stream and close its upstream connection (waits briefly for the
        worker). Idempotent; may be called from another thread."""
        self.stream.close()
        try:
            self._events.close()
        except ValueError:
            pass  # running in another thread: it finds the stream closed and ends

    def _generate(self) -> Generator[bytes, None, None]:
        stream = self.stream
        try:
            # Bytes at once: servers send the headers with the first non-empty write, and
            # the browser's EventSource opens only then. Also sets its reconnection delay.
            yield b"retry: %d\n\n" % RETRY_MS
            now = time.monotonic()
            next_keepalive = now + self._keepalive
            interval = self._metrics_interval
            next_metrics = now + interval if interval else math.inf
            next_probe = now + PROBE_SECONDS if self._disconnected is not None else math.inf
            while True:
                wait = min(next_keepalive, next_metrics, next_probe) - now
                try:
                    batch = stream.poll(max(wait, 0.0))
                except Exception as exc:  # the stream's own error, raised by poll
                    if not stream.closed:
                        yield self._error_event(exc)
                    return
                if stream.closed:
                    return  # closed elsewhere (a reconnect took over): nothing more to say
                if batch is None:
                    yield self._done_event()
                    return
                now = time.monotonic()
                if batch:
                    data = self._content_events(batch)
                    if data:
                        yield data
                        next_keepalive = now + self._keepalive
                if now >= next_probe:
                    next_probe = now + PROBE_SECONDS
                    if self._browser_gone():
                        return
                if now >= next_metrics:
                    next_metrics = now + interval  # type: ignore[operator]
                    next_keepalive = now + self._keepalive
                    yield _event(self._metrics(), "metrics")
                if now >= next_keepalive:
                    next_keepalive = now + self._keepalive
                    yield b": keep-alive\n\n"
        finally:
            # Also when the server drops the body without calling close(), or on an error.
            stream.close()

    def _content_events(self, batch: List[Any]) -> bytes:
        out = []
        offset = self.offset
        for chunk in batch:
            recovery = chunk.metadata.get("recovery") if chunk.metadata else None
            if recovery:
                rewind = min(int(recovery.get("rewind") or 0), offset)
                if rewind:
                    offset -= rewind
                    # The id goes down too: a reconnect after this must not rewind twice.
                    out.append(_event({"rewind": rewind}, "rewind", offset))
            content = chunk.content
            if content:
                offset += len(content)
                out.append(_event({"content": content}, None, offset))
        self.offset = offset
        return b"".join(out)

    def _browser_gone(self) -> bool:
        try:
            gone = bool(self._disconnected())  # type: ignore[misc]
        except Exception:  # a probe that fails says nothing; the next write will tell
            self._log.debug("disconnect probe failed", exc_info=True)
            return False
        if gone:
            self._log.debug("the browser went away; closing the stream")
        return gone

    def _metrics(self) -> Optional[Dict[str, Any]]:
        metrics = self.stream.metrics
        return None if metrics is None else metrics.as_dict()

    def _done_event(self) -> bytes:
        stream = self.stream
        data = {"finish_reason": stream.finish_reason, "usage": stream.usage, "metrics": self._metrics()}
        return _event(data, "done", self.offset)

    def _error_event(self, exc: BaseException) -> bytes:
        if isinstance(exc, StreamcoordError):
            name = type(exc).__name__
            text = next(text for cls, text in _SAFE_MESSAGES if isinstance(exc, cls))
            self._log.warning("the answer stream failed: %r", exc)
        else:  # a bug, not the provider: its class name would tell the browser too much
            name, text = "InternalError", "The server could not stream the answer."
            self._log.error("the answer stream failed", exc_info=exc)
        return _event({"error": name, "message": f"{name}: {text}"}, "error", self.offset)


def _event(data: Any, event: Optional[str] = None, event_id: Optional[int] = None) -> bytes:
    """One SSE event. JSON with ASCII escapes: one line, never a raw CR/LF, and valid even
    for a lone surrogate that a provider split across two chunks."""
    head = b""
    if event_id is not None:
        head += b"id: %d\n" % event_id
    if event is not None:
        head += b"event: %s\n" % event.encode("ascii")
    return head + b"data: " + json.dumps(data, default=str).encode("ascii") + b"\n\n"


def disconnect_probe(environ: Mapping[str, Any]) -> Optional[Callable[[], bool]]:
    """A function telling whether the browser of this request has gone, where the WSGI
    server can say so without a write; None where it cannot (then the next write tells).

    Pass ``request.environ`` (Flask) or ``request.META`` (Django). Knows waitress (needs
    ``channel_request_lookahead >= 1``, else waitress does not read the socket while a
    request runs) and gunicorn (peeks at ``gunicorn.socket``).
    """
    check = environ.get("waitress.client_disconnected")
    if callable(check):
        return cast(Callable[[], bool], check)
    sock = environ.get("gunicorn.socket")
    if isinstance(sock, socket.socket) and hasattr(socket, "MSG_DONTWAIT"):
        return lambda: _peer_closed(sock)
    return None


def _peer_closed(sock: socket.socket) -> bool:
    """True once the peer has closed or reset the connection (an empty peek: EOF)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # open, nothing to read
    except ValueError:
        return False  # a TLS socket takes no flags: cannot tell
    except OSError as exc:
        return exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.EBADF)
