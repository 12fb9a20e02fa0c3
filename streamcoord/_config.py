"""Small value objects for configuration: ``Timeout`` and ``Retry``."""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, Optional, Union, overload

__all__ = ["DEFAULT_TIMEOUT", "Retry", "Timeout", "TimeoutTypes"]


@overload
def _seconds(name: str, value: Any, *, allow_none: Literal[False]) -> float: ...
@overload
def _seconds(name: str, value: Any, *, allow_none: bool) -> Optional[float]: ...
def _seconds(name: str, value: Any, *, allow_none: bool) -> Optional[float]:
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds (e.g. {name}=30.0), got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


class Timeout:
    """Timeouts of one stream, in seconds.

    ``connect``: to open the connection. ``idle``: the longest gap without new content
    (pings and SSE comments do not count) before the stream fails with ``StreamTimeout``;
    it also bounds the wait for the response headers. ``total``: an optional deadline for
    the whole stream, retries included.

    ``Timeout(120)`` sets the idle timeout (the seed's ``timeout`` option) and keeps the
    default connect timeout.
    """

    __slots__ = ("connect", "idle", "total")

    def __init__(self, idle: Optional[float] = 300.0, *, connect: Optional[float] = 10.0, total: Optional[float] = None) -> None:
        self.idle = _seconds("idle", idle, allow_none=False)
        self.connect = _seconds("connect", connect, allow_none=False)
        self.total = _seconds("total", total, allow_none=True)

    @classmethod
    def coerce(cls, value: "TimeoutTypes") -> "Timeout":
        if isinstance(value, Timeout):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(value)
        raise TypeError(
            f"timeout must be seconds (a number) or streamcoord.Timeout(connect=, idle=, total=), got {value!r}"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timeout) and (self.connect, self.idle, self.total) == (other.connect, other.idle, other.total)

    def __repr__(self) -> str:
        return f"Timeout(connect={self.connect}, idle={self.idle}, total={self.total})"


TimeoutTypes = Union[float, int, Timeout]
DEFAULT_TIMEOUT = Timeout(300.0)


class Retry:
    """How failed requests are retried before the first chunk (tenacity does the looping).

    ``max_retries`` attempts after the first; exponential backoff with full jitter between
    ``backoff`` and ``max_backoff`` seconds unless the provider sent ``Retry-After`` or
    ``retry-after-ms`` (honoured up to ``max_retry_after`` seconds; a longer wait is not
    retried: the error is raised with its ``retry_after``). ``sleep`` is the
    function that waits (injectable so tests run instantly); by default the wait is
    interrupted when the stream is closed.
    """

    __slots__ = ("max_retries", "backoff", "max_backoff", "max_retry_after", "sleep")

    def __init__(
        self,
        max_retries: int = 2,
        *,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 60.0,
        sleep: Optional[Callable[[float], None]] = None,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        for name, value in (("backoff", backoff), ("max_backoff", max_backoff), ("max_retry_after", max_retry_after)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if sleep is not None and not callable(sleep):
            raise TypeError(f"sleep must be a function (seconds) -> None, e.g. time.sleep, got {sleep!r:.80}")
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_retry_after = float(max_retry_after)
        self.sleep = sleep

    @classmethod
    def coerce(cls, value: Union[int, "Retry"]) -> "Retry":
        if isinstance(value, Retry):
            return value
        return cls(value)

    def __repr__(self) -> str:
        return f"Retry(max_retries={self.max_retries}, backoff={self.backoff}, max_backoff={self.max_backoff})"


