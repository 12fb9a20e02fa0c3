"""The worker: one thread per stream, and the orchestration of its attempts.

The worker owns the thread, the retries (tenacity, before the first chunk), the decision
to recover after a break, and cancel. Its parts each have one job:

* ``ReadLoop`` (``_read_loop``): network to parsed chunks for one attempt, the idle
  timeout and the total deadline; its ``Transport`` (``_transport``) is the only code
  touching the response and its socket.
* ``Pipeline`` (``_pipeline``): validate, persist, transform, accumulate, buffer, hand over.
* ``RecoveryController`` (``_recovery_controller``): plan, rewind, replay, continuation.

Cancelling (``close()``, ``break``, garbage collection) sets a flag and shuts the socket
down, which wakes a ``recv`` blocked on a stalled server at once.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Optional

from streamcoord._adapter import HTTPRequest
from streamcoord._keys import secrets_in_headers
from streamcoord._logging import StreamLogger
from streamcoord._metrics import MetricsTracker
from streamcoord._pipeline import Pipeline
from streamcoord._read_loop import DRAIN_BYTES, DRAIN_SECONDS, READ_SIZE, ReadLoop
from streamcoord._retry import is_retryable, make_retrying, retry_delay
from streamcoord._send_budget import send_budget
from streamcoord._spec import Cancelled, End, StreamSpec
from streamcoord._transport import Transport
from streamcoord.errors import (
    APIError,
    ChunkValidationError,
    RecoveryFailed,
    StreamcoordError,
    StreamError,
    StreamTimeout,
)

if TYPE_CHECKING:
    from streamcoord._recovery_controller import RecoveryController

__all__ = ["Worker"]

# Connect and read bound of the best-effort request that stops a background generation
# after a cancel (close() waits for the worker at most CLOSE_JOIN_SECONDS in all).
STOP_GENERATION_SECONDS = 1.0


class Worker:
    """Runs one stream. The consumer side uses ``queue``, ``cancel()`` and ``answer``."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.log = StreamLogger(spec.stream_id, spec.provider)
        self.metrics = MetricsTracker(
            spec.stream_id, spec.provider, spec.options.on_metrics, log_reports=spec.options.track_metrics
        )
        self.error: Optional[BaseException] = None  # what ended the stream, once it has ended
        self._cancelled = threading.Event()
        self.pipeline = Pipeline(spec, self.metrics, self.log, self._cancelled)
        self.queue = self.pipeline.queue
        self.answer = self.pipeline.answer  # what the stream has produced, for stream.text & co.
        self.connection = Transport(spec.session, spec.provider, READ_SIZE)
        self.reader = ReadLoop(spec, self.connection, self.pipeline, self.metrics, self.log, self._cancelled)
        self.recovery = spec.recovery
        self.controller: Optional[RecoveryController] = None
        if spec.recovery is not None:
            # Imported by the first recovering stream, not by `import streamcoord` (~0.7 ms).
            from streamcoord._recovery_controller import RecoveryController

            self.controller = RecoveryController(spec, spec.recovery, self.pipeline, self.metrics, self.log)
        self.telemetry = spec.telemetry
        # Where the provider could replay this stream itself (the last parser's resume_state).
        self.resume_state: Optional[Dict[str, Any]] = spec.resume.state if spec.resume is not None else None
        self.thread = threading.Thread(target=self._run, name=f"streamcoord-{spec.stream_id}", daemon=True)

    # -- consumer side -----------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        """Stop the worker: wake a blocked read, a retry wait or a full queue. Idempotent."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        self.connection.cancel()
        self.pipeline.drain_queue()

    # -- worker side -------------------------------------------------------------------
    def _run(self) -> None:
        spec = self.spec
        error: Optional[BaseException] = None
        status = "failed"
        try:
            self.metrics.start()
            if self.telemetry is not None:
                self.telemetry.start()
            if spec.live is not None:  # a live stream: keep its lease, watch for a cancel
                spec.live.begin(self.cancel)
            if spec.options.timeout.total is not None:
                self.reader.deadline = time.monotonic() + spec.options.timeout.total
            self._run_stream()
            status = "completed"
            if self.recovery is not None:
                self.recovery.finish()
        except BaseException as exc:  # handed to the consumer, never lost in a thread
            if self.cancelled:
                status = "cancelled"  # the stored record stays resumable
            else:
                error = self._outgoing(exc)
                self._count_error(exc)
                if self.recovery is not None:
                    self.recovery.fail()
        finally:
            try:
                if status != "completed":
                    self.connection.close()  # a broken or cancelled exchange is never reused
                if error is not None and not self.cancelled:
                    try:
                        self.pipeline.flush_pending()
                    except BaseException:  # noqa: S110 - the original error wins
                        pass
                self.error = error
                metrics = self.metrics
                metrics.finish(status)
                if self.telemetry is not None:
                    self.telemetry.end(status, error, self.answer, metrics, spec.scrubber)
                if error is not None:
                    self.log.debug("stream failed: %r", error)
                self.log.debug(
                    "stream %s: %d chunks, %d bytes in %.0f ms", status, metrics.chunks_received,
                    metrics.bytes_received, ((metrics.ended or time.monotonic()) - metrics.started) * 1000.0,
                )
                if spec.live is not None:  # readers elsewhere learn the end before this consumer
                    spec.live.end(status, error, self.answer)
                self.pipeline.put_end(End(error))
                if status == "completed":
                    # The consumer has the end of the answer; what the server sends after it
                    # is read now, off the consumer's path, so the connection can be reused.
                    self.connection.drain(DRAIN_SECONDS, DRAIN_BYTES)
            finally:
                self.connection.close()
                if status == "cancelled":
                    self._stop_generation()

    def _stop_generation(self) -> None:
        """A generation the server runs on its own (a background response) is stopped
        when the stream is cancelled, best effort and bounded: it would run, and cost, to
        its end. A consumer that merely closed a resumable stream (recovery on) leaves it
        running, as its stored record stays resumable; an explicit cancel (a live stream's
        cancel mark: ``cancel_stream``, ``StreamHandle.cancel``) stops it either way."""
        live = self.spec.live
        if self.recovery is not None and not (live is not None and live.cancelled):
            return
        request = self.spec.adapter.cancel_request(self.spec.request, self.resume_state)
        if request is None:
            return
        # Through a transport of its own (this stream's is cancelled): its error mapping
        # and redirect policy (same origin only), headers and body each within the bound.
        transport = Transport(self.spec.session, self.spec.provider)
        try:
            with send_budget(STOP_GENERATION_SECONDS, threading.Event()):  # this stream is cancelled already
                request = self._authorized(request)
            response = transport.open(request, STOP_GENERATION_SECONDS, STOP_GENERATION_SECONDS)
            self.log.debug("asked %s to stop the generation: HTTP %d", self.spec.provider, response.status_code)
        except Exception as exc:  # best effort: the stream is closed either way
            self.log.debug("could not ask %s to stop the generation: %r", self.spec.provider, self.spec.scrubber.exception(exc))
        finally:
            transport.close()

    def _outgoing(self, exc: BaseException) -> BaseException:
        """The error as the consumer gets it: a StreamcoordError (anything else that got this
        far, a bug or a low-level error no table foresaw, becomes a StreamError caused by
        it), with the stream's keys scrubbed from it and its whole cause chain."""
        try:
            if isinstance(exc, Exception) and not isinstance(exc, StreamcoordError):
                wrapped = StreamError(f"the {self.spec.provider} stream failed: {type(exc).__name__}: {exc}")
                wrapped.__cause__ = exc
                exc = wrapped
            return self.spec.scrubber.exception(exc)
        except Exception:  # an exception that cannot be shown or scrubbed: its kind is all that is safe
            return StreamError(f"the {self.spec.provider} stream failed ({type(exc).__name__})")

    def _run_stream(self) -> None:
        request: Optional[HTTPRequest] = self.spec.request
        if self.controller is not None:
            request = self.controller.start()
        while request is not None:
            try:
                self._run_with_retries(request)
                return
            except StreamcoordError as exc:
                refused = self.controller.after_refusal(request, exc) if self.controller is not None else None
                if refused is None and self.controller is not None and not self.cancelled:
                    refused = self.controller.after_native_refusal(request, exc)
                if refused is not None and not self.cancelled:
                    request = refused
                    continue
                # Before any content, a failure is the plain retries' business (they have
                # run out by now): there is nothing to continue from. After the answer's
                # finish (an error event behind Bedrock's messageStop), there is nothing
                # left to generate: the error is raised as it is, never a continuation.
                if self.controller is None or self.cancelled or not self.pipeline.content_seen:
                    raise
                from streamcoord._recovery import is_recoverable  # imported with the controller

                if not is_recoverable(exc) or self.pipeline.answer.finish_reason is not None:
                    raise
                request = self._recover(exc)

    def _recover(self, exc: BaseException) -> HTTPRequest:
        controller = self.controller
        assert controller is not None and self.recovery is not None
        self.pipeline.flush_pending()
        self._count_error(exc)
        native = controller.native_resume(exc, self.resume_state)  # raises RecoveryFailed
        if native is not None:
            self._sleep(retry_delay(self.spec.retry, exc, self.recovery.attempts))
            return native
        kept = controller.plan(exc)  # raises RecoveryFailed
        self._sleep(retry_delay(self.spec.retry, exc, self.recovery.attempts))
        return controller.continuation(kept)

    def _run_with_retries(self, request: HTTPRequest) -> None:
        # The first attempt runs before any tenacity object is built (~40 us per stream on
        # the way to the first chunk, benchmarks/bench_latency.py); a failure tenacity
        # would retry goes to it as its first attempt's outcome, so the policy (count,
        # waits, before_sleep) is the same as when tenacity runs every attempt.
        try:
            self._attempt(request)
            return
        except BaseException as exc:
            if not self._should_retry(exc):
                raise
            first: Optional[BaseException] = exc
        retrying = make_retrying(self.spec.retry, self._should_retry, self._sleep, self._before_sleep)
        for attempt in retrying:
            with attempt:
                if first is not None:
                    failed, first = first, None
                    raise failed
                self._attempt(request)

    def _attempt(self, request: HTTPRequest) -> None:
        pipeline = self.pipeline
        pipeline.produced = False
        parser = self.spec.new_parser(request)
        parser.next_index = pipeline.next_index
        if self.recovery is not None:
            self.recovery.resume_source = parser
        try:
            self.reader.run(request, parser)
        except BaseException:
            self.connection.close()
            state = parser.resume_state()
            if state is not None:  # where a native resume starts, here or in another process
                self.resume_state = state
                if self.recovery is not None:
                    self.recovery.note_resume_state(state)
            raise
        finally:
            pipeline.next_index = parser.next_index

    def _authorized(self, request: HTTPRequest) -> HTTPRequest:
        """The request with the credentials of this send (a token provider is asked each
        time); a credential not seen before becomes one of the stream's secrets."""
        sent = self.spec.adapter.before_send(request)
        self.spec.scrubber.add(secrets_in_headers(sent.headers, by_name=True))  # errors and logs
        return sent

    def _should_retry(self, exc: BaseException) -> bool:
        return not self.pipeline.produced and not self.cancelled and is_retryable(exc, self.spec.retry)

    def _sleep(self, seconds: float) -> None:
        deadline = self.reader.deadline
        if deadline is not None and time.monotonic() + seconds > deadline:
            raise StreamTimeout(
                f"the total deadline of {self.spec.options.timeout.total}s would pass before the next retry"
            )
        if self.spec.retry.sleep is not None:
            self.spec.retry.sleep(seconds)
        elif self._cancelled.wait(seconds):
            raise Cancelled()
        if self.cancelled:
            raise Cancelled()

    def _count_error(self, exc: BaseException) -> None:
        """metrics.errors counts every failure met, retried or not; API errors were
        counted when they were reported to on_error, rejected chunks when they were
        rejected, and RecoveryFailed wraps one already counted."""
        if not isinstance(exc, (APIError, ChunkValidationError, RecoveryFailed)):
            self.metrics.errors += 1

    def _before_sleep(self, retry_state: Any) -> None:
        self._count_error(retry_state.outcome.exception())
        self.metrics.retries += 1
        if self.telemetry is not None:
            self.telemetry.retry(retry_state.attempt_number + 1, retry_state.upcoming_sleep, retry_state.outcome.exception())
        self.log.info(
            "retrying after %r (attempt %d of %d) in %.2fs", retry_state.outcome.exception(),
            retry_state.attempt_number + 1, self.spec.retry.max_retries + 1, retry_state.upcoming_sleep,
        )
