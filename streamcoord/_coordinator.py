"""The direct API: ``StreamingCoordinator.start_stream`` / ``simple_stream`` with a callback."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Dict, Optional

import requests

from streamcoord import _registry, _telemetry
from streamcoord._adapter import Adapter, EventParser, HTTPRequest
from streamcoord._chunk import Chunk
from streamcoord._client import _default_session
from streamcoord._config import Retry, Timeout, TimeoutTypes
from streamcoord._decoders import DEFAULT_MAX_LINE_BYTES
from streamcoord._keys import check_headers, secrets_in_headers
from streamcoord._metrics import on_metrics_thread
from streamcoord._options import StreamOptions
from streamcoord._spec import StreamSpec
from streamcoord._stream_metrics import StreamMetrics
from streamcoord._worker import Worker
from streamcoord.errors import CallbackError, StreamcoordError

__all__ = ["FunctionParser", "StreamHandle", "StreamingCoordinator"]


class FunctionParser(EventParser):
    """Wraps ``parse_chunk_fn(data) -> Chunk | None`` (one SSE event's data, or one NDJSON line)."""

    def __init__(self, fn: Callable[[str], Optional[Chunk]], provider: str) -> None:
        super().__init__()
        self._fn = fn
        self.provider = provider

    def parse(self, event: Any) -> Optional[Chunk]:
        # The user's parser failing is a CallbackError (a StreamcoordError), so the worker
        # still delivers the chunks parsed before it in the same read, then raises it.
        try:
            chunk = self._fn(event.data)
        except StreamcoordError:
            raise  # e.g. an APIError the parser raises for an error event in the stream
        except Exception as exc:
            error = CallbackError(f"parse_chunk_fn raised {type(exc).__name__}: {exc}", "parse_chunk_fn")
            raise error from exc
        if chunk is not None and not isinstance(chunk, Chunk):
            raise CallbackError(
                f"parse_chunk_fn must return a streamcoord.Chunk or None (to skip the event), "
                f"got {type(chunk).__name__}",
                "parse_chunk_fn",
            )
        return chunk

    def finish(self) -> None:
        """A custom stream ends where the body ends."""


class StreamHandle:
    """A stream running with a callback: ``join()``, ``cancel()``, ``metrics``, ``error``."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self.stream_id = worker.spec.stream_id

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the end of the stream; True if it ended, False if ``timeout`` passed."""
        self._worker.thread.join(timeout)
        return not self._worker.thread.is_alive()

    def cancel(self) -> None:
        """Stop the stream and close its connection (waits up to 2 s for the worker)."""
        self._worker.cancel()
        if self._worker.thread is not threading.current_thread() and not on_metrics_thread():
            self._worker.thread.join(2.0)

    @property
    def done(self) -> bool:
        return not self._worker.thread.is_alive()

    @property
    def error(self) -> Optional[BaseException]:
        """The exception that ended the stream, or None."""
        return self._worker.error

    @property
    def metrics(self) -> StreamMetrics:
        return self._worker.metrics.snapshot()

    @property
    def text(self) -> str:
        return self._worker.answer.text

    def __repr__(self) -> str:
        return f"<StreamHandle stream_id={self.stream_id!r} {self._worker.metrics.status}>"


class StreamingCoordinator:
    """Run a stream against any URL with your own parser, delivering chunks to a callback."""

    @staticmethod
    def start_stream(
        url: str,
        request: Dict[str, Any],
        headers: Dict[str, str],
        callback: Callable[[Chunk], Any],
        *,
        parse_chunk_fn: Callable[[str], Optional[Chunk]],
        provider: str = "custom",
        timeout: TimeoutTypes = 300.0,
        stream_recovery: bool = False,
        track_metrics: Optional[bool] = None,
        on_metrics: Optional[Callable[[StreamMetrics], Any]] = None,
        transform_chunk: Optional[Callable[[Chunk], Optional[Chunk]]] = None,
        validate_chunk: Optional[Callable[[Chunk], Any]] = None,
        on_invalid: str = "skip",
        buffer_chunks: int = 1,
        on_error: Optional[Callable[[Optional[int], Any], Any]] = None,
        stream_id: Optional[str] = None,
        wire_format: str = "sse",
        session: Optional[requests.Session] = None,
        max_retries: Any = 2,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        telemetry: Optional[bool] = None,
    ) -> StreamHandle:
        """``telemetry``: an OpenTelemetry span and the GenAI metrics for this stream, as a
        Client's (None: follow ``streamcoord.instrument()``); the model and the request
        parameters are read from ``request``, the JSON body."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http:// or https:// URL, got {url!r:.80}")
        if not isinstance(request, dict):
            raise TypeError(f"request must be the JSON body as a dict, got {type(request).__name__}")
        try:
            json.dumps(request)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"request must be JSON-serializable: {exc}") from None
        headers = check_headers(headers if headers is not None else {}, "headers")
        if session is not None and not isinstance(session, requests.Session):
            raise TypeError(f"session must be a requests.Session, got {session!r:.80}")
        if not callable(callback):
            raise TypeError("callback must be a function (chunk) -> None")
        if not callable(parse_chunk_fn):
            raise TypeError("parse_chunk_fn must be a function (data: str) -> Chunk | None")
        if wire_format not in ("sse", "ndjson"):
            raise ValueError(f'wire_format must be "sse" or "ndjson", got {wire_format!r}')
        if stream_recovery:
            raise ValueError(
                "stream_recovery needs an adapter that can build a continuation request; "
                "use Client(MyAdapter()).stream_chat(..., stream_recovery=True)"
            )
        opts = StreamOptions(
            {
                "track_metrics": track_metrics, "on_metrics": on_metrics, "transform_chunk": transform_chunk,
                "validate_chunk": validate_chunk, "on_invalid": on_invalid, "buffer_chunks": buffer_chunks,
                "on_error": on_error, "timeout": timeout, "stream_id": stream_id, "max_line_bytes": max_line_bytes,
            },
            Timeout(),
        )
        instruments = _telemetry.instruments_for(telemetry)
        stream_telemetry = None
        if instruments is not None:
            messages = request.get("messages")
            messages = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
            stream_telemetry = instruments.stream(_otel_provider_name(provider), opts.stream_id, url, request, messages)
        adapter = Adapter()
        adapter.name = provider
        spec = StreamSpec(
            options=opts,
            provider=provider,
            adapter=adapter,
            request=HTTPRequest(url=url, json=request, headers=headers),
            new_parser=lambda _request: FunctionParser(parse_chunk_fn, provider),
            session=session if session is not None else _default_session(),
            retry=Retry.coerce(max_retries),
            wire_format=wire_format,
            callback=callback,
            telemetry=stream_telemetry,
            secrets=secrets_in_headers(headers, by_name=True),
        )
        worker = Worker(spec)
        worker.start()
        return StreamHandle(worker)

    @staticmethod
    def simple_stream(
        *,
        url: Optional[str] = None,
        request: Optional[Dict[str, Any]] = None,
        headers: Optional[Dict[str, str]] = None,
        callback: Optional[Callable[[Chunk], Any]] = None,
        parse_chunk: Optional[Callable[[str], Optional[Chunk]]] = None,
        options: Optional[Dict[str, Any]] = None,
    ) -> StreamHandle:
        """The short form: every argument by name; ``options`` takes start_stream's options."""
        if url is None or request is None or callback is None or parse_chunk is None:
            required = {"url": url, "request": request, "callback": callback, "parse_chunk": parse_chunk}
            missing = [name for name, value in required.items() if value is None]
            raise TypeError(f"simple_stream() missing required argument(s): {', '.join(missing)}")
        return StreamingCoordinator.start_stream(
            url, request, headers or {}, callback, parse_chunk_fn=parse_chunk, **(options or {})
        )


def _otel_provider_name(provider: str) -> str:
    """gen_ai.provider.name of a stream of the direct API: the declared one of the adapter
    registered as ``provider``, else ``provider`` as it is."""
    if provider in _registry.names():
        return _registry.get(provider).otel_provider_name or provider
    return provider
