"""Retrying a request before its first chunk, with tenacity's own objects."""

from __future__ import annotations

import email.utils
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from streamcoord._config import Retry
from streamcoord.errors import APIError, ConnectionLost, StreamTimeout

if TYPE_CHECKING:  # tenacity is imported by the first stream, not by `import streamcoord`
    from tenacity import Retrying

__all__ = [
    "RETRY_STATUSES", "is_retryable", "make_retrying", "retry_after_seconds", "retry_delay", "should_retry_header",
]

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def retry_after_seconds(headers: Any) -> Optional[float]:
    """``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), in seconds."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


def should_retry_header(headers: Any) -> Optional[bool]:
    """The provider's ``x-should-retry: true|false`` verdict (OpenAI and Anthropic send
    it; their SDKs obey it before looking at the status), or None."""
    value = headers.get("x-should-retry") if headers else None
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return True if value == "true" else False if value == "false" else None


def is_retryable(exc: BaseException, policy: Optional[Retry] = None) -> bool:
    """What the provider's ``x-should-retry`` header says; else connection errors,
    timeouts and 408/409/425/429/5xx/529, never 400/401/403/404. Never an answer that asks
    for a longer wait than ``policy.max_retry_after``."""
    if isinstance(exc, APIError):
        after = exc.retry_after
        if policy is not None and after is not None and after > policy.max_retry_after:
            return False
        if exc.should_retry is not None:
            return exc.should_retry
        return exc.status in RETRY_STATUSES
    # A ConnectionLost that no retry can help (a refused certificate) says so.
    return isinstance(exc, (ConnectionLost, StreamTimeout)) and getattr(exc, "retryable", True)


def retry_delay(policy: Retry, exc: Optional[BaseException], attempt: int) -> float:
    """What the provider asked for (``Retry-After``), else exponential backoff with jitter."""
    after = getattr(exc, "retry_after", None)
    if after is not None and 0 <= after <= policy.max_retry_after:
        return float(after)
    from tenacity import RetryCallState, Retrying, wait_random_exponential

    backoff = wait_random_exponential(multiplier=policy.backoff, max=policy.max_backoff)
    # A wait outside tenacity's loop too (before a recovery): a real state at that attempt.
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = attempt
    return backoff(state)


def make_retrying(
    policy: Retry,
    should_retry: Callable[[BaseException], bool],
    sleep: Callable[[float], None],
    before_sleep: Callable[[Any], None],
) -> Retrying:
    from tenacity import Retrying, retry_if_exception, stop_after_attempt

    return Retrying(
        stop=stop_after_attempt(policy.max_retries + 1),
        wait=lambda state: retry_delay(
            policy, state.outcome.exception() if state.outcome else None, state.attempt_number
        ),
        retry=retry_if_exception(should_retry),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
