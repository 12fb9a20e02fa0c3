"""OpenTelemetry over loopback streams, read back with opentelemetry-sdk's in-memory span
exporter and metric reader: the span of each provider's stream (name, kind, parent,
GenAI attributes, status), retries and recoveries as span events, failures and cancels,
the four GenAI metrics (units, attributes, values matching ``stream.usage``), message
content only when asked for, and ``instrument()`` for every client made afterwards."""

from __future__ import annotations

import json
import threading
import time

import pytest

import streamcoord
from recovery_store import MemoryStore
from streamcoord.errors import AuthenticationError
from tests.conftest import API_KEY
from tests.support.fakeserver import (
    Gate,
    Stall,
    anthropic_text,
    error,
    gemini_text,
    mistral_text,
    ollama_text,
    openai_text,
)

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk (test extra) is not installed")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.metrics import Histogram, MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

PROMPT = "Tell me the secret plan"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]
PIECES = ["Hel", "lo, ", "wör", "ld"]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.0-flash",
          "ollama": "llama3", "mistral": "mistral-small-latest"}
BUILDERS = {"openai": lambda **kw: openai_text(PIECES, usage=True, **kw), "anthropic": lambda **kw: anthropic_text(PIECES, **kw),
            "gemini": lambda **kw: gemini_text(PIECES, **kw), "ollama": lambda **kw: ollama_text(PIECES, **kw),
            "mistral": lambda **kw: mistral_text(PIECES, **kw)}
GEN_AI_PROVIDER = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini", "ollama": "ollama",
                   "mistral": "mistral_ai"}
RESPONSE_IDS = {"openai": "chatcmpl-test", "anthropic": "msg_fakeserver", "gemini": "fakeserver-response",
                "mistral": "5c0f2bb1d6e24b8c9a7e3f1d2c4b6a80"}


class Otel:
    """A tracer and meter provider with in-memory export, passed to instrument()."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = sdk_trace.TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        # Delta temporality: each collection holds only what was recorded since the last.
        self.reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self):
        spans = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        return spans

    def metrics(self):
        data = self.reader.get_metrics_data()
        found = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found


@pytest.fixture
def otel():
    setup = Otel()
    streamcoord.instrument(tracer_provider=setup.tracer_provider, meter_provider=setup.meter_provider)
    setup.metrics()  # start from nothing
    yield setup
    streamcoord.uninstrument()
    setup.tracer_provider.shutdown()
    setup.meter_provider.shutdown()


def points(metric):
    return list(metric.data.data_points)


@pytest.mark.parametrize("provider", sorted(BUILDERS))
def test_each_providers_stream_is_one_client_span_with_the_genai_attributes_and_metrics(server, client, otel, provider):
    server.enqueue(BUILDERS[provider]())
    parent_tracer = otel.tracer_provider.get_tracer("the-app")
    with parent_tracer.start_as_current_span("handle request") as parent:
        stream = client(provider).stream_chat(MESSAGES, model=MODELS[provider], max_tokens=64, temperature=0.25)
    text = "".join(chunk.content for chunk in stream)  # iterated outside the parent, as a WSGI server does
    assert text == "".join(PIECES)

    spans = {span.name: span for span in otel.spans()}
    span = spans[f"chat {MODELS[provider]}"]
    assert span.kind is trace.SpanKind.CLIENT
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.status.status_code is trace.StatusCode.UNSET
    attributes = dict(span.attributes)
    usage = stream.usage
    expected = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": GEN_AI_PROVIDER[provider],
        "gen_ai.request.model": MODELS[provider], "gen_ai.request.max_tokens": 64, "gen_ai.request.temperature": 0.25,
        "gen_ai.response.model": stream.model, "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": usage["prompt_tokens"], "gen_ai.usage.output_tokens": usage["completion_tokens"],
        "server.address": "127.0.0.1", "server.port": int(server.base_url.rsplit(":", 1)[1]),
        "streamcoord.stream_id": stream.stream_id,
    }
    assert {k: attributes.get(k) for k in expected} == expected
    assert attributes.get("gen_ai.response.id") == RESPONSE_IDS.get(provider)
    assert "error.type" not in attributes
    exported = span.to_json()
    assert API_KEY not in exported and PROMPT not in exported and "Be brief" not in exported and "wör" not in exported

    metrics = otel.metrics()
    units = {"gen_ai.client.operation.duration": "s", "gen_ai.client.operation.time_to_first_chunk": "s",
             "gen_ai.client.token.usage": "{token}", "gen_ai.client.operation.time_per_output_chunk": "s"}
    assert {name: metric.unit for name, metric in metrics.items()} == {
        name: unit for name, unit in units.items() if name in metrics}
    assert set(units) - set(metrics) <= {"gen_ai.client.operation.time_per_output_chunk"}  # one read: no "after the first"
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.operation.time_to_first_chunk"):
        (point,) = points(metrics[name])
        assert point.count == 1 and 0 < point.sum < 5
        assert point.attributes["gen_ai.operation.name"] == "chat"
        assert point.attributes["gen_ai.provider.name"] == GEN_AI_PROVIDER[provider]
    (duration,) = points(metrics["gen_ai.client.operation.duration"])
    assert list(duration.explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points(metrics["gen_ai.client.token.usage"])}
    assert tokens == {"input": usage["prompt_tokens"], "output": usage["completion_tokens"]}


def test_retries_and_recoveries_are_span_events_and_the_stream_is_not_an_error(server, client, otel):
    server.enqueue(error(503, {"error": {"message": "busy", "type": "server_error"}}),
                   openai_text(["First paragraph.\n\n", "Sec", "ond"], drop_after=2),
                   openai_text(["Second one."], usage=True))
    stream = client("openai", recovery_store=MemoryStore()).stream_chat(
        MESSAGES, model="gpt-4o-mini", stream_recovery=True, recovery={"strategy": "paragraph"})
    assert "".join(c.content for c in stream)
    (span,) = otel.spans()
    events = [(e.name, dict(e.attributes)) for e in span.events]
    assert [name for name, _ in events] == ["streamcoord.retry", "streamcoord.recovery"]
    assert events[0][1]["error.type"] == "ServerError" and events[0][1]["streamcoord.retry.attempt"] == 2
    assert events[1][1] == {"streamcoord.recovery.attempt": 1, "streamcoord.recovery.strategy": "paragraph",
                            "streamcoord.recovery.rewind": 3, "error.type": "ConnectionLost"}
    assert span.status.status_code is trace.StatusCode.UNSET
    assert stream.metrics.retries == 1 and stream.metrics.recoveries == 1


def test_a_failed_stream_has_status_error_and_error_type_on_span_and_duration(server, client, otel):
    # The server echoes the key back: the span, like the error, never shows it.
    server.enqueue(error(401, {"error": {"message": f"Incorrect API key provided: {API_KEY}",
                                         "type": "invalid_request_error"}}))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o-mini")
    with pytest.raises(AuthenticationError):
        list(stream)
    (span,) = otel.spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.attributes["error.type"] == "AuthenticationError"
    assert API_KEY not in span.to_json()
    (duration,) = points(otel.metrics()["gen_ai.client.operation.duration"])
    assert duration.attributes["error.type"] == "AuthenticationError"


def test_a_cancelled_stream_is_not_an_error(server, client, otel):
    server.enqueue(openai_text(PIECES, stall_after=1, stall=Stall(timeout=10)))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o-mini")
    for _chunk in stream:
        break
    stream.close()  # waits for the worker, which ends the span
    (span,) = otel.spans()
    assert span.status.status_code is trace.StatusCode.UNSET
    assert span.attributes["streamcoord.status"] == "cancelled" and "error.type" not in span.attributes
    (duration,) = points(otel.metrics()["gen_ai.client.operation.duration"])
    assert "error.type" not in duration.attributes


def test_time_per_output_chunk_is_one_value_per_chunk_after_the_first_matching_the_streams_timings(
        server, client, otel):
    # The server stops for 0.25 s before the third piece: exactly one value is that long.
    release = threading.Event()
    server.enqueue(openai_text(PIECES, usage=True, stall_after=2, stall=Gate(release)))
    arrivals = []
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o-mini")
    for _chunk in stream:
        arrivals.append(time.monotonic())
        if len(arrivals) == 2:
            threading.Timer(0.25, release.set).start()
    assert stream.text == "".join(PIECES)
    (point,) = points(otel.metrics()["gen_ai.client.operation.time_per_output_chunk"])
    chunks = stream.metrics.chunks_received
    assert chunks == len(arrivals) and point.count == chunks - 1
    # The values add up to the time from the first chunk's arrival to the last's (the
    # worker's clock, a little before the consumer's).
    assert 0.25 <= point.sum <= arrivals[-1] - arrivals[0] + 0.05
    assert 0.25 <= point.max < 1.0 and point.min >= 0
    bounds = list(point.explicit_bounds)
    slow = sum(count for bound, count in zip([0.0] + bounds, point.bucket_counts) if bound >= 0.16)
    assert slow == 1 and list(point.explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    assert point.attributes["gen_ai.provider.name"] == "openai"
    assert point.attributes["gen_ai.response.model"] == stream.model


def test_a_meter_provider_without_a_reader_still_gets_the_span(server, client):
    # No reader: the per-chunk values would go nowhere, and are not made (benchmarks/bench_telemetry.py).
    otel = Otel()
    otel.meter_provider.shutdown()
    streamless = MeterProvider()
    streamcoord.instrument(tracer_provider=otel.tracer_provider, meter_provider=streamless)
    try:
        server.enqueue(openai_text(PIECES, usage=True))
        stream = client("openai").stream_chat(MESSAGES, model="gpt-4o-mini")
        assert "".join(c.content for c in stream) == "".join(PIECES)
        assert [span.name for span in otel.spans()] == ["chat gpt-4o-mini"]
    finally:
        streamcoord.uninstrument()
        streamless.shutdown()


def test_a_view_that_drops_time_per_output_chunk_leaves_the_other_metrics_and_records_nothing_per_chunk(
        server, client, monkeypatch):
    # The SDK's own way to switch one metric off: the per-chunk values then cost nothing
    # (no record call at all, which the SDK would still pay ~7 us for), the rest is recorded.
    from opentelemetry.sdk.metrics._internal.instrument import _Histogram
    from opentelemetry.sdk.metrics.view import DropAggregation, View

    otel = Otel()
    otel.meter_provider.shutdown()
    reader = InMemoryMetricReader()
    dropping = MeterProvider(metric_readers=[reader], views=[
        View(instrument_name="gen_ai.client.operation.time_per_output_chunk", aggregation=DropAggregation())])
    recorded = []
    real_record = _Histogram.record
    monkeypatch.setattr(_Histogram, "record", lambda self, amount, attributes=None, context=None: (
        recorded.append(self.name), real_record(self, amount, attributes, context))[1])
    release = threading.Event()
    server.enqueue(openai_text(PIECES, usage=True, stall_after=2, stall=Gate(release)))
    streamcoord.instrument(tracer_provider=otel.tracer_provider, meter_provider=dropping)
    try:
        stream = client("openai").stream_chat(MESSAGES, model="gpt-4o-mini")
        for i, _chunk in enumerate(stream):
            if i == 1:  # the rest comes in later reads: values "after the first" exist
                release.set()
        assert stream.text == "".join(PIECES) and stream.metrics.chunks_received > 2
        names = {metric.name for resource in reader.get_metrics_data().resource_metrics
                 for scope in resource.scope_metrics for metric in scope.metrics}
        assert "gen_ai.client.operation.duration" in names and "gen_ai.client.token.usage" in names
        assert "gen_ai.client.operation.time_per_output_chunk" not in names
        assert "gen_ai.client.operation.time_per_output_chunk" not in recorded
        assert "gen_ai.client.operation.duration" in recorded
    finally:
        streamcoord.uninstrument()
        dropping.shutdown()


def test_message_content_is_recorded_only_when_asked_for(server, client, otel, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    server.enqueue(openai_text(PIECES, usage=True))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o-mini")
    list(stream)
    (span,) = otel.spans()
    assert json.loads(span.attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": stream.text}], "finish_reason": "stop"}]
    assert API_KEY not in span.to_json()


def test_captured_content_never_carries_the_key_a_model_echoes(server, client, otel, monkeypatch):
    # Captured content goes to the collector, another host: a key the model (or a server)
    # echoes in the answer is *** there, as in errors, logs and stored records.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    server.enqueue(openai_text(["Your key is ", API_KEY[:6], API_KEY[6:], "."], usage=True))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o-mini")
    list(stream)
    (span,) = otel.spans()
    output = json.loads(span.attributes["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == "Your key is ***."
    assert API_KEY not in span.to_json()


def test_instrument_covers_clients_made_afterwards_and_telemetry_false_opts_out(server, client, otel):
    server.enqueue(openai_text(PIECES), openai_text(PIECES), openai_text(PIECES))
    list(client("openai", telemetry=False).stream_chat(MESSAGES, model="gpt-4o-mini"))
    assert otel.spans() == []
    streamcoord.uninstrument()
    list(client("openai").stream_chat(MESSAGES, model="gpt-4o-mini"))
    assert otel.spans() == []
    streamcoord.instrument(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    list(client("openai").stream_chat(MESSAGES, model="gpt-4o-mini"))
    assert [span.name for span in otel.spans()] == ["chat gpt-4o-mini"]


def test_telemetry_must_be_a_bool(client):
    with pytest.raises(TypeError, match="telemetry must be True, False or None"):
        client("openai", telemetry="yes")


# -- the direct coordinator API --------------------------------------------------------------
def parse_openai(data):
    obj = json.loads(data)
    choices = obj.get("choices") or [{}]
    usage = obj.get("usage")
    return streamcoord.Chunk(
        content=(choices[0].get("delta") or {}).get("content") or "", finish_reason=choices[0].get("finish_reason"),
        model=obj.get("model"), id=obj.get("id"),
        usage={"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
               "total_tokens": usage["total_tokens"]} if usage else None,
    )


def test_coordinator_streams_get_the_same_span_and_metrics(server, otel, no_thread_leak):
    server.enqueue(openai_text(PIECES, usage=True), openai_text(PIECES, usage=True))
    url = server.base_url + "/v1/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "max_tokens": 64, "temperature": 0.25}
    received = []
    parent_tracer = otel.tracer_provider.get_tracer("the-app")
    with parent_tracer.start_as_current_span("handle request") as parent:
        handle = streamcoord.StreamingCoordinator.start_stream(
            url, body, {"Authorization": f"Bearer {API_KEY}"}, received.append, parse_chunk_fn=parse_openai,
            provider="openai", stream_id="direct-1")
    assert handle.join(10)
    short = streamcoord.StreamingCoordinator.simple_stream(
        url=url, request=dict(body, model="gpt-4o"), callback=received.append, parse_chunk=parse_openai)
    assert short.join(10) and handle.error is None and short.error is None
    assert "".join(c.content for c in received) == "".join(PIECES) * 2

    spans = {span.name: span for span in otel.spans()}
    assert set(spans) == {"handle request", "chat gpt-4o-mini", "chat gpt-4o"}
    span = spans["chat gpt-4o-mini"]
    assert span.kind is trace.SpanKind.CLIENT and span.parent.span_id == parent.get_span_context().span_id
    assert span.status.status_code is trace.StatusCode.UNSET
    expected = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.request.max_tokens": 64, "gen_ai.request.temperature": 0.25,
                "gen_ai.response.model": "gpt-4o-mini", "gen_ai.response.id": "chatcmpl-test",
                "gen_ai.response.finish_reasons": ("stop",), "server.address": "127.0.0.1",
                "server.port": int(server.base_url.rsplit(":", 1)[1]), "streamcoord.stream_id": "direct-1"}
    assert {k: span.attributes.get(k) for k in expected} == expected
    assert spans["chat gpt-4o"].attributes["gen_ai.provider.name"] == "custom"  # simple_stream's default provider
    assert API_KEY not in span.to_json() and PROMPT not in span.to_json()
    durations = points(otel.metrics()["gen_ai.client.operation.duration"])
    assert sorted(p.attributes["gen_ai.request.model"] for p in durations) == ["gpt-4o", "gpt-4o-mini"]
    assert all(p.count == 1 for p in durations)


def test_coordinator_telemetry_false_opts_out(server, otel):
    server.enqueue(openai_text(PIECES))
    handle = streamcoord.StreamingCoordinator.start_stream(
        server.base_url + "/v1/chat/completions", {"model": "m", "messages": MESSAGES}, {}, lambda chunk: None,
        parse_chunk_fn=parse_openai, telemetry=False)
    assert handle.join(10) and handle.error is None
    assert otel.spans() == []
