"""The Mistral adapter, pure: request shape, OpenAI-like parsing with Mistral's quirks."""

from __future__ import annotations

import json

import pytest

import adapters
from adapters.mistral import MistralAdapter, MistralParser
from streamcoord._chunk import ToolCallAccumulator
from streamcoord._decoders import ServerSentEvent
from streamcoord.errors import APIError, ConnectionLost, RateLimitError

BASE = "https://api.mistral.ai/v1"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def build(messages=MESSAGES, **options):
    options.setdefault("model", "mistral-small-latest")
    return MistralAdapter().build_request(messages, options, base_url=BASE, api_key="mistral-key")


def ev(delta, finish=None, **extra):
    obj = {"id": "cmpl-1", "object": "chat.completion.chunk", "model": "magistral-medium-latest",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return ServerSentEvent(json.dumps(obj))


def test_registered_under_its_name(monkeypatch):
    assert isinstance(adapters.get("mistral"), MistralAdapter)
    monkeypatch.setenv("MISTRAL_API_KEY", "env-key")
    assert MistralAdapter().resolve_api_key(None) == "env-key"


def test_request_shape():
    request = build(max_tokens=20, temperature=0.2, seed=7, safe_prompt=True)
    assert request.url == "https://api.mistral.ai/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer mistral-key"
    assert "mistral-key" not in repr(request)
    body = request.json
    assert body["stream"] is True
    assert body["messages"] == MESSAGES
    assert body["max_tokens"] == 20 and "max_completion_tokens" not in body
    assert "stream_options" not in body
    assert body["random_seed"] == 7 and "seed" not in body
    assert body["safe_prompt"] is True and body["temperature"] == 0.2


def test_unknown_option_and_missing_model():
    with pytest.raises(TypeError, match="stream_options"):
        build(stream_options={"include_usage": True})
    with pytest.raises(ValueError, match="model"):
        MistralAdapter().build_request(MESSAGES, {}, base_url=BASE, api_key="k")


def test_usage_rides_on_the_finish_chunk_and_padding_is_ignored():
    parser = MistralParser()
    assert parser.parse(ev({"role": "assistant", "content": ""})) is None
    chunk = parser.parse(ev({"content": "France"}, p="abcdefghijkl"))
    assert chunk.content == "France" and "p" not in chunk.metadata
    final = parser.parse(ev({"content": ""}, "stop", usage={"prompt_tokens": 26, "total_tokens": 30,
                                                           "completion_tokens": 4}))
    assert final.finish_reason == "stop" and final.metadata["raw_finish_reason"] == "stop"
    assert final.usage == {"prompt_tokens": 26, "completion_tokens": 4, "total_tokens": 30}
    assert parser.done


@pytest.mark.parametrize("raw,normalized", [("stop", "stop"), ("length", "length"), ("model_length", "length"),
                                            ("tool_calls", "tool_calls"), ("error", "error")])
def test_finish_reasons_are_normalized(raw, normalized):
    chunk = MistralParser().parse(ev({"content": ""}, raw))
    assert chunk.finish_reason == normalized and chunk.metadata["raw_finish_reason"] == raw


def test_typed_content_parts_split_into_text_and_reasoning():
    parser = MistralParser()
    thinking = parser.parse(ev({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "Okay"}]}]}))
    assert thinking.content == ""
    assert thinking.metadata == {"reasoning": "Okay"}
    assert thinking.raw["choices"][0]["delta"]["content"][0]["type"] == "thinking"  # raw is the original
    mixed = parser.parse(ev({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "so"}]},
                                         {"type": "text", "text": "Look"}]}))
    assert mixed.content == "Look" and mixed.metadata["reasoning"] == "so"
    assert [thinking.index, mixed.index] == [0, 1]


def test_a_complete_tool_call_without_index():
    call = {"id": "EscTeQY62", "function": {"name": "get_weather", "arguments": '{"city": "SF"}'}}
    chunk = MistralParser().parse(ev({"content": None, "tool_calls": [call]}, "tool_calls",
                                     usage={"prompt_tokens": 96, "total_tokens": 119, "completion_tokens": 23}))
    assert chunk.finish_reason == "tool_calls"
    assert chunk.tool_calls == [dict(call, type="function")]
    assert "index" not in chunk.tool_calls[0]
    acc = ToolCallAccumulator()
    acc.add(chunk.tool_calls)
    assert acc.result()[0]["index"] == 0 and acc.result()[0]["function"]["arguments"] == '{"city": "SF"}'
    assert chunk.raw["choices"][0]["delta"]["tool_calls"][0] == call  # the event itself is not altered


def test_error_events():
    body = {"object": "error", "message": "Rate limit exceeded", "type": "rate_limit_error", "code": "1300"}
    with pytest.raises(RateLimitError) as info:
        MistralParser().parse(ServerSentEvent(json.dumps(body)))
    assert info.value.status == 429 and info.value.body == body and info.value.provider == "mistral"
    openai_style = {"error": {"message": "boom", "type": "internal_error"}}
    with pytest.raises(APIError) as info:
        MistralParser().parse(ServerSentEvent(json.dumps(openai_style)))
    assert info.value.status == 500


def test_truncated_stream_is_not_complete():
    parser = MistralParser()
    parser.parse(ev({"content": "half"}))
    with pytest.raises(ConnectionLost):
        parser.finish()


def test_continuation_is_a_native_assistant_prefix():
    request = build(max_tokens=100)
    cont = MistralAdapter().build_continuation(request, "The capital is ")
    assert cont.json["messages"] == MESSAGES + [{"role": "assistant", "content": "The capital is ", "prefix": True}]
    assert cont.url == request.url and cont.json["max_tokens"] == 100
    assert request.json["messages"] == MESSAGES


def test_continuation_extends_a_prefix_of_the_caller():
    request = build(MESSAGES + [{"role": "assistant", "content": "```python\n", "prefix": True}])
    cont = MistralAdapter().build_continuation(request, "print(1)")
    assert cont.json["messages"][-1] == {"role": "assistant", "content": "```python\nprint(1)", "prefix": True}
    assert len(cont.json["messages"]) == 3
