"""Each provider adapter end to end over loopback HTTP: the answer, the request that went
out, in-stream error events, one-byte reads, CRLF line ends, a custom adapter, OLLAMA_HOST."""

from __future__ import annotations

import json
import threading

import pytest

import streamcoord
from adapters.base import Adapter, EventParser, HTTPRequest
from streamcoord._chunk import Chunk, normalize_usage
from streamcoord.errors import RateLimitError, ServerError
from tests.conftest import API_KEY
from tests.support.fakeserver import (
    Gate,
    Response,
    anthropic_text,
    gemini_text,
    mistral_text,
    ollama_text,
    openai_text,
    raw_file,
    sse,
)

PIECES = ["Hel", "lo, ", "wör", "ld ", "😄"]
TEXT = "".join(PIECES)
SYSTEM = {"role": "system", "content": "Be brief."}
MESSAGES = [SYSTEM, {"role": "user", "content": "Say hello"}]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.0-flash",
          "ollama": "llama3", "mistral": "mistral-small-latest"}
BUILDERS = {"openai": lambda: openai_text(PIECES, usage=True), "anthropic": lambda: anthropic_text(PIECES),
            "gemini": lambda: gemini_text(PIECES), "ollama": lambda: ollama_text(PIECES),
            "mistral": lambda: mistral_text(PIECES)}
PROVIDERS = sorted(BUILDERS)


def body_bytes(response: Response) -> bytes:
    return b"".join(p for p in response.parts if isinstance(p, bytes))


def run(client, provider, **kwargs):
    stream = client(provider, **kwargs.pop("client_kwargs", {})).stream_chat(MESSAGES, model=MODELS[provider], **kwargs)
    chunks = list(stream)
    return stream, chunks


@pytest.mark.parametrize("provider", PROVIDERS)
def test_full_answer(server, client, provider):
    server.enqueue(BUILDERS[provider]())
    stream, chunks = run(client, provider)
    assert "".join(c.content for c in chunks) == TEXT
    assert stream.text == TEXT
    assert stream.finish_reason == "stop"
    assert stream.usage == USAGE
    assert stream.model == MODELS[provider]
    assert [c.index for c in chunks] == list(range(len(chunks)))
    final = [c for c in chunks if c.finish_reason][-1]
    assert final.metadata["raw_finish_reason"] in ("stop", "end_turn", "STOP")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_model_is_known_from_the_first_chunk_on(server, client, provider):
    go_on = threading.Event()
    builder = {"openai": openai_text, "anthropic": anthropic_text}[provider]
    server.enqueue(builder(PIECES, stall_after=1, stall=Gate(go_on)))
    stream = client(provider).stream_chat(MESSAGES, model=MODELS[provider])
    try:
        first = next(iter(stream))
        assert first.content == PIECES[0]
        assert stream.model == MODELS[provider]  # before the rest (and its finish chunk) has come
    finally:
        go_on.set()
        stream.close()


def check_request(provider, request):
    body = request.json
    headers = request.headers
    if provider in ("openai", "mistral"):
        assert request.path == "/v1/chat/completions"
        assert headers["authorization"] == f"Bearer {API_KEY}"
        assert body["messages"] == MESSAGES and body["stream"] is True
    elif provider == "anthropic":
        assert request.path == "/v1/messages"
        assert headers["x-api-key"] == API_KEY and headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in headers
        assert body["system"] == SYSTEM["content"]
        assert body["messages"] == MESSAGES[1:] and body["stream"] is True
        assert body["max_tokens"] == 4096
    elif provider == "gemini":
        assert request.path == f"/models/{MODELS['gemini']}:streamGenerateContent"
        assert request.query == {"alt": "sse"}
        assert headers["x-goog-api-key"] == API_KEY and "authorization" not in headers
        assert body["systemInstruction"] == {"parts": [{"text": SYSTEM["content"]}]}
        assert body["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]
    elif provider == "ollama":
        assert request.path == "/api/chat"
        assert "authorization" not in headers
        assert body["messages"] == MESSAGES and body["stream"] is True
    assert API_KEY not in request.body.decode("utf-8")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_request_the_server_received(server, client, provider, monkeypatch):
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    server.enqueue(BUILDERS[provider]())
    kwargs = {"client_kwargs": {"api_key": None}} if provider == "ollama" else {}
    run(client, provider, **kwargs)
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request.method == "POST"
    assert request.json.get("model", MODELS[provider]) == MODELS[provider]
    check_request(provider, request)


def openai_chunk(text):
    return {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def ndjson(*objs):
    return Response(parts=tuple((json.dumps(o) + "\n").encode() for o in objs), content_type="application/x-ndjson")


ANTHROPIC_START = ("message_start", {"type": "message_start", "message": {
    "id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 3, "output_tokens": 1}}})
ERROR_CASES = {
    "openai": (sse([openai_chunk("Hi"), {"error": {"message": "The server had an error", "type": "server_error"}}]),
               ServerError, 500),
    "anthropic": (sse([ANTHROPIC_START,
                       ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": "Hi"}}),
                       ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]),
                  ServerError, 529),
    "gemini": (sse([{"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}}]},
                    {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}]),
               RateLimitError, 429),
    "ollama": (ndjson({"model": "llama3", "message": {"role": "assistant", "content": "Hi"}, "done": False},
                      {"error": "an error was encountered while running the model: unexpected EOF"}),
               ServerError, 500),
    "mistral": (sse([openai_chunk("Hi"), {"object": "error", "message": "Rate limit exceeded",
                                          "type": "rate_limit_error", "param": None, "code": "1300"}]),
                RateLimitError, 429),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_mid_stream_error_event_raises_and_reports(server, client, provider):
    response, cls, status = ERROR_CASES[provider]
    server.enqueue(response)
    reported = []
    stream = client(provider, max_retries=0).stream_chat(
        MESSAGES, model=MODELS[provider], on_error=lambda s, b: reported.append((s, b)))
    seen = []
    with pytest.raises(cls) as info:
        for chunk in stream:
            seen.append(chunk.content)
    assert "".join(seen) == "Hi" == stream.text  # what came before the error was delivered
    assert info.value.status == status
    assert info.value.provider == provider
    assert reported == [(status, info.value.body)]
    last_event = body_bytes(response).strip().splitlines()[-1].decode()
    assert info.value.body == json.loads(last_event.split("data: ", 1)[-1])


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_one_byte_reads_and_line_ends(server, client, provider, crlf):
    data = body_bytes(BUILDERS[provider]()).replace(b"\r\n", b"\n")
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    ctype = "application/x-ndjson" if provider == "ollama" else "text/event-stream"
    server.enqueue(raw_file(data, split=(1, 1), content_type=ctype))
    stream, chunks = run(client, provider)
    assert stream.text == TEXT
    assert stream.finish_reason == "stop"
    assert stream.usage == USAGE


def test_ollama_host_without_scheme(server, client, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", server.base_url.split("://", 1)[1])  # "127.0.0.1:PORT"
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    server.enqueue(ollama_text(PIECES))
    c = client("ollama", base_url=None, api_key=None)
    assert c.base_url == server.base_url
    stream = c.stream_chat(MESSAGES, model="llama3")
    assert "".join(ch.content for ch in stream) == TEXT
    assert server.requests[0].path == "/api/chat"


class ShoutParser(EventParser):
    """A made-up provider: ``event: token`` carries text, ``event: end`` a JSON summary."""

    provider = "shout"

    def parse(self, event):
        if event.event == "token":
            index = self.next_index
            self.next_index += 1
            return Chunk(event.data.upper(), index=index, raw=event)
        if event.event == "end":
            self.done = True
            info = json.loads(event.data)
            return Chunk("", "stop", index=self.next_index, usage=normalize_usage(1, info["n"]),
                         metadata={"raw_finish_reason": info["why"]}, raw=event)
        return None


class ShoutAdapter(Adapter):
    name = "shout"
    requires_api_key = False

    def build_request(self, messages, options, *, base_url, api_key):
        return HTTPRequest(url=f"{base_url}/shout", json={"prompt": messages[-1]["content"], **options},
                           headers={"X-Token": api_key or ""})

    def new_parser(self, request):
        return ShoutParser()


def test_custom_adapter_end_to_end(server, no_thread_leak):
    server.enqueue(sse([("token", "hel"), ("ping", "{}"), ("token", "lo"), ("end", {"why": "done", "n": 2})]))
    stream = streamcoord.Client(ShoutAdapter(), api_key="tok", base_url=server.base_url).stream_chat(
        [{"role": "user", "content": "hi"}], level=11)
    chunks = list(stream)
    assert [c.content for c in chunks] == ["HEL", "LO", ""]
    assert stream.text == "HELLO"
    assert stream.finish_reason == "stop"
    assert stream.usage == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    request = server.requests[0]
    assert request.path == "/shout"
    assert request.json == {"prompt": "hi", "level": 11}
    assert request.headers["x-token"] == "tok"


# -- provider settings belong to the client --------------------------------------------------
@pytest.mark.parametrize("provider, settings, per_call", [
    ("bedrock", {"region": "us-west-2"}, {"region": "eu-west-1"}),
    ("vertex", {"api_key": None, "project": "my-proj", "location": "us-central1", "access_token": "t"}, {"project": "q"}),
    ("azure_openai", {"api_version": "2024-10-21"}, {"api_version": "2025-01-01"}),
])
def test_a_provider_setting_given_to_one_request_says_to_pass_it_to_the_client(server, client, provider, settings,
                                                                               per_call):
    made = client(provider, **settings)
    (name,) = per_call
    with pytest.raises(TypeError, match=rf"'{name}' is an argument of the client.*Client\('{provider}', {name}=\.\.\.\)"):
        made.stream_chat(MESSAGES, model="m", **per_call)
    assert server.requests == []


def test_another_providers_setting_names_that_provider_not_a_lookalike_option(server, client):
    with pytest.raises(TypeError, match=r"'region' is a setting of provider 'bedrock', not an option of 'openai'") as caught:
        client("openai").stream_chat(MESSAGES, model="gpt-4o-mini", region="eu-west-1")
    assert "Did you mean" not in str(caught.value)
    assert server.requests == []


def test_a_custom_adapters_setting_given_to_one_request_says_to_pass_it_to_the_client(server):
    class Regional(Adapter):
        name = "regional"
        requires_api_key = False
        client_settings = ("zone",)

        def apply_settings(self, zone=None):
            self.zone = zone

        def build_request(self, messages, options, *, base_url, api_key):  # pragma: no cover - never reached
            raise AssertionError("built a request with a client setting in it")

    made = streamcoord.Client(Regional(), base_url=server.base_url, zone="a")
    with pytest.raises(TypeError, match=r"'zone' is an argument of the client.*Client\('regional', zone=\.\.\.\)"):
        made.stream_chat(MESSAGES, zone="b")


def test_module_level_stream_chat_takes_provider_settings_for_its_client(server):
    from tests.support.eventstream import bedrock_event

    frames = (bedrock_event("contentBlockDelta", {"delta": {"text": "Hi"}, "contentBlockIndex": 0}),
              bedrock_event("messageStop", {"stopReason": "end_turn"}))
    server.enqueue(Response(parts=frames, content_type="application/vnd.amazon.eventstream"))
    stream = streamcoord.stream_chat("bedrock", MESSAGES, api_key=API_KEY, base_url=server.base_url,
                                     region="us-west-2", model="m")
    assert "".join(c.content for c in stream) == "Hi" and stream.finish_reason == "stop"
