"""Every exception streamcoord raises, in one place.

The hierarchy::

    StreamcoordError
    ├── APIError            .status, .body, .provider (a non-2xx answer or an error event)
    │   ├── AuthenticationError   401, 403
    │   ├── RateLimitError        429, rate-limit error events
    │   └── ServerError           5xx, 529, overloaded error events
    ├── StreamError
    │   ├── StreamTimeout         idle timeout or total deadline
    │   ├── ConnectionLost        the connection broke mid-body
    │   └── ProtocolError         a malformed stream
    ├── ChunkValidationError      .reason, .chunk
    ├── CallbackError             a user callback raised; .callback, __cause__ = its exception
    └── RecoveryFailed            .partial_text, __cause__ = the last error

Caller misuse (a bad option, an unknown provider, iterating a closed stream) is a plain
``ValueError`` or ``TypeError`` whose message says what to pass instead.

Every exception a stream raises is one of these (anything else that reaches the worker's
end becomes a ``StreamError`` with the original as ``__cause__``), and none holds an API
key: the stream's keys are replaced by ``***`` in the message, the args, ``APIError.body``
(a server or proxy may echo the key back) and every exception of the cause chain.
"""

from __future__ import annotations

from typing import Any, Optional, Type

__all__ = [
    "APIError",
    "AuthenticationError",
    "CallbackError",
    "ChunkValidationError",
    "ConnectionLost",
    "ProtocolError",
    "RateLimitError",
    "RecoveryFailed",
    "ServerError",
    "StreamError",
    "StreamTimeout",
    "StreamcoordError",
    "api_error_for_status",
    "api_error_for_type",
]


class StreamcoordError(Exception):
    """Base class of every error streamcoord raises on purpose."""


class APIError(StreamcoordError):
    """The provider answered with an error: a non-2xx status or an error event in a stream.

    ``status`` is the HTTP status (for an in-stream error event, the status its error type
    stands for, e.g. 529 for Anthropic's ``overloaded_error``); ``body`` is the provider's
    error body, decoded from JSON when it is JSON; ``retry_after`` is the delay in seconds
    the provider asked for, if it asked; ``should_retry`` is the provider's own verdict from
    its ``x-should-retry`` header (True, False, or None when it sent none), which the
    retries follow before the status, as the official SDKs do.
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        body: Any = None,
        provider: Optional[str] = None,
        retry_after: Optional[float] = None,
        should_retry: Optional[bool] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.provider = provider
        self.retry_after = retry_after
        self.should_retry = should_retry


class AuthenticationError(APIError):
    """401 or 403: the key is missing, wrong, or not allowed to do this."""


class RateLimitError(APIError):
    """429, or a rate-limit error event inside a stream."""


class ServerError(APIError):
    """5xx, 529, or an overloaded/server error event inside a stream."""


class StreamError(StreamcoordError):
    """The response stream itself failed."""


class StreamTimeout(StreamError):
    """No content arrived within the idle timeout, or the total deadline passed."""


class ConnectionLost(StreamError):
    """The connection broke (or closed) before the provider signalled the end of the stream."""


class ProtocolError(StreamError):
    """The stream is malformed: an over-long line, undecodable JSON, a wrong content type."""


class ChunkValidationError(StreamcoordError):
    """``validate_chunk`` rejected a chunk and ``on_invalid="raise"`` was chosen."""

    def __init__(self, reason: str, chunk: Any) -> None:
        super().__init__(f"chunk rejected by validate_chunk: {reason}")
        self.reason = reason
        self.chunk = chunk


class CallbackError(StreamcoordError):
    """A callback given as an option (``transform_chunk``, ``validate_chunk``) raised or
    returned something it must not; ``callback`` names it and ``__cause__`` is the original."""

    def __init__(self, message: str, callback: str) -> None:
        super().__init__(message)
        self.callback = callback


class RecoveryFailed(StreamcoordError):
    """Recovery gave up; ``partial_text`` is what was produced, ``__cause__`` the last error."""

    def __init__(self, message: str, partial_text: str = "") -> None:
        super().__init__(message)
        self.partial_text = partial_text


def api_error_for_status(status: Optional[int]) -> Type[APIError]:
    """The APIError subclass that stands for an HTTP status."""
    if status in (401, 403):
        return AuthenticationError
    if status == 429:
        return RateLimitError
    if status is not None and (status >= 500):
        return ServerError
    return APIError


# Provider error types (Anthropic, OpenAI, Gemini status names) and the status they stand for.
_ERROR_TYPE_STATUS = {
    "overloaded_error": 529,
    "api_error": 500,
    "server_error": 500,
    "internal_error": 500,
    "internal": 500,
    "unavailable": 503,
    "service_unavailable": 503,
    "timeout_error": 504,
    "deadline_exceeded": 504,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "resource_exhausted": 429,
    "insufficient_quota": 429,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "unauthenticated": 401,
    "permission_error": 403,
    "permission_denied": 403,
    "invalid_request_error": 400,
    "invalid_argument": 400,
    "not_found_error": 404,
    "not_found": 404,
    "request_too_large": 413,
}


def api_error_for_type(error_type: Optional[str], fallback_status: Optional[int] = None) -> "tuple[type, Optional[int]]":
    """Classify an in-stream error event by its type name (not by the response's 200).

    Returns the error class and the HTTP status the type stands for. Unknown types count as
    server errors (500): an error event in a 200 stream is the provider failing mid-answer.
    """
    key = (error_type or "").lower()
    status = _ERROR_TYPE_STATUS.get(key, fallback_status if fallback_status is not None else 500)
    return api_error_for_status(status), status
