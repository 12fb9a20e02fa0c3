"""A tiny loopback HTTP proxy in front of several server processes, the way a load balancer
spreads connections: every request gets its own upstream connection (the proxy sends
``Connection: close`` upstream, so a browser cannot reuse one), and each new connection
goes to the next process: event-stream requests (``/chat/events``) take turns from the
first process, other requests from the second, so a reconnect always lands on another
process than the stream it replaces. ``cut_after=n`` drops the first event stream after
``n`` content events, both ways, as a flaky network or a proxy timeout does.
"""

from __future__ import annotations

import socket
import threading
from typing import List, NamedTuple, Optional, Tuple

__all__ = ["Route", "RoundRobinProxy"]

EVENTS_PATH = "/chat/events"
CONTENT_MARK = b'data: {"content"'


class Route(NamedTuple):
    path: str
    last_event_id: Optional[str]
    backend: int  # index into the proxy's backends


class RoundRobinProxy:
    def __init__(self, backends: List[Tuple[str, int]], cut_after: Optional[int] = None) -> None:
        self.backends = backends
        self.cut_after = cut_after
        self.routes: List[Route] = []
        self.cut = threading.Event()  # the first event stream was dropped
        self.reconnected = threading.Event()  # a second event-stream request was routed
        self._turns = {True: 0, False: 1}
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name="test-proxy", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._spawn(self._serve, self._track(client))

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = _recv(client)
            if not data:
                client.close()
                return
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        request_line, *lines = head.split(b"\r\n")
        path = request_line.split(b" ")[1].split(b"?")[0].decode("ascii")
        last_event_id = next(
            (line.split(b":", 1)[1].strip().decode("ascii") for line in lines if line.lower().startswith(b"last-event-id:")),
            None,
        )
        lines = [line for line in lines if not line.lower().startswith(b"connection:")]
        events = path == EVENTS_PATH
        with self._lock:
            backend = self._turns[events] % len(self.backends)
            self._turns[events] += 1
            first_stream = events and not any(route.path == EVENTS_PATH for route in self.routes)
            self.routes.append(Route(path, last_event_id, backend))
            if events and not first_stream:
                self.reconnected.set()
        try:
            upstream = self._track(socket.create_connection(self.backends[backend], timeout=10))
            upstream.settimeout(None)
            upstream.sendall(b"\r\n".join([request_line, *lines, b"Connection: close"]) + b"\r\n\r\n" + rest)
        except OSError:
            client.close()
            return
        self._spawn(self._pump_up, client, upstream)
        cut_after = self.cut_after if first_stream else None
        contents, tail = 0, b""
        while True:
            data = _recv(upstream)
            if not data:
                break
            try:
                client.sendall(data)
            except OSError:
                break
            if cut_after is not None:
                seen = tail + data
                contents += seen.count(CONTENT_MARK)
                tail = seen[-len(CONTENT_MARK) + 1:]
                if contents >= cut_after:
                    self.cut.set()
                    break
        _close(client)
        _close(upstream)

    def _pump_up(self, client: socket.socket, upstream: socket.socket) -> None:
        while True:
            data = _recv(client)
            if not data:  # the client went away (or was cut): so does the upstream connection
                _close(upstream)
                return
            try:
                upstream.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        _close(self._listener)  # shutdown wakes the accept() blocked on it; close alone does not
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            _close(sock)
        for thread in threads:
            thread.join(5)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
