"""The Gemini adapter, pure: request shape, response parsing, errors, continuation."""

from __future__ import annotations

import json

import pytest

import adapters
from adapters.base import CONTINUE_INSTRUCTION
from adapters.gemini import GeminiAdapter, GeminiParser
from streamcoord._decoders import ServerSentEvent
from streamcoord.errors import APIError, ConnectionLost, ProtocolError, RateLimitError, ServerError

BASE = "https://generativelanguage.googleapis.com/v1beta"
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Capital of France?"},
]


def build(messages=MESSAGES, **options):
    options.setdefault("model", "gemini-2.5-flash")
    return GeminiAdapter().build_request(messages, options, base_url=BASE, api_key="AIza-test")


def ev(obj):
    return ServerSentEvent(obj if isinstance(obj, str) else json.dumps(obj))


def response(parts, finish=None, usage=None, **extra):
    cand = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    obj = {"candidates": [cand], "modelVersion": "gemini-2.5-flash", "responseId": "resp-1", **extra}
    if usage:
        obj["usageMetadata"] = usage
    return obj


def test_registered_under_its_name():
    assert isinstance(adapters.get("gemini"), GeminiAdapter)


def test_request_url_key_header_roles_and_system_instruction():
    request = build()
    assert request.url == f"{BASE}/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert request.headers["x-goog-api-key"] == "AIza-test"
    assert "Authorization" not in request.headers
    assert "AIza-test" not in repr(request)
    body = request.json
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello!"}]},
        {"role": "user", "parts": [{"text": "Capital of France?"}]},
    ]
    assert "generationConfig" not in body
    assert "stream" not in body  # streaming is the endpoint, not a body flag


def test_model_with_a_resource_prefix_is_not_doubled():
    assert build(model="models/gemini-2.0-flash").url == f"{BASE}/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    assert build(model="tunedModels/my-tune").url == f"{BASE}/tunedModels/my-tune:streamGenerateContent?alt=sse"


def test_generation_config_mapping():
    body = build(max_tokens=64, temperature=0.1, top_p=0.9, top_k=3, stop="END",
                 thinking_config={"thinkingBudget": 0}).json
    assert body["generationConfig"] == {"maxOutputTokens": 64, "temperature": 0.1, "topP": 0.9, "topK": 3,
                                        "stopSequences": ["END"], "thinkingConfig": {"thinkingBudget": 0}}


def test_openai_style_tools_become_function_declarations():
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    native = {"googleSearch": {}}
    body = build(tools=[tool, native], tool_choice="required").json
    assert body["tools"] == [{"functionDeclarations": [{"name": "get_weather", "description": "Weather",
                                                        "parameters": tool["function"]["parameters"]}]}, native]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    passthrough = [{"functionDeclarations": [{"name": "f"}]}]
    assert build(tools=passthrough).json["tools"] == passthrough


def test_tool_call_history_keeps_signatures_and_names_responses():
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "thought_signature": "sig",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": -3}'},
    ]
    contents = build(messages).json["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "c1"}, "thoughtSignature": "sig"}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp": -3}, "id": "c1"}}]}


def test_unknown_option_and_missing_model():
    with pytest.raises(TypeError, match="topP"):
        build(topP=0.5)
    with pytest.raises(ValueError, match="model"):
        GeminiAdapter().build_request(MESSAGES, {}, base_url=BASE, api_key="k")


def test_api_key_prefers_gemini_then_google(monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "google")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    assert GeminiAdapter().resolve_api_key(None) == "google"
    monkeypatch.setenv("GEMINI_API_KEY", "gemini")
    assert GeminiAdapter().resolve_api_key(None) == "gemini"


def test_text_thoughts_and_usage():
    parser = GeminiParser()
    chunk = parser.parse(ev(response([{"text": "Pondering", "thought": True}, {"text": "Par"}, {"text": "is"}],
                                     usage={"promptTokenCount": 5, "totalTokenCount": 5})))
    assert chunk.content == "Paris"
    assert chunk.metadata["reasoning"] == "Pondering"
    assert (chunk.model, chunk.id, chunk.index) == ("gemini-2.5-flash", "resp-1", 0)
    assert not parser.done
    usage = {"promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 4, "totalTokenCount": 11}
    final = parser.parse(ev(response([{"text": "."}], "STOP", usage)))
    assert final.finish_reason == "stop" and final.metadata["raw_finish_reason"] == "STOP"
    assert final.usage == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    assert final.metadata["raw_usage"] == usage
    assert final.index == 1
    assert parser.done
    parser.finish()


@pytest.mark.parametrize("raw,normalized", [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("IMAGE_SAFETY", "content_filter"), ("MALFORMED_FUNCTION_CALL", "error"), ("OTHER", "error"),
    ("LANGUAGE", "error"), ("SOMETHING_NEW", "error"),
])
def test_finish_reasons_are_normalized(raw, normalized):
    chunk = GeminiParser().parse(ev(response([{"text": ""}], raw)))
    assert chunk.finish_reason == normalized
    assert chunk.metadata["raw_finish_reason"] == raw


def test_function_calls_are_complete_deltas_and_stop_means_tool_calls():
    parser = GeminiParser()
    chunk = parser.parse(ev(response([
        {"functionCall": {"name": "a", "args": {"x": "é"}, "id": "id1"}, "thoughtSignature": "sig"},
        {"functionCall": {"name": "b", "args": {}}}])))
    assert chunk.content == ""
    first, second = chunk.tool_calls
    assert first["index"] == 0 and first["id"] == "id1" and first["type"] == "function"
    assert first["function"]["name"] == "a" and json.loads(first["function"]["arguments"]) == {"x": "é"}
    assert first["thought_signature"] == "sig"
    assert second["index"] == 1 and second["id"] is None and "thought_signature" not in second
    assert second["function"]["arguments"] == "{}"
    final = parser.parse(ev(response([{"text": ""}], "STOP")))
    assert final.finish_reason == "tool_calls" and final.metadata["raw_finish_reason"] == "STOP"


def test_blocked_prompt_is_a_content_filter_finish():
    parser = GeminiParser()
    chunk = parser.parse(ev({"promptFeedback": {"blockReason": "SAFETY"},
                             "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}))
    assert chunk.finish_reason == "content_filter"
    assert chunk.metadata["raw_finish_reason"] == "SAFETY"
    assert chunk.usage == {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4}
    assert parser.done


def test_events_without_anything_are_skipped():
    assert GeminiParser().parse(ev({"candidates": [{"content": {"parts": [{"text": ""}]}}]})) is None


@pytest.mark.parametrize("status,code,cls,http", [
    ("RESOURCE_EXHAUSTED", 429, RateLimitError, 429),
    ("UNAVAILABLE", 503, ServerError, 503),
    ("INTERNAL", 500, ServerError, 500),
    ("INVALID_ARGUMENT", 400, APIError, 400),
    ("NEW_STATUS", 502, ServerError, 502),
])
def test_error_events_are_classified_by_status(status, code, cls, http):
    body = {"error": {"code": code, "message": "boom", "status": status}}
    with pytest.raises(APIError) as info:
        GeminiParser().parse(ev(body))
    assert type(info.value) is cls
    assert info.value.status == http
    assert info.value.body == body
    assert info.value.provider == "gemini"


def test_malformed_events_and_truncation():
    with pytest.raises(ProtocolError):
        GeminiParser().parse(ev("not json"))
    parser = GeminiParser()
    parser.parse(ev(response([{"text": "Hal"}])))
    with pytest.raises(ConnectionLost):
        parser.finish()  # the body ended without a finishReason


def test_continuation_adds_model_turn_and_instruction():
    request = build(max_tokens=100)
    cont = GeminiAdapter().build_continuation(request, "Paris is the ")
    assert cont.json["contents"][:-2] == request.json["contents"]
    assert cont.json["contents"][-2:] == [
        {"role": "model", "parts": [{"text": "Paris is the "}]},
        {"role": "user", "parts": [{"text": CONTINUE_INSTRUCTION}]},
    ]
    assert cont.json["systemInstruction"] == request.json["systemInstruction"]
    assert cont.url == request.url
    assert len(request.json["contents"]) == 3
