"""OpenTelemetry's GenAI conventions where they are easy to get wrong, read back from
loopback streams: ``gen_ai.provider.name`` of every registered provider (a well-known
value where the conventions have one), token counts the provider did not give left out
rather than reported as 0, and a native resume reported as a recovery span event."""

from __future__ import annotations

import pytest

import streamcoord
from adapters import names
from recovery_store import MemoryStore
from streamcoord import Adapter, Chunk, EventParser, HTTPRequest
from tests.loopback.test_bedrock import EVENTSTREAM, text_frames
from tests.loopback.test_telemetry import Otel, parse_openai
from tests.support.fakeserver import (
    Response,
    anthropic_text,
    gemini_text,
    mistral_text,
    ollama_text,
    openai_text,
    sse,
)
from tests.support.responses_wire import ResponsesStream

MESSAGES = [{"role": "user", "content": "Hi"}]
PIECES = ["Hel", "lo"]
# Every registered provider's gen_ai.provider.name: a new adapter fails here until it
# says which (OpenTelemetry's well-known values; otherwise the provider's own name).
GEN_AI_PROVIDER = {
    "openai": "openai", "openai_responses": "openai", "azure_openai": "azure.ai.openai",
    "azure_openai_responses": "azure.ai.openai", "anthropic": "anthropic", "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai", "bedrock": "aws.bedrock", "mistral": "mistral_ai", "ollama": "ollama",
    "groq": "groq", "deepseek": "deepseek", "openrouter": "openrouter", "together": "together",
    "lmstudio": "lmstudio", "vllm": "vllm", "openai_compatible": "openai_compatible",
}


def _answer(provider):
    """(a stream's answer in the provider's wire format, the client's settings)."""
    if provider in ("openai_responses", "azure_openai_responses"):
        base = "/openai/v1" if provider.startswith("azure") else "/v1"
        return ResponsesStream("resp_1").text(PIECES).completed().response(), {"base": base}
    if provider == "bedrock":
        return Response(parts=tuple(text_frames(PIECES)), content_type=EVENTSTREAM), {"region": "us-west-2"}
    if provider == "vertex":
        return gemini_text(PIECES), {"project": "my-proj", "location": "us-central1", "access_token": "ya29.test-token"}
    builders = {"anthropic": anthropic_text, "gemini": gemini_text, "ollama": ollama_text, "mistral": mistral_text}
    if provider in builders:
        return builders[provider](PIECES), {}
    base = "/openai/v1" if provider == "azure_openai" else "/v1"
    return openai_text(PIECES, usage=True), {"base": base}  # OpenAI and the servers compatible with it


@pytest.fixture
def otel():
    setup = Otel()
    streamcoord.instrument(tracer_provider=setup.tracer_provider, meter_provider=setup.meter_provider)
    yield setup
    streamcoord.uninstrument()


@pytest.mark.parametrize("provider", names())
def test_every_provider_is_named_as_the_genai_conventions_name_it(server, client, otel, provider):
    assert provider in GEN_AI_PROVIDER, f"say which gen_ai.provider.name {provider!r} has (Adapter.otel_provider_name)"
    answer, settings = _answer(provider)
    server.enqueue(answer)
    base = settings.pop("base", "")
    if provider == "vertex":
        settings["api_key"] = None
    stream = client(provider, base_url=server.base_url + base, **settings).stream_chat(MESSAGES, model="m")
    assert "".join(chunk.content for chunk in stream) == "Hello"
    (span,) = otel.spans()
    assert span.attributes["gen_ai.provider.name"] == GEN_AI_PROVIDER[provider]
    (duration,) = otel.metrics()["gen_ai.client.operation.duration"].data.data_points
    assert duration.attributes["gen_ai.provider.name"] == GEN_AI_PROVIDER[provider]


@pytest.mark.parametrize("provider", ["azure_openai_responses", "gemini", "my-gateway"])
def test_the_direct_api_names_a_registered_provider_as_its_adapter_does(server, otel, no_thread_leak, provider):
    server.enqueue(openai_text(PIECES, usage=True))
    handle = streamcoord.StreamingCoordinator.start_stream(
        server.base_url + "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True}, {},
        lambda chunk: None, parse_chunk_fn=parse_openai, provider=provider)
    assert handle.join(10) and handle.error is None
    (span,) = otel.spans()
    assert span.attributes["gen_ai.provider.name"] == GEN_AI_PROVIDER.get(provider, provider)


class CountingParser(EventParser):
    """A provider that reports the output tokens only (``event: end`` carries the count)."""

    provider = "counting"

    def parse(self, event):
        index = self.next_index
        self.next_index += 1
        if event.event == "end":
            self.done = True
            return Chunk("", "stop", index=index, usage={"completion_tokens": int(event.data)})
        return Chunk(event.data, index=index)


class CountingAdapter(Adapter):
    name = "counting"
    requires_api_key = False

    def build_request(self, messages, options, *, base_url, api_key):
        return HTTPRequest(url=f"{base_url}/count", json={"messages": messages})

    def new_parser(self, request):
        return CountingParser()


def test_a_token_count_the_provider_did_not_give_is_not_reported(server, otel, no_thread_leak):
    server.enqueue(sse([("token", "Hel"), ("token", "lo"), ("end", "2")]))
    stream = streamcoord.Client(CountingAdapter(), base_url=server.base_url).stream_chat(MESSAGES)
    assert "".join(chunk.content for chunk in stream) == "Hello"
    (span,) = otel.spans()
    assert span.attributes["gen_ai.usage.output_tokens"] == 2
    assert "gen_ai.usage.input_tokens" not in span.attributes
    tokens = otel.metrics()["gen_ai.client.token.usage"].data.data_points
    assert {p.attributes["gen_ai.token.type"]: p.sum for p in tokens} == {"output": 2}


def test_a_native_resume_is_a_recovery_span_event(server, client, otel):
    wire = ResponsesStream("resp_bg", background=True).text(["Hel", "lo ", "there"]).completed()
    cut = wire.seq_of("response.output_text.delta", 1)
    server.enqueue(wire.response(drop_after=cut), wire.response(start_after=cut))
    stream = client("openai_responses", recovery_store=MemoryStore()).stream_chat(
        MESSAGES, model="gpt-5-mini", background=True, stream_recovery=True)
    assert "".join(chunk.content for chunk in stream) == "Hello there"
    assert [r.method for r in server.requests] == ["POST", "GET"]
    (span,) = otel.spans()
    assert [(e.name, dict(e.attributes)) for e in span.events] == [("streamcoord.recovery", {
        "streamcoord.recovery.attempt": 1, "streamcoord.recovery.strategy": "native",
        "streamcoord.recovery.rewind": 0, "error.type": "ConnectionLost",
    })]
