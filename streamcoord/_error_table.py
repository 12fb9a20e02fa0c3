"""The one table from low-level exceptions (requests, urllib3, http.client, socket, ssl,
zlib) to streamcoord's, applied by the transport at every I/O boundary (sending, reading),
like httpcore's ``map_exceptions``: ``raise translate(exc, ...) from exc``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import zlib
from typing import Callable, Iterator, Optional, Tuple, Type

import requests
import urllib3.exceptions

from streamcoord.errors import ConnectionLost, ProtocolError, StreamcoordError, StreamTimeout

__all__ = ["BAD_REQUEST", "reason", "translate"]

def _chain(exc: BaseException) -> Iterator[BaseException]:
    """An exception and what it wraps: causes, contexts, and the ``reason``/``args[0]``
    through which requests and urllib3 wrap theirs."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = inner or exc.__cause__ or exc.__context__  # type: ignore[assignment]


def reason(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the noise."""
    *_, inner = _chain(exc)
    return str(inner) or type(inner).__name__


BAD_REQUEST = (
    "a request header or the URL holds something HTTP cannot send (a newline, leading "
    "whitespace, a character outside Latin-1, a malformed address); check api_key, "
    "extra_headers and base_url"
)
# Low-level exception -> (streamcoord error, what to say: None for the exception's own
# reason, retried or not), first match wins: order matters (requests' ConnectTimeout is
# also a ConnectionError, socket.timeout an OSError). Certificate errors are looked for
# anywhere in the chain (requests wraps them three deep), the rest by the outermost
# exception, which requests and urllib3 have already classified. A ValueError counts only
# while sending (http.client's "Invalid header value" and requests' InvalidHeader quote
# the value, which may be a key: never repeated).
_ERROR_TABLE: Tuple[Tuple[Tuple[type, ...], Type[StreamcoordError], Optional[str], bool], ...] = (
    ((requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, socket.timeout), StreamTimeout, None, True),
    ((zlib.error, urllib3.exceptions.DecodeError, requests.exceptions.ContentDecodingError), ProtocolError,
     "the body could not be decoded", False),
    ((requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
      requests.exceptions.InvalidHeader, urllib3.exceptions.LocationValueError), ConnectionLost, BAD_REQUEST, False),
    ((requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError),
     ConnectionLost, None, True),
    ((ValueError,), ConnectionLost, BAD_REQUEST, False),
)


def translate(
    exc: BaseException, doing: str, on_timeout: Callable[[BaseException], StreamTimeout], sending: bool = False
) -> Optional[StreamcoordError]:
    """The streamcoord error for a low-level exception met while ``doing`` something; None
    for an exception that is not an I/O one (a bug is not a broken connection)."""
    for inner in _chain(exc):
        if isinstance(inner, ssl.SSLCertVerificationError):
            error: StreamcoordError = ConnectionLost(
                f"{doing}: the server's TLS certificate was refused ({inner.verify_message or inner}); "
                "if it is signed by your own CA, pass a session that trusts it: "
                "s = requests.Session(); s.verify = '/path/to/ca-bundle.pem'; Client(..., session=s)"
            )
            error.retryable = False  # type: ignore[attr-defined]
            return error
    for types, cls, message, retryable in _ERROR_TABLE:
        if isinstance(exc, types):
            if types == (ValueError,) and not sending:
                return None
            if cls is StreamTimeout:
                return on_timeout(exc)
            error = cls(f"{doing}: {message or reason(exc)}")
            if not retryable:
                error.retryable = False  # type: ignore[attr-defined]  # the same request fails the same way
            return error
    return None
