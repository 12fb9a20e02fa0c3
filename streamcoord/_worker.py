"""The worker: one thread per stream, from HTTP request to batches on a bounded queue.

The worker sends the request (retrying with tenacity before the first chunk), reads the
body with ``read1`` (whatever the network delivered, up to 64 KiB), decodes it, parses the
events into chunks, runs the pipeline (validate, transform, buffer), updates the counters,
and puts one batch per network read on a bounded ``queue.Queue``. Per-chunk work is kept
to the parse and one loop; everything else happens once per read or once per stream.

Cancelling (``close()``, ``break``, garbage collection) sets a flag and shuts the socket
down, which wakes a ``recv`` blocked on a stalled server at once.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import queue
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import requests
import urllib3.exceptions
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from adapters.base import Adapter, EventParser, HTTPRequest
from streamcoord._body import BodyReader
from streamcoord._chunk import Chunk, ToolCallAccumulator
from streamcoord._config import Retry, Timeout
from streamcoord._decoders import NDJSONDecoder, SSEDecoder
from streamcoord._logging import StreamLogger
from streamcoord._metrics import MetricsTracker
from streamcoord.errors import (
    APIError,
    CallbackError,
    ChunkValidationError,
    ConnectionLost,
    ProtocolError,
    StreamcoordError,
    StreamTimeout,
)

__all__ = ["RETRY_STATUSES", "End", "StreamSpec", "Worker", "retry_after_seconds"]

READ_SIZE = 16384
MAX_ERROR_BODY = 1 << 20
QUEUE_BATCHES = 256
# After [DONE], how long to wait for the end of the body so the connection can be reused.
DRAIN_SECONDS = 1.0
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class _Cancelled(Exception):
    """Internal: the consumer closed the stream."""


class End:
    """The last item a worker puts on its queue; ``error`` is None on success."""

    __slots__ = ("error",)

    def __init__(self, error: Optional[BaseException]) -> None:
        self.error = error


class StreamSpec:
    """Everything a worker needs, resolved and validated by the client or coordinator."""

    def __init__(
        self,
        *,
        stream_id: str,
        provider: str,
        adapter: Adapter,
        request: HTTPRequest,
        new_parser: Callable[[HTTPRequest], EventParser],
        session: requests.Session,
        timeout: Timeout,
        retry: Retry,
        wire_format: str = "sse",
        on_metrics: Optional[Callable[[Any], Any]] = None,
        transform_chunk: Optional[Callable[[Chunk], Optional[Chunk]]] = None,
        validate_chunk: Optional[Callable[[Chunk], Any]] = None,
        on_invalid: str = "skip",
        buffer_chunks: int = 1,
        on_error: Optional[Callable[[Optional[int], Any], Any]] = None,
        max_line_bytes: int = 8 * 1024 * 1024,
        callback: Optional[Callable[[Chunk], Any]] = None,
    ) -> None:
        self.stream_id = stream_id
        self.provider = provider
        self.adapter = adapter
        self.request = request
        self.new_parser = new_parser
        self.session = session
        self.timeout = timeout
        self.retry = retry
        self.wire_format = wire_format
        self.on_metrics = on_metrics
        self.transform_chunk = transform_chunk
        self.validate_chunk = validate_chunk
        self.on_invalid = on_invalid
        self.buffer_chunks = buffer_chunks
        self.on_error = on_error
        self.max_line_bytes = max_line_bytes
        self.callback = callback  # the direct API: chunks go to a callback, not a queue


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


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, APIError):
        return exc.status in RETRY_STATUSES
    return isinstance(exc, (ConnectionLost, StreamTimeout))


class Worker:
    """Runs one stream. The consumer side uses ``queue``, ``cancel()`` and the accumulators."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.log = StreamLogger(spec.stream_id, spec.provider)
        self.metrics = MetricsTracker(spec.stream_id, spec.provider, spec.on_metrics)
        self.queue: "queue.Queue[Any]" = queue.Queue(QUEUE_BATCHES)
        self.cancelled = False
        self.error: Optional[BaseException] = None  # what ended the stream, once it has ended
        self._cancel_event = threading.Event()
        self._response: Optional[requests.Response] = None
        self._sock: Optional[socket.socket] = None
        self._delivered = False  # a chunk reached the consumer: no plain retry after this
        self._pending: List[Chunk] = []  # chunks held back by buffer_chunks
        self._deadline: Optional[float] = None
        # What the stream has produced, for stream.text & co.
        self.text_parts: List[str] = []
        self.reasoning_parts: List[str] = []
        self.finish_reason: Optional[str] = None
        self.usage: Optional[Dict[str, Any]] = None
        self.model: Optional[str] = None
        self.tool_calls = ToolCallAccumulator()
        self.thread = threading.Thread(target=self._run, name=f"streamcoord-{spec.stream_id}", daemon=True)

    # -- consumer side -----------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        """Stop the worker: wake a blocked read, a retry wait or a full queue. Idempotent."""
        if self.cancelled:
            return
        self.cancelled = True
        self._cancel_event.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
        self._drain()

    def _drain(self) -> None:
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass

    # -- worker side -------------------------------------------------------------------
    def _run(self) -> None:
        spec = self.spec
        error: Optional[BaseException] = None
        status = "failed"
        try:
            if spec.timeout.total is not None:
                self._deadline = time.monotonic() + spec.timeout.total
            self._run_with_retries()
            status = "completed"
        except BaseException as exc:  # handed to the consumer, never lost in a thread
            if self.cancelled:
                status = "cancelled"
            else:
                error = exc
        finally:
            self._close_response()
            if error is not None and not self.cancelled:
                try:
                    self._flush_pending()
                except BaseException:  # noqa: S110 - the original error wins
                    pass
            self.error = error
            snap = self.metrics.finish(status)
            if error is not None:
                self.log.debug("stream failed: %r", error)
            self.log.debug(
                "stream %s: %d chunks, %d bytes in %.0f ms", status, snap.chunks_received,
                snap.bytes_received, snap.duration_ms,
            )
            self._finish(End(error))

    def _finish(self, end: End) -> None:
        if self.spec.callback is not None:
            return
        if self.cancelled:
            self._drain()  # the consumer is gone; make room so the put cannot block
            self.queue.put_nowait(end)
        else:
            self.queue.put(end)

    def _run_with_retries(self) -> None:
        policy = self.spec.retry
        retrying = Retrying(
            stop=stop_after_attempt(policy.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(self._should_retry),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        self._backoff = wait_random_exponential(multiplier=policy.backoff, max=policy.max_backoff)
        for attempt in retrying:
            with attempt:
                self._attempt(self.spec.request)

    def _should_retry(self, exc: BaseException) -> bool:
        return not self._delivered and not self.cancelled and _is_retryable(exc)

    def _wait(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception()
        after = getattr(exc, "retry_after", None)
        if after is not None and 0 <= after <= self.spec.retry.max_retry_after:
            return after
        return self._backoff(retry_state)

    def _sleep(self, seconds: float) -> None:
        if self._deadline is not None and time.monotonic() + seconds > self._deadline:
            raise StreamTimeout(
                f"the total deadline of {self.spec.timeout.total}s would pass before the next retry"
            )
        if self.spec.retry.sleep is not None:
            self.spec.retry.sleep(seconds)
        elif self._cancel_event.wait(seconds):
            raise _Cancelled()
        if self.cancelled:
            raise _Cancelled()

    def _before_sleep(self, retry_state: Any) -> None:
        self.metrics.retries += 1
        self.log.info(
            "retrying after %r (attempt %d of %d) in %.2fs", retry_state.outcome.exception(),
            retry_state.attempt_number + 1, self.spec.retry.max_retries + 1, retry_state.upcoming_sleep,
        )

    # -- one attempt -------------------------------------------------------------------
    def _attempt(self, request: HTTPRequest) -> None:
        spec = self.spec
        parser = spec.new_parser(request)
        if spec.wire_format == "sse":
            decoder: Any = SSEDecoder(spec.max_line_bytes, end_marker="[DONE]")
        else:
            decoder = NDJSONDecoder(spec.max_line_bytes)
        try:
            self._read(self._open(request), parser, decoder)
        finally:
            self._close_response()

    def _open(self, request: HTTPRequest) -> requests.Response:
        spec = self.spec
        if self.cancelled:
            raise _Cancelled()
        read_timeout = spec.timeout.idle
        if self._deadline is not None:
            read_timeout = min(read_timeout, max(self._deadline - time.monotonic(), 0.001))
        self.log.debug("request %s %s", request.method, request.url)
        try:
            response = spec.session.request(
                request.method, request.url, json=request.json, headers=request.headers,
                stream=True, timeout=(spec.timeout.connect, read_timeout),
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise StreamTimeout(f"could not connect to {request.url} within {spec.timeout.connect}s") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise StreamTimeout(f"{spec.provider} sent no response headers within {read_timeout:.3g}s") from exc
        except requests.exceptions.ConnectionError as exc:
            if self.cancelled:
                raise _Cancelled() from exc
            raise ConnectionLost(f"could not reach {spec.provider} at {request.url}: {_reason(exc)}") from exc
        self._response = response
        connection = getattr(response.raw, "connection", None)
        self._sock = getattr(connection, "sock", None)
        if self.cancelled:  # closed while the request was being sent
            raise _Cancelled()
        status = response.status_code
        self.log.debug("response HTTP %d", status)
        if not 200 <= status < 300:
            body = self._error_body(response)
            self._report_error(status, body)
            raise spec.adapter.error_from_response(status, body, retry_after_seconds(response.headers))
        content_type = response.headers.get("content-type", "")
        if spec.wire_format == "sse" and content_type.startswith("application/json"):
            # A 200 JSON answer where an event stream was expected is an error body in
            # disguise (some proxies and compatible servers do this).
            body = self._error_body(response)
            self._report_error(status, body)
            raise ProtocolError(
                f"{spec.provider} answered with JSON instead of an event stream: {str(body)[:300]}"
            )
        return response

    def _error_body(self, response: requests.Response) -> Any:
        try:
            data = response.raw.read(MAX_ERROR_BODY, decode_content=True)
        except Exception as exc:  # a body we cannot read still leaves the status to report
            self.log.debug("could not read the error body: %r", exc)
            return None
        text = data.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def _report_error(self, status: Optional[int], body: Any) -> None:
        self.metrics.errors += 1
        on_error = self.spec.on_error
        if on_error is None:
            return
        try:
            on_error(status, body)
        except Exception:  # the stream's own error is what the caller must see
            self.log.exception("on_error callback raised")

    def _read(self, response: requests.Response, parser: EventParser, decoder: Any) -> None:
        body = BodyReader(response, READ_SIZE)
        read = body.read
        feed = decoder.feed
        parse = parser.parse
        parse_into = parser.parse_into
        decoder_done = hasattr(decoder, "done")
        metrics = self.metrics
        sock = self._sock
        idle = self.spec.timeout.idle
        deadline = self._deadline
        monotonic = time.monotonic
        last_content = monotonic()
        done = False
        while not done:
            limit = last_content + idle
            if deadline is not None and deadline < limit:
                limit = deadline
            now = monotonic()
            if now >= limit:
                raise self._timeout_error(idle)
            if sock is not None:
                sock.settimeout(limit - now)
            try:
                data = read()
            except StreamcoordError:
                raise
            except Exception as exc:
                raise self._translate(exc, idle) from exc
            if not data:
                break
            metrics.bytes_received += len(data)
            chunks: List[Chunk] = []
            try:
                parse_into(feed(data), chunks)
            except StreamcoordError as exc:
                self._fail_mid_read(chunks, exc)
                raise
            if decoder_done and decoder.done:  # the [DONE] marker
                parser.done = done = True
            if chunks:
                last_content = monotonic()
                self._deliver(chunks)
            if last_content >= metrics.next_report:  # about once a second, not per chunk
                metrics.report(last_content)
        if self.cancelled:
            raise _Cancelled()
        if done:
            self._drain_body(body, sock)
        else:
            tail: List[Chunk] = []
            try:
                for event in decoder.flush():
                    chunk = parse(event)
                    if chunk is not None:
                        tail.append(chunk)
            except StreamcoordError as exc:
                self._fail_mid_read(tail, exc)
                raise
            if tail:
                self._deliver(tail)
        parser.finish()
        self._flush_pending()

    def _fail_mid_read(self, chunks: List[Chunk], exc: StreamcoordError) -> None:
        """A parse error or an error event: what was parsed before it is still delivered,
        and an error event is reported to ``on_error`` with the provider's body."""
        if chunks:
            self._deliver(chunks)
        if isinstance(exc, APIError):
            self._report_error(exc.status, exc.body)

    def _drain_body(self, body: BodyReader, sock: Optional[socket.socket]) -> None:
        """After ``[DONE]``: read to the end of the body so the connection can be reused."""
        if body.complete or sock is None:
            return
        try:
            sock.settimeout(DRAIN_SECONDS)
            while body.read():
                pass
        except Exception:  # noqa: S110 - the answer is complete; only reuse is lost
            self._close_response()

    def _timeout_error(self, idle: float) -> StreamTimeout:
        if self._deadline is not None and time.monotonic() >= self._deadline - 1e-3:
            return StreamTimeout(f"the stream passed its total deadline of {self.spec.timeout.total}s")
        return StreamTimeout(
            f"no content from {self.spec.provider} for {idle:.3g}s (idle timeout); "
            "raise timeout= if the model needs longer to answer"
        )

    def _translate(self, exc: Exception, idle: float) -> BaseException:
        """The one place where low-level read errors become streamcoord errors."""
        if self.cancelled:
            return _Cancelled()
        if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, socket.timeout)):
            return self._timeout_error(idle)
        if isinstance(exc, urllib3.exceptions.DecodeError):
            return ProtocolError(f"could not decode the body from {self.spec.provider}: {exc}")
        if isinstance(exc, (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)):
            return ConnectionLost(f"the connection to {self.spec.provider} broke mid-stream: {_reason(exc)}")
        return exc

    # -- hand-over ----------------------------------------------------------------------
    def _deliver(self, chunks: List[Chunk]) -> None:
        spec = self.spec
        metrics = self.metrics
        if metrics.first_chunk_at is None:
            metrics.first_chunk_at = time.monotonic()
            self.log.debug("first chunk")
        metrics.chunks_received += len(chunks)
        error: Optional[BaseException] = None
        if spec.validate_chunk is not None or spec.transform_chunk is not None:
            chunks, error = self._pipeline(chunks)
        text_parts = self.text_parts
        for chunk in chunks:
            if chunk.metadata or chunk.finish_reason is not None or chunk.usage is not None or chunk.tool_calls:
                if "choice" in chunk.metadata:  # another of n choices: not part of stream.text
                    continue
                self._note(chunk)
            if chunk.content:
                text_parts.append(chunk.content)
        if chunks:
            self._hand_over(chunks)
        if error is not None:
            self._flush_pending()
            raise error

    def _note(self, chunk: Chunk) -> None:
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.tool_calls:
            self.tool_calls.add(chunk.tool_calls)
        reasoning = chunk.metadata.get("reasoning")
        if reasoning:
            self.reasoning_parts.append(reasoning)
        if self.model is None and chunk.model:
            self.model = chunk.model

    def _pipeline(self, chunks: List[Chunk]):
        """validate (judges what the model produced), then transform (shapes what the
        consumer gets). Returns the chunks to hand over and an error to raise after them."""
        spec = self.spec
        validate = spec.validate_chunk
        transform = spec.transform_chunk
        out: List[Chunk] = []
        for chunk in chunks:
            if validate is not None:
                try:
                    verdict = validate(chunk)
                except Exception as exc:
                    return out, _callback_error("validate_chunk", exc)
                if verdict is not None and verdict is not True:
                    if verdict is False:
                        reason = "rejected"
                    elif isinstance(verdict, str):
                        reason = verdict
                    else:
                        return out, CallbackError(
                            f"validate_chunk must return None or True (accept), or False or a "
                            f"reason string (reject); it returned {verdict!r:.80}", "validate_chunk",
                        )
                    self.metrics.errors += 1
                    if spec.on_invalid == "raise":
                        return out, ChunkValidationError(reason, chunk)
                    self.log.warning("chunk %d rejected by validate_chunk: %s", chunk.index, reason)
                    continue
            if transform is not None:
                try:
                    new = transform(chunk)
                except Exception as exc:
                    return out, _callback_error("transform_chunk", exc)
                if new is None:
                    self._note(chunk)  # the consumer skips it; finish_reason/usage still count
                    continue
                if not isinstance(new, Chunk):
                    return out, CallbackError(
                        f"transform_chunk must return a Chunk (e.g. dataclasses.replace(chunk, ...)) "
                        f"or None to skip; it returned {type(new).__name__}", "transform_chunk",
                    )
                chunk = new
            out.append(chunk)
        return out, None

    def _hand_over(self, chunks: List[Chunk]) -> None:
        self._delivered = True
        size = self.spec.buffer_chunks
        if size > 1:
            pending = self._pending
            pending.extend(chunks)
            while len(pending) >= size:
                self._put(pending[:size])
                del pending[:size]
        else:
            self._put(chunks)

    def _flush_pending(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._put(batch)

    def _put(self, batch: List[Chunk]) -> None:
        callback = self.spec.callback
        if callback is not None:
            for chunk in batch:
                try:
                    callback(chunk)
                except Exception as exc:
                    raise _callback_error("callback", exc) from exc
            return
        if self.cancelled:
            raise _Cancelled()
        self.queue.put(batch)  # blocks while the consumer is behind: backpressure

    def _close_response(self) -> None:
        response, self._response = self._response, None
        self._sock = None
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: S110 - closing a broken connection may fail; it is gone either way
                pass


def _callback_error(name: str, exc: BaseException) -> CallbackError:
    error = CallbackError(f"{name} raised {type(exc).__name__}: {exc}", name)
    error.__cause__ = exc
    return error


def _reason(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the noise."""
    seen = exc
    while True:
        nxt = seen.__cause__ or seen.__context__ or (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
        if nxt is None or nxt is seen:
            break
        reason = getattr(nxt, "reason", None)
        seen = reason if isinstance(reason, BaseException) else nxt
    return str(seen) or type(seen).__name__

