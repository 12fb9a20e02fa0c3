"""OpenTelemetry, named after the GenAI semantic conventions: one span per stream, four metrics.

Optional (extra ``otel``, ``opentelemetry-api`` only): nothing here imports OpenTelemetry
until a client asks for telemetry (``Client(telemetry=True)`` or ``instrument()``), so a
stream without it neither imports nor pays for it. With it, each stream is a span
``chat {model}`` of kind CLIENT, a child of the span current where ``stream_chat`` was
called (in a web view, the request's span, although a WSGI server iterates the answer
later), started when the request goes out and ended with the stream. Retries and
recoveries are span events. A failed stream has status ERROR and ``error.type``; a
cancelled one (``break``, ``close()``) is not an error. The metrics are recorded once the
stream has ended. ``time_per_output_chunk`` is one value per stream, the mean time per
chunk after the first (from the first chunk's arrival to the last's, over the chunks
between): the mean of what one value per chunk would give, at the cost of one. Why:
OpenTelemetry's Python SDK spends about 16 us of CPU recording one value (measured),
three times what streamcoord spends on a whole chunk.

Message content (prompt, answer, tool-call arguments) is recorded only with
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``, as the span attributes
``gen_ai.system_instructions``, ``gen_ai.input.messages`` and ``gen_ai.output.messages``
(JSON in the conventions' parts form). Keys and headers are never recorded.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

__all__ = [
    "CAPTURE_CONTENT_ENV",
    "DURATION_BUCKETS",
    "PROVIDER_NAMES",
    "TOKEN_BUCKETS",
    "Instruments",
    "StreamTelemetry",
    "instrument",
    "instruments_for",
    "uninstrument",
]

logger = logging.getLogger("streamcoord")

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# streamcoord's provider names -> gen_ai.provider.name's well-known values; any other name
# (an OpenAI-compatible server, a custom adapter) is used as it is.
PROVIDER_NAMES = {
    "openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini", "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock", "azure_openai": "azure.ai.openai", "mistral": "mistral_ai", "ollama": "ollama",
    "groq": "groq", "deepseek": "deepseek",
}
# The bucket boundaries the GenAI metrics conventions ask for.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
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
            "Time per output chunk, after the first one.", DURATION_BUCKETS,
        )

    def stream(
        self, provider: str, stream_id: str, url: str, options: Dict[str, Any], messages: List[Dict[str, Any]]
    ) -> "StreamTelemetry":
        return StreamTelemetry(self, provider, stream_id, url, options, messages)


def capture_content() -> bool:
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("true", "span_only", "span_and_event")


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
        model = options.get("model")
        self.name = f"chat {model}" if model else "chat"
        common: Dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": PROVIDER_NAMES.get(provider, provider)}
        if model:
            common["gen_ai.request.model"] = str(model)
        address = urlsplit(url)
        if address.hostname:
            common["server.address"] = address.hostname
            common["server.port"] = address.port or (443 if address.scheme == "https" else 80)
        self.common = common  # on the span and on every metric
        attributes = dict(common, **{"streamcoord.stream_id": stream_id})
        max_tokens = next((options[k] for k in ("max_tokens", "max_completion_tokens") if options.get(k) is not None), None)
        if isinstance(max_tokens, int):
            attributes["gen_ai.request.max_tokens"] = max_tokens
        for option, attribute in (("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p")):
            if isinstance(options.get(option), (int, float)):
                attributes[attribute] = float(options[option])
        self.attributes = attributes
        self.messages = messages if capture_content() else None
        self.span: Any = None
        self.response_id: Optional[str] = None
        self.response_model: Optional[str] = None
        self.first_read: Optional[float] = None  # when the first and the last chunks arrived
        self.last_read: Optional[float] = None

    def start(self) -> None:
        try:
            self.span = self.instruments.tracer.start_span(
                self.name, context=self.parent, kind=self.instruments.trace.SpanKind.CLIENT, attributes=self.attributes
            )
        except Exception:
            logger.exception("OpenTelemetry: starting the span failed; the stream goes on without it")

    def on_read(self, chunks: List[Any]) -> None:
        """Once per network read that brought chunks (the pipeline's hot path: no SDK call)."""
        now = self.last_read = time.monotonic()
        if self.first_read is None:
            self.first_read = now
            first = chunks[0]
            self.response_id = first.id
            self.response_model = first.model

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

    def end(self, status: str, error: Optional[BaseException], answer: Any, metrics: Any) -> None:
        try:
            self._end(status, error, answer, metrics)
        except Exception:
            logger.exception("OpenTelemetry: ending the span failed; the stream is not affected")

    def _end(self, status: str, error: Optional[BaseException], answer: Any, metrics: Any) -> None:
        instruments = self.instruments
        common = dict(self.common)
        model = answer.model or self.response_model
        if model:
            common["gen_ai.response.model"] = model
        usage = answer.usage or {}
        span = self.span
        if span is not None:
            end: Dict[str, Any] = {"streamcoord.status": status}
            if model:
                end["gen_ai.response.model"] = model
            if self.response_id:
                end["gen_ai.response.id"] = self.response_id
            if answer.finish_reason:
                end["gen_ai.response.finish_reasons"] = [answer.finish_reason]
            if usage:
                end["gen_ai.usage.input_tokens"] = int(usage.get("prompt_tokens") or 0)
                end["gen_ai.usage.output_tokens"] = int(usage.get("completion_tokens") or 0)
            if self.messages is not None:
                end.update(content_attributes(self.messages, answer))
            if error is not None:
                end["error.type"] = type(error).__qualname__
                span.set_status(instruments.trace.Status(instruments.trace.StatusCode.ERROR, str(error)[:500]))
            span.set_attributes(end)
            span.end()
        duration_attributes = dict(common, **{"error.type": type(error).__qualname__}) if error is not None else common
        ended = metrics.ended if metrics.ended is not None else time.monotonic()
        instruments.duration.record(max(ended - metrics.started, 0.0), duration_attributes)
        if metrics.first_chunk_at is not None:
            instruments.first_chunk.record(max(metrics.first_chunk_at - metrics.started, 0.0), common)
        if self.first_read is not None and self.last_read is not None and metrics.chunks_received > 1:
            per_chunk = (self.last_read - self.first_read) / (metrics.chunks_received - 1)
            instruments.per_chunk.record(per_chunk, common)
        if usage:
            for kind, key in (("input", "prompt_tokens"), ("output", "completion_tokens")):
                instruments.tokens.record(int(usage.get(key) or 0), dict(common, **{"gen_ai.token.type": kind}))


def _parts(content: Any) -> List[Dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts = []
    for item in content if isinstance(content, list) else ():
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            parts.append({"type": "text", "content": item["text"]})
        elif isinstance(item, dict):
            parts.append({"type": str(item.get("type") or "unknown")})
    return parts


def _tool_call_parts(calls: Any) -> List[Dict[str, Any]]:
    parts = []
    for call in calls or ():
        function = call.get("function") or {}
        arguments: Any = function.get("arguments")
        try:
            arguments = json.loads(arguments) if isinstance(arguments, str) and arguments else arguments
        except ValueError:
            pass  # kept as the text the model sent
        parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name"), "arguments": arguments})
    return parts


def content_attributes(messages: List[Dict[str, Any]], answer: Any) -> Dict[str, str]:
    """The opt-in content attributes, JSON in the conventions' parts form."""
    system: List[Dict[str, Any]] = []
    inputs: List[Dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(message.get("content")))
        elif role == "tool":
            inputs.append({"role": "tool", "parts": [
                {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": message.get("content")}]})
        else:
            inputs.append({"role": role, "parts": _parts(message.get("content")) + _tool_call_parts(message.get("tool_calls"))})
    output: List[Dict[str, Any]] = []
    reasoning = "".join(answer.reasoning_parts)
    if reasoning:
        output.append({"type": "reasoning", "content": reasoning})
    if answer.text:
        output.append({"type": "text", "content": answer.text})
    output += _tool_call_parts(answer.tool_calls.result())
    attributes = {
        "gen_ai.input.messages": json.dumps(inputs, ensure_ascii=False, default=str),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": output, "finish_reason": answer.finish_reason or "error"}],
            ensure_ascii=False, default=str,
        ),
    }
    if system:
        attributes["gen_ai.system_instructions"] = json.dumps(system, ensure_ascii=False, default=str)
    return attributes
