"""The Anthropic adapter, pure: request shape, event parsing, errors, continuation."""

from __future__ import annotations

import dataclasses
import json

import pytest

import adapters
from adapters.anthropic import DEFAULT_MAX_TOKENS, AnthropicAdapter, AnthropicParser
from streamcoord._decoders import ServerSentEvent
from streamcoord.errors import APIError, AuthenticationError, ProtocolError, RateLimitError, ServerError

BASE = "https://api.anthropic.com"
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "system", "content": "Answer in French."},
    {"role": "user", "content": "How are you?"},
]


def build(messages=MESSAGES, **options):
    options.setdefault("model", "claude-sonnet-4-5")
    return AnthropicAdapter().build_request(messages, options, base_url=BASE, api_key="sk-ant-test")


def ev(obj, event=None):
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return ServerSentEvent(data, event or (obj.get("type") if isinstance(obj, dict) else "message"))


def start(parser, usage=None):
    usage = usage or {"input_tokens": 20, "cache_read_input_tokens": 3, "output_tokens": 1, "service_tier": "standard"}
    assert parser.parse(ev({"type": "message_start", "message": {
        "id": "msg_1", "model": "claude-x", "usage": usage}})) is None


def test_registered_under_its_name():
    assert isinstance(adapters.get("anthropic"), AnthropicAdapter)


def test_request_url_headers_and_body():
    request = build(max_tokens=100, temperature=0.5, top_k=5)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.method == "POST"
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in {k.lower() for k in request.headers}
    body = request.json
    assert body["model"] == "claude-sonnet-4-5"
    assert body["stream"] is True
    assert body["max_tokens"] == 100
    assert body["temperature"] == 0.5 and body["top_k"] == 5
    assert "sk-ant-test" not in repr(request)


def test_system_messages_are_joined_into_the_top_level_field():
    body = build().json
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0] == {"role": "user", "content": "Hi"}


def test_system_with_content_blocks_becomes_a_block_list():
    blocks = [{"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}]
    body = build([{"role": "system", "content": "A"}, {"role": "system", "content": blocks},
                  {"role": "user", "content": "Q"}]).json
    assert body["system"] == [{"type": "text", "text": "A"}] + blocks


def test_no_system_field_without_system_messages():
    assert "system" not in build([{"role": "user", "content": "Q"}]).json


def test_max_tokens_has_a_documented_default():
    assert build().json["max_tokens"] == DEFAULT_MAX_TOKENS == 4096


def test_stop_tools_and_tool_choice_are_mapped():
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                             "parameters": {"type": "object", "properties": {}}}}
    native = {"name": "native", "input_schema": {"type": "object"}}
    body = build(stop="END", tools=[tool, native], tool_choice="required").json
    assert body["stop_sequences"] == ["END"]
    assert body["tools"] == [{"name": "get_weather", "description": "Weather",
                              "input_schema": {"type": "object", "properties": {}}}, native]
    assert body["tool_choice"] == {"type": "any"}
    named = build(tool_choice={"type": "function", "function": {"name": "get_weather"}}).json
    assert named["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_tool_call_history_is_mapped_to_blocks():
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "w", "arguments": '{"city": "Oslo"}'}},
            {"id": "t2", "type": "function", "function": {"name": "w", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "cold"},
        {"role": "tool", "tool_call_id": "t2", "content": "warm"},
    ]
    turns = build(messages).json["messages"]
    assert turns[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "t2", "name": "w", "input": {"city": "Rome"}}]}
    assert turns[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "cold"},
        {"type": "tool_result", "tool_use_id": "t2", "content": "warm"}]}
    assert len(turns) == 3


def test_extra_body_and_headers():
    request = build(extra_body={"container": "c1"}, extra_headers={"anthropic-beta": "x-2025"})
    assert request.json["container"] == "c1"
    assert request.headers["anthropic-beta"] == "x-2025"


def test_unknown_option_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="max_token"):
        build(max_token=5)


def test_missing_model_is_a_value_error():
    with pytest.raises(ValueError, match="model"):
        AnthropicAdapter().build_request(MESSAGES, {}, base_url=BASE, api_key="k")


def test_api_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    assert AnthropicAdapter().resolve_api_key(None) == "from-env"
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        AnthropicAdapter().resolve_api_key(None)
    assert AnthropicAdapter().resolve_base_url(None) == BASE


def test_text_stream_with_ping_and_padded_json():
    parser = AnthropicParser()
    start(parser)
    assert parser.parse(ev('{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}   }',
                           "content_block_start")) is None
    assert parser.parse(ev('{"type": "ping"}', "ping")) is None
    chunk = parser.parse(ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}))
    assert (chunk.content, chunk.model, chunk.id, chunk.index) == ("Hi", "claude-x", "msg_1", 0)
    assert chunk.raw["delta"]["text"] == "Hi"
    assert parser.parse(ev({"type": "content_block_stop", "index": 0})) is None
    final = parser.parse(ev({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                             "usage": {"output_tokens": 7}}))
    assert final.finish_reason == "stop"
    assert final.metadata["raw_finish_reason"] == "end_turn"
    # message_start usage overlaid with the cumulative message_delta usage:
    assert final.metadata["raw_usage"] == {"input_tokens": 20, "cache_read_input_tokens": 3, "output_tokens": 7,
                                           "service_tier": "standard"}
    assert final.usage == {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}
    assert not parser.done
    assert parser.parse(ev({"type": "message_stop"})) is None
    assert parser.done
    parser.finish()  # no ConnectionLost after message_stop


@pytest.mark.parametrize("raw,normalized", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), ("something_new", "stop"),
])
def test_stop_reasons_are_normalized(raw, normalized):
    parser = AnthropicParser()
    start(parser)
    chunk = parser.parse(ev({"type": "message_delta", "delta": {"stop_reason": raw}, "usage": {"output_tokens": 2}}))
    assert chunk.finish_reason == normalized
    assert chunk.metadata["raw_finish_reason"] == raw


def test_thinking_goes_to_reasoning_never_content():
    parser = AnthropicParser()
    start(parser)
    parser.parse(ev({"type": "content_block_start", "index": 0,
                     "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
    chunk = parser.parse(ev({"type": "content_block_delta", "index": 0,
                             "delta": {"type": "thinking_delta", "thinking": "Let me think"}}))
    assert chunk.content == ""
    assert chunk.metadata == {"reasoning": "Let me think"}
    sig = parser.parse(ev({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "signature_delta", "signature": "c2ln"}}))
    assert sig.content == "" and "reasoning" not in sig.metadata
    assert sig.metadata["thinking_signature"] == "c2ln"


def test_tool_use_blocks_become_indexed_tool_call_deltas():
    parser = AnthropicParser()
    start(parser)
    first = parser.parse(ev({"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}))
    assert first.tool_calls == [{"index": 1, "id": "toolu_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": ""}}]
    assert parser.parse(ev({"type": "content_block_delta", "index": 1,
                            "delta": {"type": "input_json_delta", "partial_json": ""}})) is None
    part = parser.parse(ev({"type": "content_block_delta", "index": 1,
                            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Oslo"}'}}))
    assert part.tool_calls == [{"index": 1, "function": {"arguments": '{"city": "Oslo"}'}}]
    assert parser.parse(ev({"type": "content_block_stop", "index": 1})) is None


def test_tool_without_arguments_gets_an_empty_json_object():
    parser = AnthropicParser()
    start(parser)
    parser.parse(ev({"type": "content_block_start", "index": 0, "content_block": {
        "type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}}))
    stop = parser.parse(ev({"type": "content_block_stop", "index": 0}))
    assert stop.tool_calls == [{"index": 0, "function": {"arguments": "{}"}}]


@pytest.mark.parametrize("error_type,cls,status", [
    ("overloaded_error", ServerError, 529),
    ("rate_limit_error", RateLimitError, 429),
    ("api_error", ServerError, 500),
    ("authentication_error", AuthenticationError, 401),
    ("invalid_request_error", APIError, 400),
    ("brand_new_error", ServerError, 500),
])
def test_error_events_are_classified_by_type(error_type, cls, status):
    body = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
    with pytest.raises(APIError) as info:
        AnthropicParser().parse(ev(body, "error"))
    assert type(info.value) is cls
    assert info.value.status == status
    assert info.value.body == body
    assert info.value.provider == "anthropic"


def test_unknown_events_are_skipped_and_bad_json_is_a_protocol_error():
    parser = AnthropicParser()
    assert parser.parse(ev({"type": "future_event", "x": 1})) is None
    with pytest.raises(ProtocolError):
        parser.parse(ev("{not json", "message_start"))
    with pytest.raises(ProtocolError):
        parser.parse(ev("[1, 2]", "message_start"))


def test_stream_cut_before_message_stop_is_not_complete():
    from streamcoord.errors import ConnectionLost

    parser = AnthropicParser()
    start(parser)
    parser.parse(ev({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}))
    with pytest.raises(ConnectionLost):
        parser.finish()


def test_continuation_prefills_the_stripped_partial_answer():
    request = build(max_tokens=500)
    cont = AnthropicAdapter().build_continuation(request, "The answer is \n ")
    assert cont.json["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    assert cont.json["messages"][:-1] == request.json["messages"]
    assert cont.json["system"] == request.json["system"]
    assert cont.url == request.url and cont.headers == request.headers
    assert len(request.json["messages"]) == 3  # the original request is untouched


def test_continuation_extends_a_prefill_of_the_caller():
    request = build([{"role": "user", "content": "JSON please"}, {"role": "assistant", "content": "{"}])
    cont = AnthropicAdapter().build_continuation(request, '"a": 1, ')
    assert cont.json["messages"] == [{"role": "user", "content": "JSON please"},
                                     {"role": "assistant", "content": '{"a": 1,'}]


def test_continuation_with_only_whitespace_adds_no_empty_turn():
    request = build()
    cont = AnthropicAdapter().build_continuation(request, "  \n")
    assert cont.json["messages"] == request.json["messages"]


def test_a_subclass_that_overrides_parse_sees_every_event_of_a_read():
    class Shouting(AnthropicParser):
        def parse(self, event):
            chunk = super().parse(event)
            return None if chunk is None else dataclasses.replace(chunk, content=chunk.content.upper())

    parser, out = Shouting(), []
    start(parser)
    parser.parse_into([ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
                       for t in ("hel", "lo")], out)
    assert [c.content for c in out] == ["HEL", "LO"]


@pytest.mark.parametrize("where", ["the class", "the instance"])
def test_a_parse_patched_on_the_class_or_the_instance_sees_every_event_of_a_read(monkeypatch, where):
    seen = []
    own = AnthropicParser.parse

    def spy(self, event):
        seen.append(event.event)
        return own(self, event)

    parser, out = AnthropicParser(), []
    if where == "the class":  # as mock.patch.object(AnthropicParser, "parse", ...) does
        monkeypatch.setattr(AnthropicParser, "parse", spy)
    else:
        parser.parse = spy.__get__(parser)
    start(parser)
    seen.clear()
    parser.parse_into([ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
                       for t in ("hel", "lo")], out)
    assert seen == ["content_block_delta"] * 2 and [c.content for c in out] == ["hel", "lo"]
