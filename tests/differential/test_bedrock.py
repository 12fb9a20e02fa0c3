"""Bedrock against botocore, the official AWS SDK core, as the oracle: the same loopback
ConverseStream answer read through ``client.converse_stream()`` and through streamcoord
gives the same text, tool input, stop reason and usage; and for the same request botocore
and streamcoord send the same path and the same JSON body."""

from __future__ import annotations

import json

import pytest

from tests.support.eventstream import bedrock_event
from tests.support.fakeserver import Response

botocore_session = pytest.importorskip("botocore.session")

MODEL = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
EVENTSTREAM = "application/vnd.amazon.eventstream"
FRAMES = [
    bedrock_event("messageStart", {"role": "assistant"}),
    bedrock_event("contentBlockDelta", {"delta": {"reasoningContent": {"text": "Think."}}, "contentBlockIndex": 0}),
    bedrock_event("contentBlockStop", {"contentBlockIndex": 0}),
    bedrock_event("contentBlockDelta", {"delta": {"text": "Looking it up, "}, "contentBlockIndex": 1}),
    bedrock_event("contentBlockDelta", {"delta": {"text": "wörld 😄"}, "contentBlockIndex": 1}),
    bedrock_event("contentBlockStop", {"contentBlockIndex": 1}),
    bedrock_event("contentBlockStart", {"start": {"toolUse": {"toolUseId": "tu-1", "name": "get_weather"}},
                                        "contentBlockIndex": 2}),
    bedrock_event("contentBlockDelta", {"delta": {"toolUse": {"input": '{"city": '}}, "contentBlockIndex": 2}),
    bedrock_event("contentBlockDelta", {"delta": {"toolUse": {"input": '"Paris"}'}}, "contentBlockIndex": 2}),
    bedrock_event("contentBlockStop", {"contentBlockIndex": 2}),
    bedrock_event("messageStop", {"stopReason": "tool_use"}),
    bedrock_event("metadata", {"usage": {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19},
                               "metrics": {"latencyMs": 5}}),
]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def botocore_client(server):
    session = botocore_session.Session()
    return session.create_client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=server.base_url,
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret-EXAMPLE-0123456789",
    )


def test_the_same_answer_reads_the_same_through_botocore_and_streamcoord(server, client):
    server.enqueue(Response(parts=tuple(FRAMES), content_type=EVENTSTREAM),
                   Response(parts=tuple(FRAMES), content_type=EVENTSTREAM))
    events = list(botocore_client(server).converse_stream(
        modelId=MODEL, messages=[{"role": "user", "content": [{"text": "hi"}]}])["stream"])
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
    tool_input = "".join(e["contentBlockDelta"]["delta"].get("toolUse", {}).get("input", "")
                         for e in events if "contentBlockDelta" in e)
    stop = next(e["messageStop"]["stopReason"] for e in events if "messageStop" in e)
    usage = next(e["metadata"]["usage"] for e in events if "metadata" in e)

    stream = client("bedrock", region="us-east-1").stream_chat([{"role": "user", "content": "hi"}], model=MODEL)
    chunks = list(stream)
    assert stream.text == text
    assert json.loads(stream.tool_calls[0]["function"]["arguments"]) == json.loads(tool_input)
    assert (stop, stream.finish_reason) == ("tool_use", "tool_calls")
    assert stream.usage == {"prompt_tokens": usage["inputTokens"], "completion_tokens": usage["outputTokens"],
                            "total_tokens": usage["totalTokens"]}
    assert "".join(c.metadata.get("reasoning", "") for c in chunks) == "Think."


def test_the_same_request_goes_out_as_botocore_sends_it(server, client):
    server.enqueue(Response(parts=tuple(FRAMES), content_type=EVENTSTREAM),
                   Response(parts=tuple(FRAMES), content_type=EVENTSTREAM))
    list(botocore_client(server).converse_stream(
        modelId=MODEL,
        system=[{"text": "Be brief."}],
        messages=[
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather",
                                                           "input": {"city": "Paris"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"temp": 21}}]}}]},
        ],
        inferenceConfig={"maxTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        toolConfig={"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather now",
                                            "inputSchema": {"json": SCHEMA}}}],
                    "toolChoice": {"tool": {"name": "get_weather"}}},
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 1024}},
    )["stream"])
    list(client("bedrock", region="us-east-1").stream_chat(
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": "Weather in Paris?"},
         {"role": "assistant", "content": None, "tool_calls": [
             {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
         {"role": "tool", "tool_call_id": "t1", "content": '{"temp": 21}'}],
        model=MODEL, max_tokens=300, temperature=0.2, top_p=0.9, stop=["END"],
        tools=[{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": SCHEMA}}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        additional_model_request_fields={"thinking": {"type": "enabled", "budget_tokens": 1024}},
    ))
    theirs, ours = server.requests
    assert ours.path == theirs.path  # the ARN's ':' and '/' percent-encoded as botocore does
    assert ours.json == theirs.json
