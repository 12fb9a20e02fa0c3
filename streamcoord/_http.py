"""HTTP for the worker: sending the request, reading the body, translating errors.

Low-level errors (requests, urllib3, http.client, sockets) become streamcoord errors here
and nowhere else, raised ``from`` their cause.

Reading a streamed response body: many HTTP chunks per read, not one.

Providers send every event as its own HTTP/1.1 chunk. Read through urllib3/http.client,
each ``read1`` returns at most one chunk, so a stream of small events pays the whole
read path (urllib3's error catcher, http.client's chunk bookkeeping) once per event. Here
the body is read straight from the connection's buffered socket reader, up to 64 KiB at a
time, and the chunked framing is undone by ``ChunkedDecoder`` (``feed(bytes) -> bytes``,
no I/O). Anything unusual (a compressed body, an unknown transport) takes the ordinary
urllib3 path, which is correct, only slower.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from typing import Any, Callable, Optional

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from streamcoord._adapter import HTTPRequest
from streamcoord.errors import ConnectionLost, ProtocolError, StreamTimeout

__all__ = [
    "BodyReader",
    "ChunkedDecoder",
    "StreamingAdapter",
    "read_error_body",
    "reason",
    "safe_url",
    "send",
    "translate_read_error",
]

MAX_ERROR_BODY = 1 << 20


# A worker that is sending a request learns its socket through this, as soon as the
# connection has one, so that close() can wake a worker still waiting for the headers.
_sending = threading.local()


def _announce(sock: Any) -> None:
    on_socket = getattr(_sending, "on_socket", None)
    if on_socket is not None and sock is not None:
        on_socket(sock)


class _Announcing:
    """Mixed into urllib3's connections: tell the sending worker which socket it uses."""

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        _announce(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        _announce(getattr(self, "sock", None))  # a kept-alive connection has its socket already
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Announcing, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Announcing, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class StreamingAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections that let close() reach a request in flight."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):  # not for SOCKS, which has its own
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager


def send(
    session: requests.Session,
    request: HTTPRequest,
    provider: str,
    connect: float,
    read: float,
    on_socket: Optional[Callable[[Any], None]] = None,
) -> requests.Response:
    """Send the request and return the response with its body unread. ``on_socket`` learns
    the connection's socket while the request is still in flight (sessions made by
    ``streamcoord.new_session``; with others, only once the headers have arrived)."""
    _sending.on_socket = on_socket
    try:
        return session.request(
            request.method, request.url, json=request.json, data=request.content, headers=request.headers,
            stream=True, timeout=(connect, read),
        )
    except requests.exceptions.ConnectTimeout as exc:
        raise StreamTimeout(f"could not connect to {safe_url(request.url)} within {connect}s") from exc
    except requests.exceptions.ReadTimeout as exc:
        raise StreamTimeout(f"{provider} sent no response headers within {read:.3g}s") from exc
    except requests.exceptions.ConnectionError as exc:
        raise ConnectionLost(f"could not reach {provider} at {safe_url(request.url)}: {reason(exc)}") from exc
    except requests.exceptions.RequestException as exc:  # an URL requests cannot use, and the like
        raise ValueError(f"cannot send a request to {safe_url(request.url)}: {exc}") from exc
    finally:
        _sending.on_socket = None


def safe_url(url: str) -> str:
    """The URL to show in logs and errors: no user:password, no query values."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "&".join(f"{name}=..." for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def read_error_body(response: requests.Response) -> Any:
    """An error answer's body, decoded from JSON when it is JSON (bounded in size)."""
    try:
        data = response.raw.read(MAX_ERROR_BODY, decode_content=True)
    except Exception:  # a body we cannot read still leaves the status to report
        return None
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def translate_read_error(exc: BaseException, provider: str, timeout_error: Callable[[], StreamTimeout]) -> BaseException:
    """A low-level error raised while reading the body, as a streamcoord error."""
    if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, socket.timeout)):
        return timeout_error()
    if isinstance(exc, urllib3.exceptions.DecodeError):
        return ProtocolError(f"could not decode the body from {provider}: {exc}")
    if isinstance(exc, (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)):
        return ConnectionLost(f"the connection to {provider} broke mid-stream: {reason(exc)}")
    return exc


def reason(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the noise."""
    seen = exc
    while True:
        nxt = seen.__cause__ or seen.__context__ or (
            seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        )
        if nxt is None or nxt is seen:
            break
        inner = getattr(nxt, "reason", None)
        seen = inner if isinstance(inner, BaseException) else nxt
    return str(seen) or type(seen).__name__

# A chunk-size line longer than this is not HTTP.
_MAX_SIZE_LINE = 4096


def _chunk_size(line: bytes) -> int:
    try:
        size = int(line, 16)  # int() takes bytes, and the surrounding whitespace
    except ValueError:
        size = -1
    if size < 0:  # a chunk extension (";name=value"), or not a size at all
        head = line.split(b";", 1)[0].strip()
        try:
            size = int(head, 16)
        except ValueError:
            raise ProtocolError(f"invalid chunked encoding: bad chunk size {line[:40]!r}") from None
        if size < 0 or head[:1] in (b"-", b"+"):
            raise ProtocolError(f"invalid chunked encoding: bad chunk size {line[:40]!r}")
    return size


class ChunkedDecoder:
    """Incremental decoder of HTTP/1.1 ``Transfer-Encoding: chunked``."""

    __slots__ = ("_buf", "_left", "_state", "done")

    def __init__(self) -> None:
        self._buf = b""
        self._left = 0  # payload bytes still to come in the current chunk
        self._state = 0  # 0: size line, 1: payload, 2: CRLF after payload, 3: trailers
        self.done = False

    def feed(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        out = []
        pos = 0
        end = len(buf)
        state = self._state
        left = self._left
        while pos < end:
            if state == 1:
                take = min(left, end - pos)
                out.append(buf[pos:pos + take])
                pos += take
                left -= take
                if left == 0:
                    state = 2
            elif state == 0:
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if end - pos > _MAX_SIZE_LINE:
                        raise ProtocolError("invalid chunked encoding: chunk-size line too long")
                    break
                left = _chunk_size(buf[pos:nl])
                pos = nl + 2
                if not left:
                    state = 3
                    continue
                # The common case, a whole chunk and its CRLF already in the buffer (a
                # provider sends each event as its own small chunk): take it in one step.
                stop = pos + left
                if stop + 2 <= end:
                    if buf[stop:stop + 2] != b"\r\n":
                        raise ProtocolError("invalid chunked encoding: chunk not followed by CRLF")
                    out.append(buf[pos:stop])
                    pos = stop + 2
                    left = 0
                    continue
                state = 1
            elif state == 2:
                if end - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise ProtocolError("invalid chunked encoding: chunk not followed by CRLF")
                pos += 2
                state = 0
            else:  # trailers, ended by an empty line
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if end - pos > _MAX_SIZE_LINE:
                        raise ProtocolError("invalid chunked encoding: trailer line too long")
                    break
                if nl == pos:
                    self.done = True
                    pos = nl + 2
                    break
                pos = nl + 2
        self._buf = buf[pos:] if pos < end else b""
        self._state = state
        self._left = left
        return out[0] if len(out) == 1 else b"".join(out)


class BodyReader:
    """``read()`` returns the next piece of the decoded body, ``b""`` at its end.

    ``complete`` tells whether the body ended the way HTTP says it must (the last chunk,
    or Content-Length bytes); a body cut short raises ``ConnectionLost``.
    """

    def __init__(self, response: Any, read_size: int = 65536, on_release: Optional[Callable[[], None]] = None) -> None:
        self._read_size = read_size
        self._on_release = on_release  # told before the connection goes back to the pool
        self._raw = response.raw
        self.complete = False
        self.fast = False
        self._chunked: Optional[ChunkedDecoder] = None
        self._left: Optional[int] = None
        self._read: Callable[[int], bytes] = getattr(self._raw, "read1", None) or self._raw.read
        http_response = getattr(self._raw, "_fp", None)
        sock_file = getattr(http_response, "fp", None)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if sock_file is not None and hasattr(sock_file, "read1") and encoding in ("", "identity"):
            self.fast = True
            self._http_response = http_response
            self._read = sock_file.read1
            if getattr(http_response, "chunked", False):
                self._chunked = ChunkedDecoder()
            else:
                self._left = getattr(http_response, "length", None)

    def read(self) -> bytes:
        if not self.fast:
            data = self._read(self._read_size)
            if not data:
                self.complete = True
            return data
        if self.complete:
            return b""
        chunked = self._chunked
        while True:
            data = self._read(self._read_size)
            if not data:
                return self._eof()
            if chunked is not None:
                data = chunked.feed(data)
                if chunked.done:
                    self._end()
                if data or chunked.done:
                    return data
                continue  # only framing arrived
            if self._left is not None:
                if len(data) > self._left:
                    data = data[: self._left]
                self._left -= len(data)
                if self._left == 0:
                    self._end()
            return data

    def _eof(self) -> bytes:
        if self._chunked is not None or self._left:
            raise ConnectionLost("the connection closed in the middle of the response body")
        self._end()  # a body delimited by the connection closing
        return b""

    def _end(self) -> None:
        """The body is complete: hand the connection back to the pool for reuse."""
        self.complete = True
        if self._on_release is not None:
            # From here the socket may serve another stream: whoever could still shut it
            # down (a close() of this stream) must forget it first.
            self._on_release()
        try:
            self._http_response.close()  # http.client's view: this response is done
            self._raw.release_conn()
        except Exception:  # noqa: S110 - only reuse is lost; the answer is complete
            pass
