"""The transport: one stream's HTTP exchange, from sending the request to closing the body.

``Transport`` sends (through a requests ``Session``, ours or the caller's), follows the
redirects it may follow, reads the body with a time limit per read, undoes the chunked
framing and the ``Content-Encoding``, and can be cancelled from another thread, which
wakes a worker blocked on the network at once. Every low-level exception (requests,
urllib3, http.client, socket, ssl, zlib) becomes a streamcoord error here, through one
table (``_error_table.translate``), raised ``from`` its cause.

Its helpers have no other user: ``_http_decoders`` (chunked framing, gzip/deflate/br/zstd;
no I/O), ``_urls`` (which redirects may be followed; what of a URL is shown),
``_error_table`` (the mapping) and ``_sockets`` (how a cancel reaches the socket where
urllib3's ``shutdown()`` cannot).

Reading: many HTTP chunks per read, not one. Read through urllib3/http.client, each
``read1`` returns at most one HTTP chunk, so a stream of small events would pay the whole
read path once per event. Here the body is read straight from the connection's buffered
socket reader and the framing is undone by ``ChunkedDecoder`` (no I/O). A response whose
socket cannot be reached (an adapter that is not urllib3's) is read through urllib3's
``read1``, which is correct, only slower.
"""

from __future__ import annotations

import json
import select
import threading
import time
from typing import Any, Callable, Dict, Optional

import requests
import urllib3.response

from streamcoord._adapter import HTTPRequest
from streamcoord._environment import send_streamed
from streamcoord._error_table import translate
from streamcoord._http_decoders import ACCEPT_ENCODING, ChunkedDecoder, content_decoder
from streamcoord._sockets import StreamingAdapter, response_socket, sending, shutdown_socket, socket_in_flight
from streamcoord._urls import MAX_REDIRECTS, redirect_target, safe_url
from streamcoord.errors import ConnectionLost, StreamcoordError, StreamTimeout

__all__ = ["MAX_ERROR_BODY", "MIN_READ_SIZE", "TIMEOUT_SLACK_SECONDS", "StreamingAdapter", "Transport", "safe_url"]

MAX_ERROR_BODY = 1 << 20
# How much later than its time limit a read may give up (see Transport.read).
TIMEOUT_SLACK_SECONDS = 0.002
# The smallest read of a body: an event or two of a paced stream (see _read_fast).
MIN_READ_SIZE = 2048


class Transport:
    """One stream's connection to its provider, one response at a time.

    The worker thread calls ``open``, then ``error_body`` (an answer that is not a stream)
    or ``start_body`` and ``read`` until ``complete``, ``drain`` and ``close``; ``cancel``
    may come from any thread, at any time, and is idempotent. A read that waits longer
    than its time limit raises ``StreamTimeout``.
    """

    def __init__(self, session: requests.Session, provider: str, read_size: int = 16384) -> None:
        self._session = session
        self._provider = provider
        self._read_size = read_size  # adapts between MIN_READ_SIZE and this (_read_fast)
        self._max_read_size = read_size
        self.cancelled = False
        self._lock = threading.Lock()  # guards _sock/_raw against a cancel from another thread
        self._sock: Any = None  # what cancel() shuts down: the socket of the request in flight
        self._sending_thread: Optional[int] = None
        self.response: Optional[requests.Response] = None
        self._raw: Any = None
        self.complete = False
        self._body_started = False
        self._location: Optional[str] = None  # of the last redirect, taken by _take_location
        self._headers_wait = 0.0  # the read timeout of the last request sent

    # -- sending -----------------------------------------------------------------------
    def open(self, request: HTTPRequest, connect: float, read: float) -> requests.Response:
        """Send the request; follow a 307/308 to the same origin (at most 5); return the
        response with its body unread. Any other redirect is an ``APIError``."""
        self.close()
        self.complete = False
        self._body_started = False
        url = request.url
        headers = dict(request.headers)
        if not any(name.lower() == "accept-encoding" for name in headers):
            headers["Accept-Encoding"] = ACCEPT_ENCODING
        seen = {url}
        for _hop in range(MAX_REDIRECTS + 1):
            response = self._send(request, url, headers, connect, read)
            if not 300 <= response.status_code < 400:
                return response
            body = self.error_body()
            self.close()
            url = redirect_target(response.status_code, url, self._location, seen, self._provider, body)
            seen.add(url)
        raise AssertionError("unreachable: redirect_target refuses the redirect after the last")  # pragma: no cover

    def _send(self, request: HTTPRequest, url: str, headers: Dict[str, str], connect: float, read: float) -> requests.Response:
        if self.cancelled:
            raise ConnectionLost("the stream was closed")
        sending.transport = self
        self._sending_thread = threading.get_ident()
        self._location = None
        self._headers_wait = read
        try:
            session = self._session
            # Request hooks replace the session's: keep the caller's, then ours.
            hooks = {"response": [*(session.hooks.get("response") or []), self._take_location]}
            response = send_streamed(session, request.method, url, headers, request.json, request.content, hooks, (connect, read))
        except StreamcoordError:
            raise
        except Exception as exc:
            error = translate(
                exc, f"could not reach {self._provider} at {safe_url(url)}", self._headers_timeout(read, connect), sending=True
            )
            if error is None:
                raise
            raise error from exc
        finally:
            sending.transport = None
            self._sending_thread = None
        with self._lock:
            self.response = response
            self._raw = response.raw
            self._sock = response_socket(response.raw)
            self.complete = False
            self._body_started = False
            if self.cancelled:  # closed while the request was in flight
                self._shutdown_locked()
        return response

    def _take_location(self, response: requests.Response, **kwargs: Any) -> None:
        """A response hook: take a redirect's Location away before requests looks at it.
        With ``allow_redirects=False`` requests still parses it (for ``Response.next``), and
        a bad one raises a bare ValueError with the response, and its connection, lost."""
        if 300 <= response.status_code < 400:
            self._location = response.headers.pop("location", None)

    def _headers_timeout(self, read: float, connect: float) -> Callable[[BaseException], StreamTimeout]:
        provider = self._provider

        def timeout(exc: BaseException) -> StreamTimeout:
            if "connect" in type(exc).__name__.lower():
                return StreamTimeout(f"could not connect to {provider} within {connect:.3g}s")
            return StreamTimeout(f"{provider} sent no response headers within {read:.3g}s")

        return timeout

    def announce(self, sock: Any) -> None:
        """Called on the sending thread by our connections: the request's socket, known
        while the request is still in flight (before the headers come)."""
        with self._lock:
            self._sock = sock
            if self.cancelled:
                shutdown_socket(sock)

    # -- reading -----------------------------------------------------------------------
    def start_body(self) -> None:
        """Get ready to read the body (``read`` does it on its first call too)."""
        if self._body_started:
            return
        self._body_started = True
        raw = self._raw
        self._content = content_decoder(self.response.headers.get("content-encoding"), self._max_read_size)  # type: ignore[union-attr]
        self._ended: Optional[bool] = None  # the body's last bytes are in, decoded text still pending: reusable?
        self._chunked: Optional[ChunkedDecoder] = None
        self._left: Optional[int] = None
        http_response = getattr(raw, "_fp", None)
        sock_file = getattr(http_response, "fp", None)
        if (
            sock_file is not None
            and http_response is not None
            and hasattr(sock_file, "read1")
            and hasattr(http_response, "chunked")
        ):
            self._http_response = http_response
            self._read1: Optional[Callable[[int], bytes]] = sock_file.read1
            if http_response.chunked:
                self._chunked = ChunkedDecoder()
            else:
                self._left = http_response.length  # None: delimited by the connection closing
        else:  # not urllib3 over http.client (a test double, another adapter): plain reads
            self._http_response = None
            self._read1 = None
            if isinstance(raw, urllib3.response.HTTPResponse):  # its read1 undoes the framing
                self._slow_read: Callable[[int], bytes] = lambda n: raw.read1(n, decode_content=False)
            else:
                self._slow_read = getattr(raw, "read1", None) or raw.read

    def read(self, limit: float) -> bytes:
        """The next piece of the decoded body, waiting at most ``limit`` seconds; ``b""``
        at its end (then ``complete`` is True). A body cut short is a ``ConnectionLost``."""
        if self.complete:
            return b""
        try:
            if not self._body_started:
                self.start_body()
            sock = self._sock
            if sock is not None:
                # settimeout is a system call (ioctl) each time, ~0.5 us per read (timeit,
                # strace): skip it while the socket's timeout is already within
                # TIMEOUT_SLACK_SECONDS above this read's limit (a wait may end that much
                # later than asked, never sooner).
                current = sock.gettimeout()
                if current is None or not limit <= current <= limit + TIMEOUT_SLACK_SECONDS:
                    sock.settimeout(limit + TIMEOUT_SLACK_SECONDS / 2)
            content = self._content
            if content is not None and content.pending:  # decoded text left from the last read
                data = content.decode(b"")
                if self._ended is not None and not content.pending:
                    return data + self._end(self._ended)
                if data:
                    return data
            if self._ended is not None:
                return self._end(self._ended)
            if self._read1 is None:
                return self._read_slow()
            if self._left == 0:  # Content-Length: 0
                return self._end()
            return self._read_fast(sock, limit)
        except StreamcoordError:
            raise
        except Exception as exc:
            error = translate(exc, f"the connection to {self._provider} broke mid-stream", self._read_timeout)
            if error is None:
                raise
            raise error from exc

    def wait_ready(self, timeout: float) -> bool:
        """Whether the next ``read`` has bytes in hand (decoded text left over, TLS records
        decrypted, or the socket readable) within ``timeout`` seconds, so it would return
        without waiting. A cancel wakes it (the shut-down socket is readable)."""
        content = self._content
        if content is not None and content.pending:
            return True
        sock = self._sock
        if sock is None:
            return False
        try:
            pending = getattr(sock, "pending", None)  # TLS: what the SSL object has decrypted
            if pending is not None and pending():
                return True
            return bool(select.select([sock], [], [], max(timeout, 0.0))[0])
        except (OSError, ValueError):  # closed or cancelled meanwhile: the next read will tell
            return True

    def _read_timeout(self, exc: Optional[BaseException] = None) -> StreamTimeout:
        return StreamTimeout(f"no data from {self._provider} within the time limit")

    def _read_fast(self, sock: Any, limit: float) -> bytes:
        read1 = self._read1
        chunked = self._chunked
        content = self._content
        deadline = None
        while True:
            size = self._read_size
            data = read1(size)  # type: ignore[misc]
            if not data:
                return self._eof()
            # read1 allocates its whole buffer before it blocks in recv, and a paced stream
            # waits there between its events: at 16 KiB per open stream that was ~20 KiB
            # of RSS a stream (bench_concurrency, 300 streams). A read that fills the buffer
            # doubles it (a fast stream keeps 16 KiB reads), one well under it halves it.
            got = len(data)
            if got == size:
                if size < self._max_read_size:
                    self._read_size = min(size << 1, self._max_read_size)
            elif got < size >> 2 and size > MIN_READ_SIZE:
                self._read_size = max(size >> 1, MIN_READ_SIZE)
            if chunked is not None:
                data = chunked.decode(data)
                if chunked.done:
                    return self._last(data, chunked.reusable)
            elif self._left is not None:
                if len(data) > self._left:
                    data = data[: self._left]
                self._left -= len(data)
                if self._left == 0:
                    return self._last(data, True)
            if data and content is not None:
                data = content.decode(data)
            if data:
                return data
            # Only framing (or a compressed stream's header) arrived: read on, within the
            # same time limit.
            now = time.monotonic()
            if deadline is None:
                deadline = now + limit
            if now >= deadline:
                raise self._read_timeout()
            if sock is not None:
                sock.settimeout(deadline - now)

    def _last(self, data: bytes, reusable: bool) -> bytes:
        """The body's last bytes: the end, unless decoded text is still pending."""
        content = self._content
        if content is None:
            return data + self._end(reusable)
        data = content.decode(data)
        if content.pending:
            self._ended = reusable  # the next reads give the rest, then the end
            return data
        return data + self._end(reusable)

    def _read_slow(self) -> bytes:
        while True:
            data = self._slow_read(self._read_size)
            if not data:
                return self._end()
            if self._content is not None:
                data = self._content.decode(data)
            if data:
                return data

    def _eof(self) -> bytes:
        if self._chunked is not None or self._left:
            raise ConnectionLost(f"{self._provider} closed the connection in the middle of the response body")
        return self._end()  # a body delimited by the connection closing

    def _end(self, reusable: bool = True) -> bytes:
        """The body is complete: hand the connection back to the pool for reuse."""
        tail = self._content.flush() if self._content is not None else b""
        self.complete = True
        if not reusable:
            self.close()
            return tail
        with self._lock:
            # From here the socket may serve another stream: a cancel() of this one must
            # not reach it.
            self._sock = None
            raw, self._raw = self._raw, None
        try:
            if self._http_response is not None:
                self._http_response.close()  # http.client's view: this response is done
            raw.release_conn()
        except Exception:  # noqa: S110 - only reuse is lost; the answer is complete
            pass
        return tail

    def error_body(self) -> Any:
        """An error answer's body (bounded in size, and in time by the wait allowed for
        the headers), decoded from JSON when it is JSON; None when it cannot be read."""
        parts = []
        size = 0
        deadline = time.monotonic() + self._headers_wait
        try:
            while size < MAX_ERROR_BODY:
                data = self.read(max(deadline - time.monotonic(), 0.001))
                if not data:
                    break
                parts.append(data)
                size += len(data)
        except StreamcoordError:  # a body we cannot read still leaves the status to report
            if not parts:
                return None
        text = b"".join(parts)[:MAX_ERROR_BODY].decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def drain(self, seconds: float, max_bytes: int) -> None:
        """After the end of the answer: read what is left of the body, briefly and only a
        little, so the connection can be reused; a server that goes on sending or stays
        silent gets its connection closed instead."""
        deadline = time.monotonic() + seconds
        left = max_bytes
        try:
            while not self.complete and left > 0 and self.response is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                data = self.read(remaining)
                if not data:
                    break
                left -= len(data)
        except StreamcoordError:  # the answer is complete; only reuse is lost
            pass
        if not self.complete:
            self.close()

    # -- cancelling and closing ----------------------------------------------------------
    def cancel(self) -> None:
        """Wake the thread blocked on this transport: shut its socket down. Idempotent."""
        with self._lock:
            self.cancelled = True
            self._shutdown_locked()

    def _shutdown_locked(self) -> None:
        raw = self._raw
        if raw is not None:
            try:
                # urllib3's own mechanism (2.3+): it kept the socket's shutdown before
                # http.client took the socket over (Connection: close, HTTP/1.0).
                raw.shutdown()
                return
            except (AttributeError, ValueError, RuntimeError, OSError):
                pass  # none kept (a TLS-in-TLS socket has no shutdown): ours below
        sock = self._sock
        if sock is None and self._sending_thread is not None:
            # A session of the caller's, still waiting for the headers: its connections do
            # not announce their socket, so look for it in the sending thread's stack.
            sock = socket_in_flight(self._sending_thread)
        if sock is not None:
            shutdown_socket(sock)

    def close(self) -> None:
        """Close the current response; its connection goes back to the pool only when
        its body was read to the end."""
        with self._lock:
            response, self.response = self.response, None
            self._sock = None
            self._raw = None
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: S110 - closing a broken connection may fail; it is gone either way
                pass
