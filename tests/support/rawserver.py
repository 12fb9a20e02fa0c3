"""A raw-socket loopback server where each test scripts every byte and TCP event.

Unlike ``fakeserver`` (an HTTP server that speaks the shapes we wrote), this one speaks no
HTTP of its own: each accepted connection runs the next script, a list of actions::

    with RawServer() as server:
        server.script(READ, Send(head(200, chunked=True) + chunk(b"data: ...")), Stall(), Close())
        ... run the client against server.base_url ...
        assert server.connections[0].closed.wait(2)   # the client closed its end

Actions: ``READ`` (read one request: head and Content-Length body, recorded in
``conn.requests``), ``Send(bytes)``, ``Stall(event, timeout)`` (send nothing until the
event is set or the client closes), ``HalfClose()`` (FIN on the write side, keep
reading), ``Close()`` (FIN), ``Reset()`` (RST). After its script a connection waits for
the client to close its end, so ``conn.closed`` tells when the client let go. Scripts
are used in order, one per connection; the last one is repeated for any further
connection. ``tls=`` (an ``ssl.SSLContext``) serves HTTPS; ``handshake_gate=`` (an Event)
holds every TLS handshake until it is set.

``Proxy`` is a small HTTP proxy (absolute-form requests and ``CONNECT`` tunnels), plain
or, with ``tls=``, an HTTPS proxy.

Builders for the bytes: ``head``, ``chunk``, ``LAST_CHUNK``, ``sse_body``, ``gzipped``,
``deflated``.
"""

from __future__ import annotations

import gzip
import json
import select
import socket
import ssl
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

__all__ = [
    "LAST_CHUNK", "READ", "Close", "HalfClose", "Proxy", "RawServer", "Reset", "Send", "Stall",
    "chunk", "deflated", "gzipped", "head", "openai_events", "sse_body",
]


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Stall:
    event: Optional[threading.Event] = None
    timeout: float = 10.0


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class HalfClose:
    pass


@dataclass(frozen=True)
class Reset:
    pass


READ = "read"


@dataclass
class Request:
    line: str
    headers: Dict[str, str]
    body: bytes


@dataclass
class Connection:
    requests: List[Request] = field(default_factory=list)
    stalled: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)  # the client closed its end


def _read_head(sock: Any, buf: bytes) -> "tuple[bytes, bytes]":
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise EOFError
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _parse(head: bytes) -> "tuple[str, Dict[str, str]]":
    line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for item in lines:
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    return line, headers


def _stop_listening(listener: socket.socket) -> None:
    try:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close() alone does not, on Linux)
    except OSError:
        pass
    listener.close()


class RawServer:
    def __init__(self, tls: Optional[ssl.SSLContext] = None, handshake_gate: Optional[threading.Event] = None) -> None:
        self._tls = tls
        self._handshake_gate = handshake_gate  # set: the TLS handshake may go on
        self._scripts: List[Sequence[Any]] = []
        self.connections: List[Connection] = []
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._threads: List[threading.Thread] = []
        self._accepted = threading.Condition()
        self._thread = threading.Thread(target=self._accept, name="rawserver", daemon=True)

    @property
    def base_url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def script(self, *actions: Any) -> "RawServer":
        self._scripts.append(actions)
        return self

    def wait_connections(self, n: int, timeout: float = 5.0) -> bool:
        with self._accepted:
            return self._accepted.wait_for(lambda: len(self.connections) >= n, timeout)

    def __enter__(self) -> "RawServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        _stop_listening(self._listener)
        self._thread.join(5)
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            index = len(self.connections)
            conn = Connection()
            with self._accepted:
                self.connections.append(conn)
                self._accepted.notify_all()
            script = self._scripts[min(index, len(self._scripts) - 1)] if self._scripts else (Close(),)
            thread = threading.Thread(target=self._serve, args=(sock, conn, script), name="rawserver-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, conn: Connection, script: Sequence[Any]) -> None:
        try:
            if self._tls is not None:
                if self._handshake_gate is not None:
                    self._handshake_gate.wait(10)
                sock.settimeout(5)
                sock = self._tls.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            buf = b""
            for action in script:
                if action == READ:
                    head, buf = _read_head(sock, buf)
                    line, headers = _parse(head)
                    length = int(headers.get("content-length") or 0)
                    while len(buf) < length:
                        data = sock.recv(65536)
                        if not data:
                            raise EOFError
                        buf += data
                    conn.requests.append(Request(line, headers, buf[:length]))
                    buf = buf[length:]
                elif isinstance(action, Send):
                    sock.sendall(action.data)
                elif isinstance(action, Stall):
                    conn.stalled.set()
                    if self._wait(sock, action.event, action.timeout):
                        conn.closed.set()
                        return
                elif isinstance(action, HalfClose):
                    sock.shutdown(socket.SHUT_WR)
                elif isinstance(action, Reset):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                    conn.closed.set()
                    return
                elif isinstance(action, Close):
                    break
            else:  # the script is done: wait for the client to let go
                if self._wait(sock, None, 10.0):
                    conn.closed.set()
                return
            conn.closed.set()
        except (OSError, EOFError, ssl.SSLError):
            conn.closed.set()
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _wait(self, sock: Any, event: Optional[threading.Event], timeout: float) -> bool:
        """Wait for the event, the timeout or the server's end; True when the client
        closed its end meanwhile (bytes it sends are read and dropped). The timeout is
        wall-clock time: on a loaded machine each select wakes later than its 0.02 s, and a
        count of them would stretch the stall past what the test scripted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set() and not (event is not None and event.is_set()):
            readable, _, _ = select.select([sock], [], [], 0.02)
            if readable:
                try:
                    if not sock.recv(65536):
                        return True
                except (OSError, ssl.SSLError):
                    return True
        return False


class Proxy:
    """An HTTP proxy: absolute-form requests are forwarded, ``CONNECT`` opens a tunnel;
    with ``tls=`` clients speak TLS to the proxy itself (an HTTPS proxy). Records the
    request lines it saw in ``lines``."""

    def __init__(self, tls: Optional[ssl.SSLContext] = None) -> None:
        self._tls = tls
        self.lines: List[str] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: List[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, name="rawproxy", daemon=True)

    def __enter__(self) -> "Proxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        _stop_listening(self._listener)
        self._thread.join(5)
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), name="rawproxy-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: Any) -> None:
        upstream = None
        try:
            if self._tls is not None:
                client.settimeout(5)
                client = self._tls.wrap_socket(client, server_side=True)
                client.settimeout(None)
            head, rest = _read_head(client, b"")
            line, _ = _parse(head)
            self.lines.append(line)
            method, target, version = line.split(" ")
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)), timeout=5)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                scheme, _, hostport_path = target.partition("://")
                hostport, _, path = hostport_path.partition("/")
                host, port = hostport.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)), timeout=5)
                first, _, others = head.partition(b"\r\n")
                upstream.sendall(f"{method} /{path} {version}\r\n".encode() + others + b"\r\n\r\n")
            upstream.settimeout(None)
            if rest:
                upstream.sendall(rest)
            self._pipe(client, upstream)
        except (OSError, EOFError, ValueError, ssl.SSLError):
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass

    @staticmethod
    def _pipe(a: Any, b: Any) -> None:
        """Bytes both ways until either side closes."""
        while True:
            # An SSL socket may hold decrypted bytes that select() cannot see.
            ready = [s for s in (a, b) if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select([a, b], [], [], 10)
                if not ready:
                    return
            for src in ready:
                data = src.recv(65536)
                if not data:
                    return
                (b if src is a else a).sendall(data)


# -- bytes -----------------------------------------------------------------------------------
def head(status: int = 200, headers: Optional[Dict[str, str]] = None, *, chunked: bool = False,
         length: Optional[int] = None, version: str = "HTTP/1.1", content_type: str = "text/event-stream") -> bytes:
    lines = [f"{version} {status} X"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes, ext: bytes = b"") -> bytes:
    return b"%x%s\r\n%s\r\n" % (len(data), ext, data)


LAST_CHUNK = b"0\r\n\r\n"


def openai_events(words: Sequence[str]) -> List[bytes]:
    """One SSE event per word, then the finish and ``[DONE]``: OpenAI's wire format."""
    events = []
    for word in words:
        event = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
                 "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
        events.append(b"data: " + json.dumps(event).encode() + b"\n\n")
    final = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    events.append(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
    return events


def sse_body(words: Sequence[str]) -> bytes:
    return b"".join(openai_events(words))


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data)


def deflated(data: bytes, raw: bool = False) -> bytes:
    obj = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return obj.compress(data) + obj.flush()
