"""OpenTelemetry, named after the GenAI semantic conventions: one span per stream, four metrics.

Optional (extra ``otel``, ``opentelemetry-api`` only): nothing here imports OpenTelemetry
until a client asks for telemetry (``Client(telemetry=True)`` or ``instrument()``), so a
stream without it neither imports nor pays for it. With it, each stream is a span
``chat {model}`` of kind CLIENT, a child of the span current where ``stream_chat`` was
called (in a web view, the request's span, although a WSGI server iterates the answer
later), started when the request goes out and ended with the stream. Retries and
recoveries are span events. A failed stream has status ERROR and ``error.type``; a
cancelled one (``break``, ``close()``) is not an error. Message content only on request
(``_telemetry_content``).

Cost. OpenTelemetry's Python SDK spends 10-20 us of CPU on one histogram value (most of it
cleaning and hashing the attributes: measured) and some 40 us on a span; streamcoord
spends about 4 us on a chunk. So the hot path makes no SDK call: ``on_read`` notes the
time once per network read. The attributes a stream shares with others of its client and
model are built once (``_Shape``), and the span's end attributes only for a span that
records. ``time_per_output_chunk`` is recorded as the conventions define it, one value per
chunk after the first (the time from the previous chunk's arrival: 0 for the chunks that
came in the same read as it), in batches off the per-chunk path, and only when the meter
provider has a reader to take them: one value per chunk is the one cost here that grows
with the stream (about 15 us a chunk with the SDK).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from streamcoord._telemetry_content import capture_content, content_attributes

__all__ = [
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "TOKEN_COUNTS",
    "Instruments",
    "StreamTelemetry",
    "instrument",
    "instruments_for",
    "uninstrument",
]

logger = logging.getLogger("streamcoord")

# gen_ai.token.type -> the usage key of its count.
TOKEN_COUNTS = (("input", "prompt_tokens"), ("output", "completion_tokens"))
# The bucket boundaries the GenAI metrics conventions ask for.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
# Per-chunk values recorded at once, while the stream goes on: few enough
# that a batch takes about a millisecond, so a long stream's memory stays flat.
PER_CHUNK_BATCH = 64
# Attribute sets kept per Instruments (client, address and model) and per response model.
MAX_SHAPES = 256
MISSING = (
    "telemetry needs OpenTelemetry's API: pip install 'streamcoord[otel]' (and an SDK or "
    "distro to export it, e.g. opentelemetry-sdk)"
)

_lock = threading.Lock()
_cache: Dict[Any, "Instruments"] = {}
_instrumented: Optional[Tuple[Any, Any]] = None  # (tracer_provider, meter_provider) after instrument()


def instrument(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Telemetry for every client made from now on (``Client(telemetry=False)`` opts out).
    The providers default to OpenTelemetry's global ones. Raises ImportError without
    ``opentelemetry-api``."""
    global _instrumented
    _load(tracer_provider, meter_provider)
    with _lock:
        _instrumented = (tracer_provider, meter_provider)


def uninstrument() -> None:
    """Undo ``instrument()`` for clients made from now on."""
    global _instrumented
    with _lock:
        _instrumented = None


def instruments_for(telemetry: Optional[bool]) -> Optional["Instruments"]:
    """What a new Client records with: ``telemetry`` True, False, or None (``instrument()``'s choice)."""
    if telemetry is not None and not isinstance(telemetry, bool):
        raise TypeError(f"telemetry must be True, False or None (follow streamcoord.instrument()), got {telemetry!r:.80}")
    if telemetry is False:
        return None
    providers = _instrumented
    if telemetry is None and providers is None:
        return None
    return _load(*(providers or (None, None)))


def _load(tracer_provider: Any, meter_provider: Any) -> "Instruments":
    try:
        from opentelemetry import context, metrics, trace
    except ImportError as exc:
        raise ImportError(MISSING) from exc
    key = (id(tracer_provider), id(meter_provider))
    with _lock:
        found = _cache.get(key)
        if found is None or found.providers != (tracer_provider, meter_provider):
            found = _cache[key] = Instruments(context, trace, metrics, tracer_provider, meter_provider)
        return found


class Instruments:
    """The tracer and the four GenAI client histograms for one pair of providers."""

    def __init__(self, context: Any, trace: Any, metrics: Any, tracer_provider: Any, meter_provider: Any) -> None:
        from streamcoord import __version__

        self.providers = (tracer_provider, meter_provider)
        self.context = context
        self.trace = trace
        self.metrics = metrics
        self.client_kind = trace.SpanKind.CLIENT
        self.tracer = trace.get_tracer("streamcoord", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("streamcoord", __version__, meter_provider=meter_provider)

        def histogram(name: str, unit: str, description: str, buckets: Tuple[float, ...]) -> Any:
            return meter.create_histogram(
                name, unit=unit, description=description, explicit_bucket_boundaries_advisory=list(buckets)
            )

        self.duration = histogram("gen_ai.client.operation.duration", "s", "GenAI operation duration.", DURATION_BUCKETS)
        self.tokens = histogram("gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.",
                                TOKEN_BUCKETS)
        self.first_chunk = histogram(
            "gen_ai.client.operation.time_to_first_chunk", "s",
            "Time to receive the first chunk, from when the request is issued.", DURATION_BUCKETS,
        )
        self.per_chunk = histogram(
            "gen_ai.client.operation.time_per_output_chunk", "s",
            "Time per output chunk, recorded for each chunk received after the first one.", DURATION_BUCKETS,
        )
        self._shapes: Dict[Any, _Shape] = {}

    def shape(self, provider: str, url: str, model: Any) -> "_Shape":
        """The attributes every stream of this provider, address and model shares, made once."""
        key = (provider, url, model)
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= MAX_SHAPES:
                self._shapes.clear()  # many distinct URLs (per-request query strings): start over
            shape = self._shapes[key] = _Shape(provider, url, model)
        return shape

    def records_per_chunk(self) -> bool:
        """Whether a value recorded now goes anywhere: not without a metric reader (the
        SDK's MeterProvider without one still spends its 10 us a value), nor into a no-op."""
        provider = self.providers[1] or self.metrics.get_meter_provider()
        # The SDK's MeterProvider keeps its readers (added at construction or later) in its
        # measurement consumer; it has no public way to ask. Where that is not found, record.
        storages = getattr(getattr(provider, "_measurement_consumer", None), "_reader_storages", None)
        if storages is not None:
            # A reader whose views drop the metric (the SDK's way to switch one off) takes
            # nothing either: with every reader dropping it, the values cost nothing.
            return any(not _drops(storage, self.per_chunk) for storage in list(storages.values()))
        return not isinstance(self.per_chunk, self.metrics.NoOpHistogram)

    def stream(
        self, provider: str, stream_id: str, url: str, options: Dict[str, Any], messages: List[Dict[str, Any]]
    ) -> "StreamTelemetry":
        return StreamTelemetry(self, provider, stream_id, url, options, messages)


def _drops(storage: Any, instrument: Any) -> bool:
    """Whether an SDK reader's views drop ``instrument``'s values: views match it and all
    of those aggregate with ``DropAggregation``. Read from the SDK's insides, which have no
    public way to ask: where they are not as expected, the values are recorded."""
    try:
        views = storage._sdk_config.views
        matching = [view for view in views if view._match(instrument)]
        return bool(matching) and all(type(view._aggregation).__name__ == "DropAggregation" for view in matching)
    except Exception:
        return False


class _Shape:
    """The span name and the attributes shared by the streams of one provider, address and
    model; the metric attributes per response model, made on first use."""

    def __init__(self, provider: str, url: str, model: Any) -> None:
        self.name = f"chat {model}" if model else "chat"
        common: Dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider}
        if model:
            common["gen_ai.request.model"] = str(model)
        address = urlsplit(url)
        if address.hostname:
            common["server.address"] = address.hostname
            common["server.port"] = address.port or (443 if address.scheme == "https" else 80)
        self.common = common  # on the span and on every metric
        self._by_model: Dict[Optional[str], Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]] = {}

    def metric_attributes(self, response_model: Optional[str]) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
        """(every metric's, input tokens', output tokens') attributes for a response model."""
        found = self._by_model.get(response_model)
        if found is None:
            if len(self._by_model) >= MAX_SHAPES:
                self._by_model.clear()
            common = dict(self.common, **{"gen_ai.response.model": response_model}) if response_model else self.common
            found = self._by_model[response_model] = (
                common, dict(common, **{"gen_ai.token.type": "input"}), dict(common, **{"gen_ai.token.type": "output"}))
        return found


class StreamTelemetry:
    """One stream's span and metric values. Made on the caller's thread (it keeps the
    caller's current span as the parent); the worker calls ``start``, ``on_read``,
    ``retry``, ``recovery`` and ``end``. Telemetry never breaks a stream: a failure in
    it is logged and the stream goes on."""

    def __init__(
        self, instruments: Instruments, provider: str, stream_id: str, url: str,
        options: Dict[str, Any], messages: List[Dict[str, Any]],
    ) -> None:
        self.instruments = instruments
        self.parent = instruments.context.get_current()
        self.shape = shape = instruments.shape(provider, url, options.get("model"))
        attributes = dict(shape.common)
        attributes["streamcoord.stream_id"] = stream_id
        max_tokens = options.get("max_tokens")
        if max_tokens is None:
            max_tokens = options.get("max_completion_tokens")
        if max_tokens.__class__ is int:
            attributes["gen_ai.request.max_tokens"] = max_tokens
        for option, attribute in (("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p")):
            value = options.get(option)
            if value is not None and value.__class__ in (int, float):
                attributes[attribute] = float(value)
        self.attributes = attributes
        self.messages = messages if capture_content() else None
        self.span: Any = None
        self.response_id: Optional[str] = None
        self.response_model: Optional[str] = None
        self.last_read: Optional[float] = None  # when the last chunk arrived
        # time_per_output_chunk, when recorded: the gap before the first chunk of each read
        # after the first, and how many chunks came right behind another in its read (0 s).
        self.gaps: Optional[List[float]] = [] if instruments.records_per_chunk() else None
        self.zero_gaps = 0

    def start(self) -> None:
        try:
            instruments = self.instruments
            self.span = instruments.tracer.start_span(
                self.shape.name, context=self.parent, kind=instruments.client_kind, attributes=self.attributes
            )
        except Exception:
            logger.exception("OpenTelemetry: starting the span failed; the stream goes on without it")

    def on_read(self, chunks: List[Any]) -> None:
        """Once per network read that brought chunks (the pipeline's hot path: no SDK call
        but, every PER_CHUNK_BATCH chunks, the batch of per-chunk values)."""
        now = time.monotonic()
        last = self.last_read
        self.last_read = now
        gaps = self.gaps
        if last is None:
            first = chunks[0]
            self.response_id = first.id
            self.response_model = first.model
            if gaps is not None:
                self.zero_gaps += len(chunks) - 1
        elif gaps is not None:
            gaps.append(now - last)
            self.zero_gaps += len(chunks) - 1
            if len(gaps) + self.zero_gaps >= PER_CHUNK_BATCH:
                self._record_gaps()

    def _record_gaps(self) -> None:
        gaps = self.gaps
        if not gaps and not self.zero_gaps:
            return
        try:
            record = self.instruments.per_chunk.record
            attributes = self.shape.metric_attributes(self.response_model)[0]
            for gap in gaps or ():
                record(gap, attributes)
            for _ in range(self.zero_gaps):
                record(0.0, attributes)
        except Exception:
            logger.exception("OpenTelemetry: recording time_per_output_chunk failed; the stream goes on")
        self.gaps = []
        self.zero_gaps = 0

    def retry(self, attempt: int, delay: float, exc: BaseException) -> None:
        if self.span is not None:
            self.span.add_event("streamcoord.retry", {
                "streamcoord.retry.attempt": attempt, "streamcoord.retry.delay": float(delay),
                "error.type": type(exc).__qualname__,
            })

    def recovery(self, attempt: int, strategy: str, rewind: int, exc: BaseException) -> None:
        if self.span is not None:
            self.span.add_event("streamcoord.recovery", {
                "streamcoord.recovery.attempt": attempt, "streamcoord.recovery.strategy": strategy,
                "streamcoord.recovery.rewind": rewind, "error.type": type(exc).__qualname__,
            })

    def end(self, status: str, error: Optional[BaseException], answer: Any, metrics: Any, scrubber: Any = None) -> None:
        """``scrubber``: the stream's (``streamcoord._keys.Scrubber``); captured message
        content goes to another host (the collector), so a key the model or server echoed
        is replaced by ``***`` there as in every error, log and stored record."""
        try:
            self._end_span(status, error, answer, scrubber)
        except Exception:
            logger.exception("OpenTelemetry: ending the span failed; the stream is not affected")
        try:
            self._record(error, answer, metrics)
        except Exception:
            logger.exception("OpenTelemetry: recording the metrics failed; the stream is not affected")

    def _end_span(self, status: str, error: Optional[BaseException], answer: Any, scrubber: Any = None) -> None:
        span = self.span
        if span is None:
            return
        if span.is_recording():  # a span sampled out takes no attributes: none are made
            model = answer.model or self.response_model
            usage = answer.usage
            end: Dict[str, Any] = {"streamcoord.status": status}
            if model:
                end["gen_ai.response.model"] = model
            if self.response_id:
                end["gen_ai.response.id"] = self.response_id
            if answer.finish_reason:
                end["gen_ai.response.finish_reasons"] = [answer.finish_reason]
            for kind, key in TOKEN_COUNTS:  # a count the provider did not give is left out, not 0
                count = usage.get(key) if usage else None
                if isinstance(count, int):
                    end[f"gen_ai.usage.{kind}_tokens"] = count
            if self.messages is not None:
                content = content_attributes(self.messages, answer)
                end.update(scrubber.value(content) if scrubber else content)
            if error is not None:
                end["error.type"] = type(error).__qualname__
                trace = self.instruments.trace
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(error)[:500]))
            span.set_attributes(end)
        span.end()

    def _record(self, error: Optional[BaseException], answer: Any, metrics: Any) -> None:
        instruments = self.instruments
        common, input_attributes, output_attributes = self.shape.metric_attributes(answer.model or self.response_model)
        ended = metrics.ended if metrics.ended is not None else time.monotonic()
        instruments.duration.record(
            max(ended - metrics.started, 0.0),
            common if error is None else dict(common, **{"error.type": type(error).__qualname__}),
        )
        if metrics.first_chunk_at is not None:
            instruments.first_chunk.record(max(metrics.first_chunk_at - metrics.started, 0.0), common)
        if self.gaps is not None:
            self._record_gaps()
        usage = answer.usage
        if usage:  # a count the provider did not give "MUST NOT be reported"
            for (_kind, key), attributes in zip(TOKEN_COUNTS, (input_attributes, output_attributes)):
                if isinstance(usage.get(key), int):
                    instruments.tokens.record(usage[key], attributes)
