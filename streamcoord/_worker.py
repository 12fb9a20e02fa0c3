"""The worker: one thread per stream, from HTTP request to batches on a bounded queue.

The worker sends the request (retrying with tenacity before the first chunk), reads the
body many HTTP chunks at a time, decodes it, parses the events into chunks, runs the
pipeline (validate, persist for recovery, transform, buffer), updates the counters, and
puts one batch per network read on a bounded ``queue.Queue``. Per-chunk work is the parse
and one loop; everything else happens once per read or once per stream.

Cancelling (``close()``, ``break``, garbage collection) sets a flag and shuts the socket
down, which wakes a ``recv`` blocked on a stalled server at once.
"""

from __future__ import annotations

import bisect
import dataclasses
import queue
import socket
import threading
import time
from typing import Any, Dict, List, Optional

import requests

from streamcoord._adapter import EventParser, HTTPRequest, error_message
from streamcoord._chunk import Chunk, ToolCallAccumulator
from streamcoord._decoders import NDJSONDecoder, SSEDecoder
from streamcoord._http import BodyReader, read_error_body, safe_url, send, translate_read_error
from streamcoord._logging import StreamLogger
from streamcoord._metrics import MetricsTracker
from streamcoord._pipeline import callback_error, run_transform, run_validate
from streamcoord._recovery import is_recoverable
from streamcoord._retry import is_retryable, make_retrying, retry_after_seconds, retry_delay
from streamcoord._spec import End, StreamSpec
from streamcoord.errors import (
    APIError,
    ChunkValidationError,
    ProtocolError,
    RecoveryFailed,
    StreamcoordError,
    StreamTimeout,
    api_error_for_type,
)

__all__ = ["Worker"]

# Bytes per read. Larger reads cut per-read costs but keep more objects alive at once,
# which wakes the cyclic garbage collector; 16 KiB keeps a read's chunks under its
# threshold (measured in benchmarks/).
READ_SIZE = 16384
QUEUE_BATCHES = 256
# After [DONE], how long to wait for the end of the body so the connection can be reused.
DRAIN_SECONDS = 1.0
DRAIN_BYTES = 65536


class _Cancelled(Exception):
    """Internal: the consumer closed the stream."""


class Worker:
    """Runs one stream. The consumer side uses ``queue``, ``cancel()`` and the accumulators."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.log = StreamLogger(spec.stream_id, spec.provider)
        self.metrics = MetricsTracker(spec.stream_id, spec.provider, spec.on_metrics)
        self.queue: "queue.Queue[Any]" = queue.Queue(QUEUE_BATCHES)
        self.cancelled = False
        self.error: Optional[BaseException] = None  # what ended the stream, once it has ended
        self.recovery = spec.recovery
        self._cancel_event = threading.Event()
        self._response: Optional[requests.Response] = None
        self._sock: Optional[socket.socket] = None  # the socket cancel() may shut down
        self._sock_lock = threading.Lock()
        self._produced = False  # this attempt produced a chunk: no plain retry after that
        self._content_seen = False  # the stream produced a chunk: recovery has something to go on
        self._pending: List[Chunk] = []  # chunks held back by buffer_chunks
        self._deadline: Optional[float] = None
        self._next_index = 0  # chunk indexes go on across retries and recoveries
        self._shown_len = 0  # characters of stream.text
        # With recovery and transform_chunk: (model characters, consumer characters) after
        # each hand-over, so that a cut in the model's text maps to a rewind of the consumer's.
        self._marks = ([0], [0]) if spec.recovery is not None and spec.transform_chunk is not None else None
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
        with self._sock_lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
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
            self._run_stream()
            status = "completed"
            if self.recovery is not None:
                self.recovery.finish()
        except BaseException as exc:  # handed to the consumer, never lost in a thread
            if self.cancelled:
                status = "cancelled"  # the stored record stays resumable
            else:
                error = exc
                self._count_error(exc)
                if self.recovery is not None:
                    self.recovery.fail()
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

    def _run_stream(self) -> None:
        request: Optional[HTTPRequest] = self.spec.request
        if self.recovery is not None:
            request = self._start_recovery()
        while request is not None:
            try:
                self._run_with_retries(request)
                return
            except StreamcoordError as exc:
                # Before any content, a failure is the plain retries' business (they have
                # run out by now): there is nothing to continue from.
                if self.recovery is None or self.cancelled or not self._content_seen or not is_recoverable(exc):
                    raise
                request = self._recover(exc)

    def _run_with_retries(self, request: HTTPRequest) -> None:
        retrying = make_retrying(self.spec.retry, self._should_retry, self._sleep, self._before_sleep)
        for attempt in retrying:
            with attempt:
                self._attempt(request)

    def _should_retry(self, exc: BaseException) -> bool:
        return not self._produced and not self.cancelled and is_retryable(exc, self.spec.retry)

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

    def _count_error(self, exc: BaseException) -> None:
        """metrics.errors counts every failure met, retried or not; API errors were
        counted when they were reported to on_error, rejected chunks when they were
        rejected, and RecoveryFailed wraps one already counted."""
        if not isinstance(exc, (APIError, ChunkValidationError, RecoveryFailed)):
            self.metrics.errors += 1

    def _before_sleep(self, retry_state: Any) -> None:
        self._count_error(retry_state.outcome.exception())
        self.metrics.retries += 1
        self.log.info(
            "retrying after %r (attempt %d of %d) in %.2fs", retry_state.outcome.exception(),
            retry_state.attempt_number + 1, self.spec.retry.max_retries + 1, retry_state.upcoming_sleep,
        )

    # -- recovery ----------------------------------------------------------------------
    def _start_recovery(self) -> Optional[HTTPRequest]:
        """Open the stored record, or take up a stored one (``client.resume``): replay
        what the consumer has not seen and return the request that continues it (None
        when the stored answer was complete)."""
        recovery, spec = self.recovery, self.spec
        assert recovery is not None
        resume = spec.resume
        if resume is None:
            recovery.start(spec.recovery_meta)
            return spec.request
        kept = resume.text if resume.completed else recovery.cut(resume.text, spec.adapter.continuation_trims_space)
        recovery.start_from(kept, resumed=not resume.completed)
        self._content_seen = bool(kept)
        if not resume.completed:
            recovery.attempts += 1  # taking a stream up again is a recovery, and counts as one
            self.metrics.recoveries += 1
        # The stored text is the model's; the consumer gets it as the live stream would
        # have given it: through transform_chunk.
        replay = self._control_chunk(kept, {"replay": True})
        if spec.transform_chunk is not None:
            shown, error = run_transform([replay], spec.transform_chunk, self._note)
            if error is not None:
                raise error
            replay = shown[0] if shown else dataclasses.replace(replay, content="")
        self.text_parts = [replay.content] if replay.content else []
        self._shown_len = len(replay.content)
        if self._marks is not None:
            self._marks = ([len(kept)], [self._shown_len])
        if resume.offset < len(replay.content):
            self._put([dataclasses.replace(replay, content=replay.content[resume.offset:])])
        elif resume.offset > len(replay.content):
            self._announce_rewind(resume.offset - len(replay.content))
        if resume.completed:
            return None
        return self._continuation(kept)

    def _recover(self, exc: BaseException) -> HTTPRequest:
        recovery = self.recovery
        assert recovery is not None
        self._flush_pending()
        self._count_error(exc)
        kept, rewind = recovery.plan(exc, self.spec.adapter.continuation_trims_space)  # raises RecoveryFailed
        self.metrics.recoveries += 1
        self.log.info(
            "recovering after %r: attempt %d of %d, strategy %s, rewind %d chars",
            exc, recovery.attempts, recovery.max_retries, recovery.strategy, rewind,
        )
        if self._marks is not None:
            self._rewind_transformed(kept)
        elif rewind:
            self._cut_text(rewind)
            self._announce_rewind(rewind)
        self._sleep(retry_delay(self.spec.retry, exc, recovery.attempts))
        return self._continuation(kept)

    def _cut_text(self, rewind: int) -> None:
        text = "".join(self.text_parts)
        self.text_parts = [text[: max(len(text) - rewind, 0)]]

    def _rewind_transformed(self, kept: str) -> None:
        """With transform_chunk, the consumer's text is not the model's: rewind it to the
        last hand-over at or before the cut, then send the model's text between that point
        and the cut again, transformed, so nothing kept is missing on the consumer's side."""
        model, shown = self._marks  # type: ignore[misc]
        i = bisect.bisect_right(model, len(kept)) - 1
        rewind = self._shown_len - shown[i]
        if rewind:
            self._cut_text(rewind)
            self._announce_rewind(rewind)
        self._shown_len = shown[i]
        gap = kept[model[i]:]
        del model[i + 1:], shown[i + 1:]
        if gap:
            replay, error = run_transform([self._control_chunk(gap, {"replay": True})], self.spec.transform_chunk, self._note)
            if error is not None:
                raise error
            if replay and replay[0].content:
                self.text_parts.append(replay[0].content)
                self._shown_len += len(replay[0].content)
                self._put(replay)
        model.append(len(kept))
        shown.append(self._shown_len)

    def _announce_rewind(self, rewind: int) -> None:
        recovery = self.recovery
        assert recovery is not None
        info = {"attempt": recovery.attempts, "strategy": recovery.strategy, "rewind": rewind}
        self._put([self._control_chunk("", {"recovery": info})])

    def _control_chunk(self, content: str, metadata: Dict[str, Any]) -> Chunk:
        index = self._next_index
        self._next_index = index + 1
        return Chunk(content=content, index=index, metadata=metadata)

    def _continuation(self, kept: str) -> HTTPRequest:
        adapter, request = self.spec.adapter, self.spec.request
        if not kept:
            return request
        request = adapter.build_continuation(request, kept)
        # About four characters a token: shrink max_tokens by what was already produced.
        return adapter.reduce_max_tokens(request, (len(kept) + 3) // 4)

    # -- one attempt -------------------------------------------------------------------
    def _attempt(self, request: HTTPRequest) -> None:
        spec = self.spec
        self._produced = False
        parser = spec.new_parser(request)
        parser.next_index = self._next_index
        if spec.wire_format == "sse":
            decoder: Any = SSEDecoder(spec.max_line_bytes, end_marker="[DONE]")
        else:
            decoder = NDJSONDecoder(spec.max_line_bytes)
        try:
            self._read(self._open(request), parser, decoder)
        finally:
            self._next_index = parser.next_index
            self._close_response()

    def _open(self, request: HTTPRequest) -> requests.Response:
        spec = self.spec
        if self.cancelled:
            raise _Cancelled()
        read_timeout = spec.timeout.idle
        if self._deadline is not None:
            read_timeout = min(read_timeout, max(self._deadline - time.monotonic(), 0.001))
        self.log.debug("request %s %s", request.method, safe_url(request.url))
        try:
            response = send(spec.session, request, spec.provider, spec.timeout.connect, read_timeout, self._on_socket)
        except StreamcoordError:
            if self.cancelled:
                raise _Cancelled() from None
            raise
        self._response = response
        self._set_sock(getattr(getattr(response.raw, "connection", None), "sock", None))
        if self.cancelled:  # closed while the request was being sent
            raise _Cancelled()
        status = response.status_code
        self.log.debug("response HTTP %d", status)
        if not 200 <= status < 300:
            body = read_error_body(response)
            self._report_error(status, body)
            raise spec.adapter.error_from_response(status, body, retry_after_seconds(response.headers))
        if spec.wire_format == "sse" and response.headers.get("content-type", "").startswith("application/json"):
            # A 200 JSON answer where an event stream was expected is an error body in
            # disguise (some proxies and compatible servers do this).
            body = read_error_body(response)
            self._report_error(status, body)
            error = body.get("error") if isinstance(body, dict) else None
            if error:  # an error event in disguise: classified by its type, like one in a stream
                kind = (error.get("type") or error.get("status") or error.get("code")) if isinstance(error, dict) else None
                # A type we know says what it stands for; an unknown one stays a plain,
                # not retried APIError with the 200 it came with.
                cls, as_status = api_error_for_type(str(kind), fallback_status=200) if kind else (APIError, 200)
                raise cls(
                    f"{spec.provider} answered 200 with an error: {error_message(body)}",
                    status=as_status, body=body, provider=spec.provider,
                )
            raise ProtocolError(f"{spec.provider} answered with JSON instead of an event stream: {str(body)[:300]}")
        return response

    def _on_socket(self, sock: socket.socket) -> None:
        """The request's socket, known while the request is still in flight."""
        self._set_sock(sock)

    def _set_sock(self, sock: Optional[socket.socket]) -> None:
        with self._sock_lock:
            self._sock = sock
            if sock is not None and self.cancelled:  # closed meanwhile: cancel() missed it
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

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
        body = BodyReader(response, READ_SIZE, on_release=lambda: self._set_sock(None))
        read = body.read
        feed = decoder.feed
        parse_into = parser.parse_into
        has_end_marker = hasattr(decoder, "done")
        metrics = self.metrics
        sock = self._sock
        idle = self.spec.timeout.idle
        deadline = self._deadline
        monotonic = time.monotonic
        last_content = monotonic()
        done = False
        ended_at = None  # when the provider signalled the end of the answer
        while not done and not body.complete:
            limit = last_content + idle
            if deadline is not None and deadline < limit:
                limit = deadline
            if parser.done:
                # Only trailing events (usage, [DONE]) can still come: wait briefly for them.
                if ended_at is None:
                    ended_at = monotonic()
                limit = min(limit, ended_at + DRAIN_SECONDS)
            now = monotonic()
            if now >= limit:
                if parser.done:
                    break  # the answer is complete; only what follows its end is missing
                raise self._timeout_error()
            if sock is not None:
                sock.settimeout(limit - now)
            try:
                data = read()
            except Exception as exc:
                if self.cancelled:
                    raise _Cancelled() from exc
                if parser.done:
                    # The provider had signalled the end of the answer: a break after it
                    # costs at most a trailing usage event, not a continuation.
                    self.log.debug("the connection broke after the end of the answer: %r", exc)
                    break
                if isinstance(exc, StreamcoordError):
                    raise
                raise translate_read_error(exc, self.spec.provider, self._timeout_error) from exc
            if not data:
                break
            metrics.bytes_received += len(data)
            chunks: List[Chunk] = []
            try:
                parse_into(feed(data), chunks)
            except Exception as exc:
                raise self._fail_mid_read(chunks, exc)  # noqa: B904 - the cause is set inside
            if has_end_marker and decoder.done:  # the [DONE] marker
                parser.done = done = True
            if chunks:
                last_content = monotonic()
                self._deliver(chunks, parser.plain)
                parser.plain = False
            now = monotonic()
            if now >= metrics.next_report:  # about once a second, not per chunk
                metrics.report(now)
        if self.cancelled:
            raise _Cancelled()
        if not done:
            tail: List[Chunk] = []
            try:
                parse_into(decoder.flush(), tail)
            except Exception as exc:
                raise self._fail_mid_read(tail, exc)  # noqa: B904 - the cause is set inside
            if tail:
                self._deliver(tail)
        parser.finish()
        self._flush_pending()  # the consumer has everything before any draining
        if not body.complete:
            self._drain_body(body)

    def _fail_mid_read(self, chunks: List[Chunk], exc: Exception) -> Exception:
        """A parse error or an error event: what was parsed before it is still delivered,
        an error event is reported to ``on_error`` with the provider's body, and a parser
        that fails in its own way becomes a ProtocolError. Returns the error to raise."""
        if not isinstance(exc, StreamcoordError):
            error = ProtocolError(f"the {self.spec.provider} parser failed on an event: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            exc = error
        if chunks:
            self._deliver(chunks)
        if isinstance(exc, APIError):
            self._report_error(exc.status, exc.body)
        return exc

    def _drain_body(self, body: BodyReader) -> None:
        """After the end of the answer: read what is left of the body, briefly and only a
        little, so the connection can be reused; a server that goes on sending or stays
        silent gets its connection closed instead."""
        deadline = time.monotonic() + DRAIN_SECONDS
        left = DRAIN_BYTES
        try:
            while not body.complete and left > 0:
                remaining = deadline - time.monotonic()
                with self._sock_lock:
                    if self._sock is None or remaining <= 0:
                        break
                    self._sock.settimeout(remaining)
                data = body.read()
                if not data:
                    break
                left -= len(data)
        except Exception:  # noqa: S110 - the answer is complete; only reuse is lost
            pass
        if not body.complete:
            self._close_response()

    def _timeout_error(self) -> StreamTimeout:
        if self._deadline is not None and time.monotonic() >= self._deadline - 1e-3:
            return StreamTimeout(f"the stream passed its total deadline of {self.spec.timeout.total}s")
        return StreamTimeout(
            f"no content from {self.spec.provider} for {self.spec.timeout.idle:.3g}s (idle timeout); "
            "raise timeout= if the model needs longer to answer"
        )

    # -- hand-over ----------------------------------------------------------------------
    def _deliver(self, chunks: List[Chunk], plain: bool = False) -> None:
        """validate, persist (recovery), transform, accumulate, buffer, hand over.
        ``plain``: the parser says every chunk is text only (EventParser.plain)."""
        spec = self.spec
        metrics = self.metrics
        if metrics.first_chunk_at is None:
            metrics.first_chunk_at = time.monotonic()
            self.log.debug("first chunk")
        metrics.chunks_received += len(chunks)
        self._produced = self._content_seen = True
        error: Optional[BaseException] = None
        if spec.validate_chunk is not None:
            chunks, error = run_validate(chunks, spec.validate_chunk, spec.on_invalid, self._rejected)
        persisted = 0
        if self.recovery is not None:
            text = "".join([c.content for c in chunks if c.content and "choice" not in c.metadata])
            if text:
                self.recovery.persist(text)  # before the consumer can see it
                persisted = len(text)
        if spec.transform_chunk is not None:
            chunks, transform_error = run_transform(chunks, spec.transform_chunk, self._note)
            error = transform_error or error
            plain = False  # the transform may have made them anything
        if plain:  # the parser vouches that these are text only
            texts = [chunk.content for chunk in chunks]
        else:
            texts = []
            for chunk in chunks:
                if chunk.metadata or chunk.finish_reason is not None or chunk.usage is not None or chunk.tool_calls:
                    if "choice" in chunk.metadata:  # another of n choices: not part of stream.text
                        continue
                    self._note(chunk)
                if chunk.content:
                    texts.append(chunk.content)
        if texts:
            # One string per read, not per chunk: a str object costs ~50 bytes beyond its
            # text, which over a million chunks is most of the memory stream.text holds.
            joined = "".join(texts)
            self.text_parts.append(joined)
            self._shown_len += len(joined)
        if self._marks is not None:  # where the model's text and the consumer's line up
            model, shown = self._marks
            model.append(model[-1] + persisted)
            shown.append(self._shown_len)
        if chunks:
            self._hand_over(chunks)
        if error is not None:
            self._flush_pending()
            raise error

    def _rejected(self, chunk: Chunk, reason: str) -> None:
        self.metrics.errors += 1
        self.log.warning("chunk %d rejected by validate_chunk: %s", chunk.index, reason)

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

    def _hand_over(self, chunks: List[Chunk]) -> None:
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
                if self.cancelled:
                    raise _Cancelled()
                try:
                    callback(chunk)
                except Exception as exc:
                    raise callback_error("callback", exc) from exc
            return
        if self.cancelled:
            raise _Cancelled()
        self.queue.put(batch)  # blocks while the consumer is behind: backpressure

    def _close_response(self) -> None:
        response, self._response = self._response, None
        self._set_sock(None)
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: S110 - closing a broken connection may fail; it is gone either way
                pass
