"""The Ollama adapter, pure: request shape, OLLAMA_HOST, NDJSON line parsing, errors."""

from __future__ import annotations

import json

import pytest

import adapters
from adapters.base import CONTINUE_INSTRUCTION
from adapters.ollama import OllamaAdapter, OllamaParser, ollama_host
from streamcoord._decoders import ServerSentEvent
from streamcoord.errors import APIError, ConnectionLost, ProtocolError, ServerError

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def build(messages=MESSAGES, api_key=None, **options):
    options.setdefault("model", "llama3")
    return OllamaAdapter().build_request(messages, options, base_url="http://localhost:11434", api_key=api_key)


def line(obj):
    return ServerSentEvent(obj if isinstance(obj, str) else json.dumps(obj))


def test_registered_with_ndjson_and_no_key_needed(monkeypatch):
    adapter = adapters.get("ollama")
    assert isinstance(adapter, OllamaAdapter)
    assert adapter.wire_format == "ndjson"
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    assert adapter.resolve_api_key(None) is None


def test_request_shape():
    request = build(max_tokens=50, temperature=0.3, top_p=0.8, stop=["\n\n"], keep_alive="5m", think=True)
    assert request.url == "http://localhost:11434/api/chat"
    assert "Authorization" not in request.headers
    body = request.json
    assert body["model"] == "llama3"
    assert body["stream"] is True
    assert body["messages"] == MESSAGES  # system stays a message: Ollama takes it as is
    assert body["options"] == {"num_predict": 50, "temperature": 0.3, "top_p": 0.8, "stop": ["\n\n"]}
    assert body["keep_alive"] == "5m" and body["think"] is True
    assert "options" not in build().json


def test_options_object_is_merged_and_tools_pass_through():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = build(options={"num_ctx": 8192, "temperature": 1.0}, temperature=0.2, tools=tools).json
    assert body["options"] == {"num_ctx": 8192, "temperature": 0.2}
    assert body["tools"] == tools


def test_tool_call_arguments_in_history_become_objects():
    messages = [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}]
    assert build(messages).json["messages"][0]["tool_calls"] == [{"function": {"name": "f", "arguments": {"a": 1}}}]


def test_an_explicit_key_is_sent_as_bearer_for_a_proxy():
    assert build(api_key="proxy-key").headers["Authorization"] == "Bearer proxy-key"


def test_unknown_option_and_missing_model():
    with pytest.raises(TypeError, match="num_predicts"):
        build(num_predicts=3)
    with pytest.raises(ValueError, match="model"):
        OllamaAdapter().build_request(MESSAGES, {}, base_url="http://x", api_key=None)


@pytest.mark.parametrize("value,url", [
    ("localhost:11434", "http://localhost:11434"),
    ("10.0.0.5:8080", "http://10.0.0.5:8080"),
    ("gpu-box", "http://gpu-box:11434"),
    (":9999", "http://localhost:9999"),
    ("[::1]:11434", "http://[::1]:11434"),
    ("https://ollama.example.com/", "https://ollama.example.com"),
    ("http://127.0.0.1:11434", "http://127.0.0.1:11434"),
])
def test_ollama_host_forms(value, url):
    assert ollama_host(value) == url


def test_base_url_precedence(monkeypatch):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert OllamaAdapter().resolve_base_url(None) == "http://localhost:11434"
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:1234")
    assert OllamaAdapter().resolve_base_url(None) == "http://gpu-box:1234"
    assert OllamaAdapter().resolve_base_url("http://other:1/") == "http://other:1"


def test_chat_lines_and_final_line():
    parser = OllamaParser()
    chunk = parser.parse(line({"model": "llama3", "message": {"role": "assistant", "content": "Hi"}, "done": False}))
    assert (chunk.content, chunk.model, chunk.index, chunk.finish_reason) == ("Hi", "llama3", 0, None)
    final = parser.parse(line({"model": "llama3", "message": {"role": "assistant", "content": ""}, "done": True,
                               "done_reason": "stop", "prompt_eval_count": 17, "eval_count": 50,
                               "total_duration": 9, "eval_duration": 5, "context": [1, 2]}))
    assert final.finish_reason == "stop"
    assert final.metadata["raw_finish_reason"] == "stop"
    assert final.usage == {"prompt_tokens": 17, "completion_tokens": 50, "total_tokens": 67}
    assert final.metadata["raw_usage"] == {"prompt_eval_count": 17, "eval_count": 50, "total_duration": 9,
                                           "eval_duration": 5}
    assert parser.done
    parser.finish()


@pytest.mark.parametrize("raw,normalized", [("stop", "stop"), ("length", "length"), ("load", "stop"),
                                            ("unload", "stop"), (None, "stop")])
def test_done_reasons_are_normalized(raw, normalized):
    obj = {"message": {"content": ""}, "done": True}
    if raw is not None:
        obj["done_reason"] = raw
    chunk = OllamaParser().parse(line(obj))
    assert chunk.finish_reason == normalized
    assert chunk.metadata["raw_finish_reason"] == raw


def test_thinking_and_tool_calls():
    parser = OllamaParser()
    think = parser.parse(line({"message": {"content": "", "thinking": "Hmm"}, "done": False}))
    assert think.content == "" and think.metadata == {"reasoning": "Hmm"}
    calls = parser.parse(line({"message": {"content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
        {"id": "call_2", "function": {"index": 1, "name": "get_time", "arguments": {}}}]}, "done": False}))
    first, second = calls.tool_calls
    assert first == {"id": None, "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    assert "index" not in first  # complete calls: the accumulator numbers them
    assert second["id"] == "call_2" and second["function"]["arguments"] == "{}"
    final = parser.parse(line({"message": {"content": ""}, "done": True, "done_reason": "stop"}))
    assert final.finish_reason == "tool_calls"


def test_generate_lines_with_response():
    parser = OllamaParser()
    chunk = parser.parse(line({"model": "gemma3:1b", "response": "Okay", "done": False}))
    assert chunk.content == "Okay"
    final = parser.parse(line({"model": "gemma3:1b", "response": "", "done": True, "done_reason": "stop",
                               "prompt_eval_count": 3, "eval_count": 4}))
    assert final.finish_reason == "stop" and final.usage["total_tokens"] == 7


@pytest.mark.parametrize("message,cls,status", [
    ('model "nope" not found, try pulling it first', APIError, 404),
    ("an error was encountered while running the model: unexpected EOF", ServerError, 500),
])
def test_error_lines_are_classified(message, cls, status):
    with pytest.raises(APIError) as info:
        OllamaParser().parse(line({"error": message}))
    assert type(info.value) is cls
    assert info.value.status == status
    assert info.value.body == {"error": message}
    assert info.value.provider == "ollama"


def test_bad_lines_and_truncation():
    with pytest.raises(ProtocolError):
        OllamaParser().parse(line("{not json"))
    parser = OllamaParser()
    parser.parse(line({"message": {"content": "partial"}, "done": False}))
    with pytest.raises(ConnectionLost):
        parser.finish()


def test_continuation_is_assistant_turn_then_instruction():
    request = build(max_tokens=10)
    cont = OllamaAdapter().build_continuation(request, "Once upon")
    assert cont.json["messages"] == MESSAGES + [{"role": "assistant", "content": "Once upon"},
                                                {"role": "user", "content": CONTINUE_INSTRUCTION}]
    assert cont.json["options"] == request.json["options"]
    assert request.json["messages"] == MESSAGES
