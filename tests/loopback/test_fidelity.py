"""Valid streams the official SDKs read correctly, read to the same answer over loopback:
several choices in one event, nulls in usage, server tools, tool calls of OpenAI-compatible
servers, the legacy function_call, and the request options a user of the official SDK
passes. (tests/differential/ compares generated streams with the SDKs themselves.)"""

from __future__ import annotations

import json

import pytest

from streamcoord.errors import APIError
from tests.support.fakeserver import error, sse

MESSAGES = [{"role": "user", "content": "Hi"}]


def oa(choices, **extra):
    return dict({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": choices}, **extra)


def call(index, id=None, name=None, arguments=None):
    function = {k: v for k, v in (("name", name), ("arguments", arguments)) if v is not None}
    out = {"index": index, "function": function}
    if id is not None:
        out.update(id=id, type="function")
    return out


def tool_calls(stream):
    return [(c["index"], c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in stream.tool_calls]


def test_an_event_with_several_choices_keeps_choice_0_and_the_usage(server, client):
    server.enqueue(sse([
        oa([{"index": 0, "delta": {"role": "assistant", "content": ""}}, {"index": 1, "delta": {"role": "assistant"}}]),
        oa([{"index": 1, "delta": {"content": "other"}}, {"index": 0, "delta": {"content": "Hel"}}]),
        oa([{"index": 1, "delta": {}, "finish_reason": "stop"},
            {"index": 0, "delta": {"content": "lo", "tool_calls": [call(0, "call_1", "f", '{"a": 1}')]},
             "finish_reason": "tool_calls"}],
           usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    ], done=True))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o", n=2)
    chunks = list(stream)
    assert stream.text == "Hello"
    assert stream.finish_reason == "tool_calls"
    assert stream.usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert tool_calls(stream) == [(0, "call_1", "f", {"a": 1})]
    assert "".join(c.content for c in chunks if c.metadata.get("choice") == 1) == "other"


def test_two_complete_calls_at_index_0_stay_two_calls(server, client):
    server.enqueue(sse([
        oa([{"index": 0, "delta": {"tool_calls": [call(0, "call_a", "get_time", '{"city": "paris"}')]}}]),
        oa([{"index": 0, "delta": {"tool_calls": [call(0, "call_b", "get_weather", '{"city": "rome"}')]}}]),
        oa([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
    ], done=True))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o")
    list(stream)
    assert tool_calls(stream) == [(0, "call_a", "get_time", {"city": "paris"}), (1, "call_b", "get_weather", {"city": "rome"})]


def test_two_calls_at_index_0_without_ids_stay_two_calls(server, client):
    server.enqueue(sse([
        oa([{"index": 0, "delta": {"tool_calls": [call(0, name="a", arguments='{"x": 1}')]}}]),
        oa([{"index": 0, "delta": {"tool_calls": [call(0, name="b", arguments='{"y"')]}}]),
        oa([{"index": 0, "delta": {"tool_calls": [call(0, arguments=': 2}')]}, "finish_reason": "tool_calls"}]),
    ], done=True))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o")
    list(stream)
    assert tool_calls(stream) == [(0, None, "a", {"x": 1}), (1, None, "b", {"y": 2})]


def test_id_and_name_repeated_in_every_fragment_are_not_doubled(server, client):
    fragments = ['{"q"', ': "wea', 'ther"}']
    server.enqueue(sse([oa([{"index": 0, "delta": {"tool_calls": [call(0, "call_1", "search", f)]}}]) for f in fragments]
                       + [oa([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])], done=True))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o")
    list(stream)
    assert tool_calls(stream) == [(0, "call_1", "search", {"q": "weather"})]


def test_legacy_function_call_is_assembled_as_a_tool_call(server, client):
    server.enqueue(sse([
        oa([{"index": 0, "delta": {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": ""}}}]),
        oa([{"index": 0, "delta": {"function_call": {"arguments": '{"a"'}}}]),
        oa([{"index": 0, "delta": {"function_call": {"arguments": ": 1}"}}}]),
        oa([{"index": 0, "delta": {}, "finish_reason": "function_call"}]),
    ], done=True))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o", functions=[{"name": "f"}])
    list(stream)
    assert stream.finish_reason == "tool_calls"
    assert tool_calls(stream) == [(0, None, "f", {"a": 1})]


def test_mistral_arguments_as_an_object_make_a_call_and_keep_the_text(server, client):
    server.enqueue(sse([
        oa([{"index": 0, "delta": {"role": "assistant", "content": "Looking"}}]),
        oa([{"index": 0, "delta": {"content": " it up", "tool_calls": [
            {"id": "X1", "function": {"name": "get_weather", "arguments": {"city": "Zürich"}}}]},
            "finish_reason": "tool_calls"}], usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
    ], done=True))
    stream = client("mistral").stream_chat(MESSAGES, model="mistral-small-latest")
    list(stream)
    assert stream.text == "Looking it up"
    assert tool_calls(stream) == [(0, "X1", "get_weather", {"city": "Zürich"})]


def an(kind, **fields):
    return (kind, dict({"type": kind}, **fields))


def anthropic_events(blocks, usage):
    events = [an("message_start", message={"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                                           "content": [], "usage": {"input_tokens": 25, "output_tokens": 1}})]
    for i, (block, deltas) in enumerate(blocks):
        events.append(an("content_block_start", index=i, content_block=block))
        events += [an("content_block_delta", index=i, delta=d) for d in deltas]
        events.append(an("content_block_stop", index=i))
    events += [an("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage=usage),
               an("message_stop")]
    return events


def test_anthropic_server_tools_stay_out_of_tool_calls_and_nulls_keep_the_input_count(server, client):
    result = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
              "content": [{"type": "web_search_result", "url": "https://example.com", "title": "Ex"}]}
    citation = {"type": "web_search_result_location", "url": "https://example.com", "cited_text": "x"}
    server.enqueue(sse(anthropic_events([
        ({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
         [{"type": "input_json_delta", "partial_json": '{"query": '}, {"type": "input_json_delta", "partial_json": '"x"}'}]),
        (result, []),
        ({"type": "text", "text": ""}, [{"type": "citations_delta", "citation": citation},
                                        {"type": "text_delta", "text": "Found."}]),
        ({"type": "tool_use", "id": "toolu_1", "name": "save", "input": {}},
         [{"type": "input_json_delta", "partial_json": '{"ok": true}'}]),
    ], usage={"input_tokens": None, "cache_read_input_tokens": None, "output_tokens": 9,
              "server_tool_use": {"web_search_requests": 1}})))
    stream = client("anthropic").stream_chat(MESSAGES, model="claude-x")
    chunks = list(stream)
    assert stream.text == "Found."
    assert tool_calls(stream) == [(0, "toolu_1", "save", {"ok": True})]
    assert stream.usage == {"prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34}
    meta = [c.metadata for c in chunks]
    assert [m["server_tool_use"] for m in meta if "server_tool_use" in m] == [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}}]
    assert [m["server_tool_result"] for m in meta if "server_tool_result" in m] == [result]
    assert [m["citations"] for m in meta if "citations" in m] == [[citation]]


def test_openai_sdk_options_are_accepted_and_stream_options_merged(server, client):
    server.enqueue(sse([oa([{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}])], done=True))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o", stream=True,
                                          stream_options={"include_obfuscation": False}, safety_identifier="u1")
    assert stream.text == "" and list(stream) and stream.text == "ok"
    body = server.requests[0].json
    assert body["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    assert body["stream"] is True and body["safety_identifier"] == "u1"


@pytest.mark.parametrize("option, words", [
    ({"max_retries": 3}, "streamcoord.Client('openai', max_retries=...)"),
    ({"api_key": "sk-x"}, "streamcoord.Client('openai', api_key=...)"),
    ({"openai_api_key": "sk-x"}, "never into the request body"),
    ({"stream": False}, "always streams"),
    ({"temprature": 0.2}, "Did you mean 'temperature'?"),
])
def test_a_wrong_option_says_where_it_belongs(client, option, words):
    with pytest.raises((TypeError, ValueError)) as info:
        client("openai").stream_chat(MESSAGES, model="gpt-4o", **option)
    assert words in str(info.value)
    if "key" in next(iter(option)):
        assert "extra_body" not in str(info.value) and "sk-x" not in str(info.value)


@pytest.mark.parametrize("status, header, requests", [(500, "false", 1), (400, "true", 2), (503, None, 2)])
def test_x_should_retry_decides_before_the_status(server, client, sleeps, status, header, requests):
    headers = {"x-should-retry": header} if header else {}
    server.enqueue(error(status, {"error": {"message": "no", "type": "server_error"}}, headers=headers),
                   sse([oa([{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}])], done=True))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o")
    if requests == 1:
        with pytest.raises(APIError) as info:
            list(stream)
        assert info.value.status == status and info.value.should_retry is False
    else:
        assert "".join(c.content for c in stream) == "ok"
    assert len(server.requests) == requests
