"""OpenAI Responses API: the same event streams read by streamcoord and by openai-python's
own accumulator (``client.responses.stream(...).get_final_response()``) must give the same
text, function calls, finish and usage."""

from __future__ import annotations

import json

import pytest

from tests.support.fakeserver import FakeProvider
from tests.support.responses_wire import ResponsesStream

openai = pytest.importorskip("openai")

import streamcoord  # noqa: E402

MESSAGES = [{"role": "user", "content": "Hi"}]


def streams():
    yield "text", ResponsesStream("resp_t").text(["Hel", "lo, ", "wör", "ld 😄"]).completed(9, 4)
    yield "reasoning_and_calls", (
        ResponsesStream("resp_c").reasoning(["Think", "ing."]).text(["Let me check."])
        .function_call("get_weather", ['{"city":', ' "Paris", "u', 'nit": "C"}'], "call_1", "fc_1")
        .function_call("get_time", ["{}"], "call_2", "fc_2").completed(20, 11))
    yield "incomplete", ResponsesStream("resp_i").text(["Long ", "answ"]).incomplete("max_output_tokens")


@pytest.mark.parametrize("name, wire", list(streams()), ids=[n for n, _ in streams()])
def test_streamcoord_reads_what_the_official_sdk_accumulates(name, wire):
    with FakeProvider() as server:
        server.enqueue(wire.response(), wire.response())
        sdk = openai.OpenAI(api_key="sk-test-differential", base_url=server.base_url + "/v1", max_retries=0)
        with sdk.responses.stream(model="m", input="Hi") as events:
            seen = list(events)
        final = seen[-1].response  # the terminal event's response, as the SDK parsed it
        sdk_text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
        ours = streamcoord.Client("openai_responses", api_key="sk-test-differential",
                                  base_url=server.base_url + "/v1").stream_chat(MESSAGES, model="m")
        list(ours)
    assert ours.text == sdk_text
    if final.status == "completed":
        assert sdk_text == final.output_text
    calls = [(item.call_id, item.name, json.loads(item.arguments)) for item in final.output
             if item.type == "function_call"]
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in ours.tool_calls] == calls
    if final.status == "completed":
        assert ours.finish_reason == ("tool_calls" if calls else "stop")
        assert ours.usage == {"prompt_tokens": final.usage.input_tokens, "completion_tokens": final.usage.output_tokens,
                              "total_tokens": final.usage.total_tokens}
    else:
        assert (final.status, final.incomplete_details.reason, ours.finish_reason) == (
            "incomplete", "max_output_tokens", "length")
