"""The ``openai_responses`` adapter over loopback HTTP: the request as the Responses API
documents it, text, reasoning, tool calls, finish and usage, error events, and the native
resume of a background response (the GET with ``starting_after``, no rewind) with its
fallback to the recovery strategy when the server refuses it."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

import streamcoord
from adapters.base import CONTINUE_INSTRUCTION
from recovery_store import DiskStore, MemoryStore
from streamcoord.errors import AuthenticationError, RateLimitError, RecoveryFailed, ServerError
from tests.conftest import API_KEY
from tests.loopback.test_resume_processes import children as children  # noqa: F401 - the fixture
from tests.loopback.test_resume_processes import read_json_lines, spawn
from tests.support.fakeserver import Gate, Response, Stall, error
from tests.support.responses_wire import ResponsesStream

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
PIECES = ["Hel", "lo, ", "wör", "ld ", "😄"]
TEXT = "".join(PIECES)


@pytest.fixture
def make(server, client):
    def make_client(**kwargs):
        kwargs.setdefault("base_url", server.base_url + "/v1")
        return client("openai_responses", **kwargs)
    return make_client


def test_text_answer_and_the_request_the_api_documents(server, make):
    server.enqueue(ResponsesStream("resp_1").text(PIECES).completed(12, 7).response())
    stream = make().stream_chat(MESSAGES, model="gpt-5-mini", max_tokens=64, temperature=0.2,
                                reasoning={"effort": "low"}, store=False)
    chunks = list(stream)
    assert stream.text == TEXT
    assert stream.finish_reason == "stop"
    assert stream.usage == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    assert all(isinstance(c.metadata["sequence_number"], int) for c in chunks)
    assert chunks[-1].id == "resp_1" and chunks[-1].model == "gpt-5-mini"
    request = server.requests[0]
    assert (request.method, request.path) == ("POST", "/v1/responses")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.json == {
        "model": "gpt-5-mini", "stream": True, "instructions": "Be brief.",
        "input": [{"role": "user", "content": "Say hello"}],
        "max_output_tokens": 64, "temperature": 0.2, "reasoning": {"effort": "low"}, "store": False,
    }


def test_reasoning_and_tool_calls_with_parsed_arguments(server, make):
    wire = (ResponsesStream("resp_2").reasoning(["Look ", "it up."])
            .function_call("get_weather", ['{"city":', ' "Paris"}'], "call_a", "fc_1")
            .function_call("get_time", ['{"tz": "CET"}'], "call_b", "fc_2").completed())
    server.enqueue(wire.response())
    stream = make().stream_chat(MESSAGES, model="gpt-5-mini",
                                tools=[{"type": "function", "name": "get_weather", "parameters": {}}])
    chunks = list(stream)
    assert "".join(c.metadata.get("reasoning", "") for c in chunks) == "Look it up."
    assert stream.text == ""
    assert stream.finish_reason == "tool_calls"
    calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in stream.tool_calls]
    assert calls == [("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_time", {"tz": "CET"})]


def test_tool_results_and_assistant_calls_become_responses_items(server, make):
    server.enqueue(ResponsesStream().text(["ok"]).completed().response())
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
    ]
    list(make().stream_chat(messages, model="m"))
    assert server.requests[0].json["input"] == [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "call_a", "name": "w", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
    ]


def test_the_done_events_complete_what_the_deltas_left_out(server, make):
    # The .done events carry the final text and arguments: a call whose arguments came in
    # output_item.done alone, a call announced only there, text some of whose deltas never came.
    wire = ResponsesStream("resp_done")
    empty_call = {"id": "fc_1", "type": "function_call", "status": "in_progress", "arguments": "",
                  "call_id": "call_a", "name": "get_weather"}
    unannounced = {"id": "fc_2", "type": "function_call", "status": "completed", "arguments": '{"tz": "CET"}',
                   "call_id": "call_b", "name": "get_time"}
    done_call = dict(empty_call, status="completed", arguments='{"city": "Paris"}')
    wire.add("response.output_item.added", output_index=0, item=empty_call)
    wire.add("response.output_item.done", output_index=0, item=done_call)
    wire.add("response.output_item.done", output_index=1, item=unannounced)
    wire.output = [done_call, unannounced]
    wire.text(["Hel", "lo"])  # output_index 2
    for event in wire.events:  # the final text, longer than its deltas
        if event["type"] == "response.output_text.done":
            event["text"] = "Hello, wörld"
    server.enqueue(wire.completed().response())
    stream = make().stream_chat(MESSAGES, model="gpt-5-mini")
    list(stream)
    assert stream.text == "Hello, wörld"
    assert stream.finish_reason == "tool_calls"
    calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in stream.tool_calls]
    assert calls == [("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_time", {"tz": "CET"})]


def test_the_done_events_repeat_nothing_the_deltas_gave(server, make):
    wire = (ResponsesStream("resp_full").function_call("get_weather", ['{"city":', ' "Paris"}'], "call_a", "fc_1")
            .text(PIECES).completed())
    server.enqueue(wire.response())
    stream = make().stream_chat(MESSAGES, model="gpt-5-mini")
    list(stream)
    assert stream.text == TEXT
    assert [json.loads(c["function"]["arguments"]) for c in stream.tool_calls] == [{"city": "Paris"}]


@pytest.mark.parametrize("reason, finish", [("max_output_tokens", "length"), ("content_filter", "content_filter")])
def test_incomplete_response_finishes_with_the_normalized_reason(server, make, reason, finish):
    server.enqueue(ResponsesStream().text(["Part"]).incomplete(reason).response())
    stream = make().stream_chat(MESSAGES, model="m")
    list(stream)
    assert (stream.text, stream.finish_reason) == ("Part", finish)


def test_refusal_deltas_are_metadata_not_content(server, make):
    wire = ResponsesStream()
    wire.add("response.refusal.delta", item_id="msg_1", output_index=0, content_index=0, delta="I can't help.")
    server.enqueue(wire.completed().response())
    stream = make().stream_chat(MESSAGES, model="m")
    chunks = list(stream)
    assert stream.text == "" and "".join(c.metadata.get("refusal", "") for c in chunks) == "I can't help."


@pytest.mark.parametrize("kind, code, cls, status", [
    ("failed", "server_error", ServerError, 500),
    ("failed", "rate_limit_exceeded", RateLimitError, 429),
    ("error", "invalid_api_key", AuthenticationError, 401),
])
def test_failed_and_error_events_raise_by_code_and_reach_on_error(server, make, kind, code, cls, status):
    wire = ResponsesStream().text(["Part"])
    getattr(wire, kind)(code, "it went wrong")
    server.enqueue(wire.response())
    reported = []
    stream = make().stream_chat(MESSAGES, model="m", on_error=lambda s, b: reported.append((s, b)))
    with pytest.raises(cls, match="it went wrong") as info:
        list(stream)
    assert info.value.status == status and stream.text == "Part"
    assert reported and reported[0][0] == status


def test_stream_without_terminal_event_is_connection_lost(server, make):
    wire = ResponsesStream().text(PIECES)  # no response.completed: the body just ends
    server.enqueue(wire.response())
    with pytest.raises(streamcoord.ConnectionLost):
        list(make().stream_chat(MESSAGES, model="m"))


def test_throttled_request_is_retried_after_retry_after(server, make, sleeps):
    server.enqueue(error(429, {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
                         headers={"Retry-After": "3"}),
                   ResponsesStream().text(PIECES).completed().response())
    stream = make().stream_chat(MESSAGES, model="m")
    list(stream)
    assert stream.text == TEXT and sleeps == [3.0]


# -- native resume -------------------------------------------------------------------------
def background_stream():
    return ResponsesStream("resp_bg", background=True).text(PIECES).completed()


def test_background_break_resumes_natively_with_starting_after_and_no_rewind(server, make):
    wire = background_stream()
    broken_at = wire.seq_of("response.output_text.delta", 2)  # three pieces delivered
    server.enqueue(wire.response(drop_after=broken_at), wire.response(start_after=broken_at))
    stream = make().stream_chat(MESSAGES, model="m", background=True, stream_recovery=True,
                                recovery={"strategy": "paragraph"})
    chunks = list(stream)
    assert stream.text == TEXT and "".join(c.content for c in chunks) == TEXT
    assert not [c for c in chunks if "recovery" in c.metadata]  # nothing to rewind
    assert stream.finish_reason == "stop"
    first, second = server.requests
    assert first.json["background"] is True
    assert (second.method, second.path, second.body) == ("GET", "/v1/responses/resp_bg", b"")
    assert second.query == {"stream": "true", "starting_after": str(broken_at)}
    assert second.headers["authorization"] == f"Bearer {API_KEY}"
    assert stream.metrics.recoveries == 1


def test_tool_call_broken_mid_arguments_is_assembled_after_native_resume(server, make):
    wire = ResponsesStream("resp_bg", background=True).function_call(
        "get_weather", ['{"ci', 'ty": "Pa', 'ris"}'], "call_a", "fc_1").completed()
    broken_at = wire.seq_of("response.function_call_arguments.delta", 1)
    server.enqueue(wire.response(drop_after=broken_at), wire.response(start_after=broken_at))
    stream = make().stream_chat(MESSAGES, model="m", background=True, stream_recovery=True)
    list(stream)
    assert [(c["id"], json.loads(c["function"]["arguments"])) for c in stream.tool_calls] == [
        ("call_a", {"city": "Paris"})]
    assert stream.finish_reason == "tool_calls"


def test_native_resume_refused_with_404_falls_back_to_the_strategy(server, make):
    wire = background_stream()
    broken_at = wire.seq_of("response.output_text.delta", 2)
    kept = "".join(PIECES[:3])  # "exact" keeps everything delivered
    server.enqueue(wire.response(drop_after=broken_at),
                   error(404, {"error": {"message": "Response not found", "type": "invalid_request_error"}}),
                   ResponsesStream("resp_c").text(["ld ", "😄"]).completed().response())
    stream = make().stream_chat(MESSAGES, model="m", background=True, stream_recovery=True,
                                recovery={"strategy": "exact"})
    list(stream)
    assert stream.text == TEXT
    assert [r.method for r in server.requests] == ["POST", "GET", "POST"]
    continuation = server.requests[2].json
    assert continuation["input"][-2:] == [{"role": "assistant", "content": kept},
                                          {"role": "user", "content": CONTINUE_INSTRUCTION}]
    assert stream.metrics.recoveries == 1


def test_without_background_a_break_is_continued_by_the_strategy(server, make):
    wire = ResponsesStream("resp_fg").text(PIECES).completed()
    broken_at = wire.seq_of("response.output_text.delta", 2)
    server.enqueue(wire.response(drop_after=broken_at), ResponsesStream("resp_2").text(["ld ", "😄"]).completed().response())
    stream = make().stream_chat(MESSAGES, model="m", stream_recovery=True, recovery={"strategy": "exact"})
    list(stream)
    assert stream.text == TEXT and [r.method for r in server.requests] == ["POST", "POST"]


def test_native_resumes_are_bounded_by_max_retries(server, make):
    wire = background_stream()
    first = wire.seq_of("response.output_text.delta", 0)
    server.enqueue(wire.response(drop_after=first), wire.response(start_after=first, drop_after=first + 1))
    stream = make(recovery_store=MemoryStore()).stream_chat(
        MESSAGES, model="m", background=True, stream_recovery=True, recovery={"max_retries": 1})
    with pytest.raises(RecoveryFailed) as info:
        list(stream)
    assert info.value.partial_text == "".join(PIECES[:2])


# Process A: a background response with recovery on, printing each chunk's content.
BACKGROUND_SCRIPT = """
import json, sys
import streamcoord
from recovery_store import DiskStore

where, base_url, stream_id = sys.argv[1:4]
client = streamcoord.Client("openai_responses", api_key="sk-test-responses", base_url=base_url,
                            recovery_store=DiskStore(where), lease_ttl=1)  # the resumer follows it until it ends
stream = client.stream_chat([{"role": "user", "content": "Say hello"}], model="m", background=True,
                            stream_recovery=True, stream_id=stream_id, timeout=60)
for chunk in stream:
    if chunk.content:
        print(json.dumps([chunk.content, chunk.metadata["sequence_number"]]), flush=True)
"""


def test_killed_process_is_resumed_natively_from_the_last_event_it_showed(server, make, tmp_path, children):
    # Each delta in a read of its own (the next is sent once the child has printed the
    # last): the stored resume state must follow every one, not stop at the first.
    wire = background_stream()
    shown_one = [threading.Event() for _ in range(2)]
    server.enqueue(dataclasses.replace(wire.response(), parts=_gated_deltas(wire.response().parts, shown_one, 3)))
    proc = spawn(BACKGROUND_SCRIPT, tmp_path, server.base_url + "/v1", "bg-stream")
    children.append(proc)
    lines = []
    for gate in shown_one + [None]:
        lines += read_json_lines(proc, 1, keep_reading=True)
        if gate is not None:
            gate.set()
    shown, last_seen = "".join(content for content, _ in lines), lines[-1][1]
    assert shown == "".join(PIECES[:3])
    proc.kill()
    proc.wait(30)
    store = DiskStore(str(tmp_path))
    assert store.load("bg-stream").meta["resume_state"]["response_id"] == "resp_bg"
    server.enqueue(wire.response(start_after=last_seen))
    stream = make(api_key="sk-test-responses", recovery_store=store).resume("bg-stream", offset=len(shown))
    chunks = list(stream)
    assert stream.text == TEXT
    assert "".join(c.content for c in chunks) == "".join(PIECES[3:]), "no rewind, nothing replayed"
    assert not [c for c in chunks if "recovery" in c.metadata]
    resumed = server.requests[-1]
    assert (resumed.method, resumed.path) == ("GET", "/v1/responses/resp_bg")
    assert resumed.query["starting_after"] == str(last_seen)
    assert [r.method for r in server.requests] == ["POST", "GET"]  # nothing generated twice


def _gated_deltas(parts, gates, n):
    """The parts with ``gates[i]`` awaited after the (i+1)th text delta, and a stall (until
    the client goes away) after the nth."""
    out, seen = [], 0
    for part in parts:
        out.append(part)
        if b"response.output_text.delta" in part.split(b"\n", 1)[0]:
            seen += 1
            if seen <= len(gates):
                out.append(Gate(gates[seen - 1]))
            elif seen == n:
                out.append(Stall())
    return tuple(out)


def _stall_after_delta(parts, n):
    """The parts with a stall (until the client goes away) after the nth text delta."""
    out, seen = [], 0
    for part in parts:
        out.append(part)
        seen += b"response.output_text.delta" in part.split(b"\n", 1)[0]
        if seen == n:
            out.append(Stall())
            seen += 1
    return tuple(out)


def consumer_view(chunks, start=""):
    view = start
    for chunk in chunks:
        rewind = (chunk.metadata.get("recovery") or {}).get("rewind", 0)
        view = view[: len(view) - rewind] if rewind else view
        view += chunk.content
    return view


def test_break_out_of_a_background_stream_cancels_the_response(server, make):
    wire = background_stream()
    stalled = wire.response().parts
    server.enqueue(dataclasses.replace(wire.response(), parts=_stall_after_delta(stalled, 2)),
                   Response(parts=(json.dumps({"id": "resp_bg", "status": "cancelled"}).encode(),),
                            content_type="application/json"))
    stream = make().stream_chat(MESSAGES, model="m", background=True)
    for chunk in stream:
        if chunk.content == PIECES[1]:
            break
    assert server.wait_for_requests(2)
    cancel = server.requests[1]
    assert (cancel.method, cancel.path) == ("POST", "/v1/responses/resp_bg/cancel")
    assert cancel.headers["authorization"] == f"Bearer {API_KEY}"


def test_closing_a_background_stream_with_recovery_keeps_the_response_resumable(server, make):
    wire = background_stream()
    server.enqueue(dataclasses.replace(wire.response(), parts=_stall_after_delta(wire.response().parts, 2)))
    with make(recovery_store=MemoryStore()).stream_chat(MESSAGES, model="m", background=True,
                                                        stream_recovery=True) as stream:
        for chunk in stream:
            if chunk.content == PIECES[1]:
                break
    assert server.connection_closed.wait(5)
    assert [r.method for r in server.requests] == ["POST"]


@pytest.mark.parametrize("how", ["cancel_stream", "handle.cancel"])
def test_cancelling_a_live_background_stream_cancels_the_response(server, make, how):
    # A live stream has recovery on (its record stays resumable when a consumer merely
    # closes it); an explicit cancel still stops the generation on the server.
    wire = background_stream()
    server.enqueue(dataclasses.replace(wire.response(), parts=_stall_after_delta(wire.response().parts, 2)),
                   Response(parts=(json.dumps({"id": "resp_bg", "status": "cancelled"}).encode(),),
                            content_type="application/json"))
    client = make(recovery_store=MemoryStore())
    handle = client.start(MESSAGES, stream_id="bg-1", model="m", background=True)
    assert server.stalled.wait(5)
    if how == "cancel_stream":
        client.cancel_stream("bg-1")
    else:
        handle.cancel()
    assert handle.wait(5)
    assert server.wait_for_requests(2)
    cancel = server.requests[1]
    assert (cancel.method, cancel.path) == ("POST", "/v1/responses/resp_bg/cancel")
    assert cancel.headers["authorization"] == f"Bearer {API_KEY}"
