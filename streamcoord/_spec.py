"""What a worker is given: the stream's resolved request, its options and collaborators,
and the two signals its parts pass each other (``End`` on the queue, ``Cancelled``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional

import requests

from streamcoord._adapter import Adapter, EventParser, HTTPRequest
from streamcoord._chunk import Chunk
from streamcoord._config import Retry
from streamcoord._keys import Scrubber
from streamcoord._options import StreamOptions

if TYPE_CHECKING:  # imported by the first recovering stream (_client), not by `import streamcoord`
    from streamcoord._recovery import Recovery

__all__ = ["Cancelled", "End", "Restart", "Resume", "StreamSpec"]


class End:
    """The last item a worker puts on its queue; ``error`` is None on success."""

    __slots__ = ("error",)

    def __init__(self, error: Optional[BaseException]) -> None:
        self.error = error


class Restart:
    """Put on the queue after a recovery's cut, before its continuation: the tool calls
    (and the reasoning after the kept text) come again. Chunk readers never see it; the
    event reader starts its tool calls over and announces a rewind of 0 characters when
    no rewind chunk (``announced``) did."""

    __slots__ = ("announced", "attempt", "strategy")

    def __init__(self, attempt: int, strategy: str, announced: bool) -> None:
        self.attempt = attempt
        self.strategy = strategy
        self.announced = announced


class Cancelled(Exception):
    """Internal: the consumer closed the stream; never leaves the worker."""


class Resume:
    """A stored stream to take up again: its text, what the consumer has (``offset``), and
    where the provider could replay it itself (``state``, see ``Adapter.native_resume``)."""

    def __init__(self, text: str, offset: int, completed: bool, state: Optional[Dict[str, Any]] = None) -> None:
        self.text = text
        self.offset = offset
        self.completed = completed
        self.state = state


class StreamSpec:
    """Everything a worker needs, resolved and validated by the client or coordinator.

    The stream options are ``options`` (a ``StreamOptions``, validated once); the rest is
    what the client resolved: provider, adapter, request, session, retry policy.
    """

    def __init__(
        self,
        *,
        options: StreamOptions,
        provider: str,
        adapter: Adapter,
        request: HTTPRequest,
        new_parser: Callable[[HTTPRequest], EventParser],
        session: requests.Session,
        retry: Retry,
        wire_format: str = "sse",
        callback: Optional[Callable[[Chunk], Any]] = None,
        recovery: Optional[Recovery] = None,
        recovery_meta: Optional[Dict[str, Any]] = None,
        resume: Optional[Resume] = None,
        telemetry: Any = None,
        secrets: Iterable[str] = (),
        live: Any = None,
    ) -> None:
        self.options = options
        self.stream_id = options.stream_id
        self.provider = provider
        self.adapter = adapter
        self.request = request
        self.new_parser = new_parser
        self.session = session
        self.retry = retry
        self.wire_format = wire_format
        self.callback = callback  # the direct API: chunks go to a callback, not a queue
        self.recovery = recovery
        self.recovery_meta = recovery_meta or {}
        self.resume = resume
        self.telemetry = telemetry  # a _telemetry.StreamTelemetry, or None (off: no cost)
        self.live = live  # a LiveProducer when this stream produces a live stream (start, resume)
        self.scrubber = Scrubber(secrets)  # the key(s) this stream sends, scrubbed wherever they surface
