"""How a cancel from another thread reaches the socket a worker is blocked on.

After the response headers, urllib3 (2.3+) does most of it: ``HTTPResponse.shutdown()``
keeps the socket's ``shutdown`` from before http.client took the socket over
(``Connection: close``, HTTP/1.0). It does not cover three cases, handled here:

- waiting for the headers: there is no response yet. Our connections (``StreamingAdapter``,
  mounted by ``streamcoord.new_session``) announce their socket to the sending transport
  as soon as they have one; a caller's session does not, so its socket is looked up in
  the sending thread's stack (``socket_in_flight``);
- HTTPS through an HTTPS proxy: the socket is urllib3's ``SSLTransport`` (TLS inside TLS),
  which has no ``shutdown()``: the TLS socket to the proxy under it is shut down instead;
- reading with a time limit needs the socket the body is read from
  (``response_socket``), which http.client keeps when urllib3 has let go of it.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any, Optional

import requests.adapters
import urllib3.connection
import urllib3.connectionpool

__all__ = ["StreamingAdapter", "response_socket", "sending", "shutdown_socket", "socket_in_flight"]

# The transport sending a request on this thread (``.transport``), told the socket as soon
# as the connection has one.
sending = threading.local()


def _announce(sock: Any) -> None:
    transport = getattr(sending, "transport", None)
    if transport is not None and sock is not None:
        transport.announce(sock)


class _Announcing:
    """Mixed into urllib3's connections: tell the sending transport which socket it uses."""

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        _announce(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        # A kept-alive connection has its socket already; an HTTPS one has wrapped it in
        # TLS since _new_conn (a new socket object).
        _announce(getattr(self, "sock", None))
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Announcing, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Announcing, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class StreamingAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections that let a cancel reach a request in flight."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):  # not for SOCKS, which has its own
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def response_socket(raw: Any) -> Any:
    """The socket a urllib3 response's body is read from: http.client's reader holds it
    even when urllib3's connection has let go (``connection.sock`` is None then)."""
    http_response = getattr(raw, "_fp", None)
    sock_io = getattr(getattr(http_response, "fp", None), "raw", None)
    sock = getattr(sock_io, "_sock", None)  # socket.SocketIO's socket
    if sock is None:
        sock = getattr(getattr(raw, "connection", None), "sock", None)
    return sock


def shutdown_socket(sock: Any) -> None:
    """Shut a socket down, which wakes a ``recv`` blocked on it in another thread."""
    if not hasattr(sock, "shutdown"):
        sock = getattr(sock, "socket", None)  # urllib3's SSLTransport: the socket it tunnels through
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError, ValueError):
        pass  # already closed, or nothing to shut down


# urllib3 sends a request and waits for its headers inside this method; its ``conn`` is
# the connection in use (matched by code object, so a pool that overrides it is skipped).
_MAKE_REQUEST = urllib3.connectionpool.HTTPConnectionPool._make_request.__code__


def socket_in_flight(thread_id: int) -> Optional[Any]:
    """The socket of the request a thread is sending through urllib3, found in its stack;
    None when it is not there, or not connected yet."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code is _MAKE_REQUEST:
            return getattr(frame.f_locals.get("conn"), "sock", None)
        frame = frame.f_back
    return None
