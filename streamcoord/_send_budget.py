"""The time the hook before a send (``Adapter.before_send``) may take, and the stream's
cancel, for a hook that does blocking I/O of its own.

The transport's time limits and its cancel reach the provider's socket only; a hook that
fetches a token elsewhere (Vertex refreshing Google's application default credentials)
is out of their reach. The read loop publishes the budget of the send on its thread for
the length of the call; the hook reads it with ``current_send_budget()`` and gives up when
the time is spent or the stream is cancelled.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator, Optional

__all__ = ["SendBudget", "current_send_budget", "send_budget"]

_local = threading.local()


class SendBudget:
    """Until when (``time.monotonic()``) the send may wait, and its stream's cancel flag."""

    __slots__ = ("cancelled", "seconds", "until")

    def __init__(self, seconds: float, cancelled: threading.Event) -> None:
        self.seconds = seconds
        self.until = time.monotonic() + seconds
        self.cancelled = cancelled

    def left(self) -> float:
        return self.until - time.monotonic()


@contextlib.contextmanager
def send_budget(seconds: float, cancelled: threading.Event) -> Iterator[SendBudget]:
    """The budget of the send about to be made on this thread, for the ``with`` block."""
    outer = getattr(_local, "budget", None)
    budget = _local.budget = SendBudget(seconds, cancelled)
    try:
        yield budget
    finally:
        _local.budget = outer


def current_send_budget() -> Optional[SendBudget]:
    """The budget published on this thread; None outside a stream's send."""
    budget: Optional[SendBudget] = getattr(_local, "budget", None)
    return budget
