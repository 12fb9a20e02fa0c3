"""The read loop: from the network to parsed chunks, for one attempt.

``ReadLoop.run`` opens the response, classifies an answer that is not a stream (a non-2xx
status, a JSON body where events were expected), then reads the body many HTTP chunks at a
time, decodes it (SSE or NDJSON), parses the events into chunks and hands each read's
chunks to the pipeline, until the provider's end of the answer. What the server sends
after that is drained by the worker once the consumer has the end (``Transport.drain``).

**The idle timeout and the total deadline are measured here**, in ``ReadLoop._read``:
each read gets the time left until the earlier of the two, and the idle clock restarts
after each hand-over, so it counts only time spent waiting on the network, never time
spent waiting for a slow consumer.

``Transport`` (``_transport.py``) is the only code that touches the response and its
socket, behind a few operations: ``open`` (send, headers received), ``read(time_limit)``,
``cancel`` (from any thread: wakes a blocked ``recv`` at once) and ``close``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, List, Optional

from streamcoord._adapter import EventParser, HTTPRequest, error_message
from streamcoord._chunk import Chunk, TextRun
from streamcoord._decoders import NDJSONDecoder, SSEDecoder
from streamcoord._keys import secrets_in_headers
from streamcoord._logging import StreamLogger
from streamcoord._metrics import MetricsTracker
from streamcoord._pipeline import Pipeline
from streamcoord._retry import retry_after_seconds, should_retry_header
from streamcoord._send_budget import send_budget
from streamcoord._spec import Cancelled, StreamSpec
from streamcoord._transport import Transport, safe_url
from streamcoord.errors import APIError, ProtocolError, StreamcoordError, StreamTimeout, api_error_for_type

__all__ = ["DRAIN_BYTES", "DRAIN_SECONDS", "HOLD_BACKLOG_SECONDS", "HOLD_SECONDS", "READ_SIZE", "ReadLoop"]

# Bytes per read. Larger reads cut per-read costs but keep more objects alive at once,
# which wakes the cyclic garbage collector; 16 KiB keeps a read's chunks under its
# threshold (measured in benchmarks/).
READ_SIZE = 16384
# After the end of the answer, how long and how much to read of what is left of the body
# so the connection can be reused.
DRAIN_SECONDS = 1.0
# With recovery on, the shortest time between two store writes: chunks that come sooner
# wait (at most this long) to be written and handed over with what follows (ReadLoop._read).
HOLD_SECONDS = 0.002
# With recovery on, how long chunks may be held at most while more bytes are already
# waiting to be read (a flood): a DiskStore write costs ~250 us of CPU (more with the GIL
# contended) whatever it carries, and in a flood a 2 ms slice was ~700 writes per 60k
# chunks (benchmarks/bench_throughput.py, recovery on).
HOLD_BACKLOG_SECONDS = 0.010
DRAIN_BYTES = 65536


class ReadLoop:
    """One attempt's request, from sending it to the end of its body."""

    def __init__(
        self,
        spec: StreamSpec,
        connection: Transport,
        pipeline: Pipeline,
        metrics: MetricsTracker,
        log: StreamLogger,
        cancelled: threading.Event,
    ) -> None:
        self.spec = spec
        self.connection = connection
        self.pipeline = pipeline
        self.metrics = metrics
        self.log = log
        self.cancelled = cancelled
        self.deadline: Optional[float] = None  # the total deadline (monotonic), if any

    def run(self, request: HTTPRequest, parser: EventParser) -> None:
        spec = self.spec
        if spec.wire_format == "sse":
            decoder: Any = SSEDecoder(spec.options.max_line_bytes, end_marker="[DONE]",
                                      data_strings=getattr(parser, "takes_data_strings", False))
        elif spec.wire_format == "eventstream":  # AWS (Bedrock): binary, CRC-checked messages
            from streamcoord._eventstream import EventStreamDecoder  # Bedrock's alone: loaded by its first stream

            decoder = EventStreamDecoder(spec.options.max_line_bytes)
        else:
            decoder = NDJSONDecoder(spec.options.max_line_bytes)
        self._open(request)
        self._read(parser, decoder)

    def _open(self, request: HTTPRequest) -> None:
        spec = self.spec
        if self.cancelled.is_set():
            raise Cancelled()
        timeout = spec.options.timeout
        connect, read_timeout = timeout.connect, timeout.idle
        if self.deadline is not None:
            left = max(self.deadline - time.monotonic(), 0.001)
            connect, read_timeout = min(connect, left), min(read_timeout, left)
        # Signed (SigV4) or given a fresh token here, so every retry and continuation
        # carries its own signature and time; the new secrets are scrubbed like the key.
        with send_budget(connect, self.cancelled):  # a hook's own I/O (a token refresh) within it
            request = spec.adapter.before_send(request)
        spec.scrubber.add(secrets_in_headers(request.headers, by_name=True))  # errors and logs
        if self.log.isEnabledFor(logging.DEBUG):  # safe_url parses the URL: ~8 us a stream when nobody logs it (timeit)
            self.log.debug("request %s %s", request.method, safe_url(request.url))
        try:
            response = self.connection.open(request, connect, read_timeout)
        except StreamcoordError as exc:
            if self.cancelled.is_set():
                raise Cancelled() from None
            if isinstance(exc, APIError):  # a redirect the transport does not follow: a non-2xx answer
                self.report_error(exc.status, exc.body)
            raise
        if self.cancelled.is_set():  # closed while the request was being sent
            raise Cancelled()
        status = response.status_code
        self.log.debug("response HTTP %d", status)
        if not 200 <= status < 300:
            body = self.connection.error_body()
            self.report_error(status, body)
            failure = spec.adapter.error_from_response(status, body, retry_after_seconds(response.headers))
            failure.should_retry = should_retry_header(response.headers)  # the provider's verdict
            raise failure
        if spec.wire_format == "sse" and response.headers.get("content-type", "").startswith("application/json"):
            # A 200 JSON answer where an event stream was expected is an error body in
            # disguise (some proxies and compatible servers do this).
            body = self.connection.error_body()
            self.report_error(status, body)
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
        self.connection.start_body()

    def report_error(self, status: Optional[int], body: Any) -> None:
        self.metrics.errors += 1
        on_error = self.spec.options.on_error
        if on_error is None:
            return
        try:
            on_error(status, self.spec.scrubber.value(body))  # a server may echo the key back
        except Exception:  # the stream's own error is what the caller must see
            self.log.exception("on_error callback raised")

    def _read(self, parser: EventParser, decoder: Any) -> None:
        """Read until the end of the answer. Returns with the rest of the body (anything
        after the provider's terminal event) unread: the worker drains it once the
        consumer has the end."""
        connection = self.connection
        read = connection.read
        feed = decoder.feed
        parse_into = parser.parse_into
        deliver = self.pipeline.deliver
        has_end_marker = hasattr(decoder, "done")
        # A provider that sends events after the one that sets parser.done (OpenAI: usage,
        # then [DONE]) is read on for them; for the others that event is the end.
        trailing = getattr(parser, "trailing_events", False)
        metrics = self.metrics
        idle = self.spec.options.timeout.idle
        deadline = self.deadline
        monotonic = time.monotonic
        # The idle clock: when the provider last sent content. It is restarted after each
        # hand-over, so time spent waiting for a slow consumer never counts as silence.
        last_content = monotonic()
        ended = False  # the provider's terminal event has come: nothing more belongs to the answer
        clean_end = False  # the body ended the way HTTP says it must
        ended_at = None  # when the provider signalled the end of the answer (parser.done)
        # Recovery on: each hand-over waits for its text's store write (nothing a consumer
        # has seen may be lost if the process dies), and a DiskStore write is one SQLite
        # transaction, ~0.3-0.5 ms. So at most one write per HOLD_SECONDS: chunks that come
        # sooner after the last write are held while more arrives, and written and handed
        # over together when the slice ends (or the network goes quiet, or the answer
        # ends). A stream at a model's pace (events > HOLD_SECONDS apart) never waits; a
        # flood pays one write per slice, not one per read: a 50k-chunk stream in 16 KiB
        # reads made ~830 writes, then ~300 (benchmarks/bench_throughput.py, recovery on).
        # A slice is extended while more is already waiting (up to HOLD_BACKLOG_SECONDS).
        hold = HOLD_SECONDS if self.pipeline.recovery is not None else 0.0
        held: List[Chunk] = []  # parsed, not yet persisted nor handed over
        held_plain = True
        # With nothing to shape per chunk (Pipeline.takes_runs), the parser keeps text-only
        # chunks as strings in ``run`` (TextRun says why), and a slice is ``parts``: runs
        # and lists of the other chunks, in order, persisted in one write.
        takes_runs = bool(hold and self.pipeline.takes_runs and getattr(parser, "fills_text_runs", False)
                          and getattr(parse_into, "__func__", None) is type(parser).parse_into)  # not replaced
        run = TextRun() if takes_runs else None
        if takes_runs:
            parser.text_run = run
        parts: List[Any] = []
        last_write = -hold  # when the last write went out; the first one never waits
        looked_at = None  # the idle limit past which the last look (below) was taken

        def slice_goes_on() -> bool:
            """Within the slice: wait for more. Past it, up to HOLD_BACKLOG_SECONDS, only
            what is here already: a flood is read ahead into one write instead of one per
            slice, a paced stream never waits longer."""
            if ended or connection.complete:
                return False
            since = monotonic() - last_write
            wait = min(hold - since, limit - now) if since < hold else 0.0
            return since < HOLD_BACKLOG_SECONDS and connection.wait_ready(wait)

        try:
            while True:
                limit = idle_limit = last_content + idle
                if deadline is not None and deadline < limit:
                    limit = deadline
                if parser.done:
                    # Only trailing events (usage, [DONE]) can still come: wait briefly for them.
                    if ended_at is None:
                        ended_at = monotonic()
                    limit = min(limit, ended_at + DRAIN_SECONDS)
                now = monotonic()
                wait = limit - now
                if wait <= 0:
                    if parser.done:
                        break  # the answer is complete; only what follows its end is missing
                    if limit != idle_limit or looked_at == idle_limit:
                        raise self._timeout_error()
                    # The idle limit passed while this thread was not waiting on the network
                    # (a long GC pause, the OS, a slow callback): what the provider sent
                    # meanwhile is already here. One look without waiting before the
                    # timeout; content found restarts the idle clock.
                    looked_at, wait = idle_limit, 0.0
                try:
                    data = read(wait)
                except StreamTimeout as exc:
                    if self.cancelled.is_set():
                        raise Cancelled() from exc
                    if parser.done:
                        break  # the answer is complete; only what follows its end is missing
                    raise self._timeout_error() from exc  # idle timeout or total deadline
                except Exception as exc:
                    if self.cancelled.is_set():
                        raise Cancelled() from exc
                    if parser.done:
                        # The provider had signalled the end of the answer: a break after it
                        # costs at most a trailing usage event, not a continuation.
                        self.log.debug("the connection broke after the end of the answer: %r", exc)
                        break
                    raise
                if not data:
                    clean_end = True
                    break
                metrics.bytes_received += len(data)
                chunks: List[Chunk] = []
                try:
                    parse_into(feed(data), chunks)
                except Exception as exc:
                    chunks, held = held + _chunks_of(parts, run) + chunks, []
                    parts, run = [], None
                    raise self._fail_mid_read(chunks, exc)  # noqa: B904 - the cause is set inside
                if has_end_marker and decoder.done:  # the [DONE] marker
                    parser.done = ended = True
                elif parser.done and not trailing:
                    ended = True
                if run is not None:
                    if chunks:  # the run so far came before them
                        if run.texts:
                            parts.append(run)
                            run = parser.text_run = TextRun()
                        if parts and parts[-1].__class__ is list:
                            parts[-1] += chunks  # one queue item for a row of reads without a run
                        else:
                            parts.append(chunks)
                    if parts or run.texts:
                        if slice_goes_on():
                            continue  # one write for all of the slice
                        if run.texts:
                            parts.append(run)
                            run = parser.text_run = TextRun()
                        slice_parts, parts = parts, []
                        last_write = monotonic()
                        self.pipeline.deliver_parts(slice_parts)
                        last_content = monotonic()
                elif hold and (chunks or held):
                    held += chunks
                    held_plain = held_plain and parser.plain
                    parser.plain = False
                    if slice_goes_on():
                        continue  # one write for all of the slice
                    chunks, held, plain, held_plain = held, [], held_plain, True  # before: deliver may raise
                    last_write = monotonic()
                    deliver(chunks, plain)
                    last_content = monotonic()
                elif chunks:
                    deliver(chunks, parser.plain)
                    parser.plain = False
                    last_content = monotonic()
                if ended:
                    break
                if connection.complete:
                    clean_end = True
                    break
        except Exception:
            held += _chunks_of(parts, run)
            if held and not self.cancelled.is_set():
                deliver(held)  # what was read before the failure is the consumer's, as in _fail_mid_read
            raise
        finally:
            if takes_runs:
                parser.text_run = None
        if run is not None and run.texts:
            parts.append(run)
        if parts:
            self.pipeline.deliver_parts(parts)
        if held:
            deliver(held, held_plain)
        if self.cancelled.is_set():
            raise Cancelled()
        if not ended and clean_end:
            # A final event that lacks only its blank line still counts, as in the official
            # SDKs: a complete answer is not a ConnectionLost.
            tail: List[Chunk] = []
            try:
                parse_into(decoder.finish(), tail)
            except Exception as exc:
                raise self._fail_mid_read(tail, exc)  # noqa: B904 - the cause is set inside
            if has_end_marker and decoder.done:
                parser.done = True
            if tail:
                deliver(tail)
        parser.finish()
        self.pipeline.flush_pending()

    def _fail_mid_read(self, chunks: List[Chunk], exc: Exception) -> Exception:
        """A parse error or an error event: what was parsed before it is still delivered,
        an error event is reported to ``on_error`` with the provider's body, and a parser
        that fails in its own way becomes a ProtocolError. Returns the error to raise."""
        if not isinstance(exc, StreamcoordError):
            error = ProtocolError(f"the {self.spec.provider} parser failed on an event: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            exc = error
        if chunks:
            self.pipeline.deliver(chunks)
        if isinstance(exc, APIError):
            self.report_error(exc.status, exc.body)
        return exc

    def _timeout_error(self) -> StreamTimeout:
        timeout = self.spec.options.timeout
        if self.deadline is not None and time.monotonic() >= self.deadline - 1e-3:
            return StreamTimeout(f"the stream passed its total deadline of {timeout.total}s")
        return StreamTimeout(
            f"no content from {self.spec.provider} for {timeout.idle:.3g}s (idle timeout); "
            "raise timeout= if the model needs longer to answer"
        )


def _chunks_of(parts: List[Any], run: Optional[TextRun]) -> List[Chunk]:
    """A slice's parts and the run after them as one list of chunks (a read failed: what
    was read before is delivered the ordinary way)."""
    chunks: List[Chunk] = []
    for part in parts:
        chunks += part.chunks() if part.__class__ is TextRun else part
    if run is not None:
        chunks += run.chunks()
    return chunks
