"""Bedrock ConverseStream end to end over loopback HTTP: AWS event stream frames as Bedrock
sends them, split anywhere; tool use, reasoning, usage; exception frames; SigV4 checked by
botocore on the server side; API keys as Bearer; recovery."""

from __future__ import annotations

import datetime
import json
import re
import sys
import threading
from urllib.parse import quote

import pytest

import streamcoord
from recovery_store import MemoryStore
from streamcoord.errors import APIError, ConnectionLost, ProtocolError, RateLimitError, StreamTimeout
from tests.conftest import API_KEY
from tests.support.eventstream import bedrock_event, bedrock_exception
from tests.support.fakeserver import Drop, Response, Stall, error

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
PIECES = ["Hel", "lo, ", "wör", "ld ", "😄"]
EVENTSTREAM = "application/vnd.amazon.eventstream"
ACCESS_KEY, SECRET_KEY, SESSION_TOKEN = "AKIDEXAMPLE0123", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FQoGZXIvYXdzEXAMPLETOKEN0123"


def text_frames(pieces=PIECES, stop="end_turn", usage=True):
    frames = [bedrock_event("messageStart", {"role": "assistant"}),
              bedrock_event("contentBlockStart", {"start": {}, "contentBlockIndex": 0})]
    frames += [bedrock_event("contentBlockDelta", {"delta": {"text": p}, "contentBlockIndex": 0}) for p in pieces]
    if stop:
        frames += [bedrock_event("contentBlockStop", {"contentBlockIndex": 0}),
                   bedrock_event("messageStop", {"stopReason": stop})]
    if stop and usage:
        frames.append(bedrock_event("metadata", {"usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
                                                 "metrics": {"latencyMs": 42}}))
    return frames


def answer(frames, split=None, **kw):
    """Frames as one body; ``split`` cuts it into HTTP chunks of that many bytes (across frames)."""
    body = b"".join(f for f in frames if isinstance(f, bytes))
    parts = [body[i:i + split] for i in range(0, len(body), split)] if split else list(frames)
    return Response(parts=tuple(parts), content_type=EVENTSTREAM, **kw)


@pytest.fixture
def bedrock(client, server):
    def make(**kwargs):
        kwargs.setdefault("region", "us-west-2")
        return client("bedrock", **kwargs)
    return make


@pytest.mark.parametrize("split", [None, 1, 7])
def test_full_answer_split_anywhere_and_the_request_bedrock_documents(server, bedrock, split):
    server.enqueue(answer(text_frames(), split=split))
    stream = bedrock().stream_chat(MESSAGES, model=MODEL, max_tokens=100, temperature=0.5, stop="END")
    chunks = list(stream)
    assert stream.text == "".join(PIECES)
    assert stream.finish_reason == "stop"
    assert stream.usage == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert [c.index for c in chunks] == list(range(len(chunks)))
    request = server.requests[0]
    assert request.method == "POST"
    assert request.path == f"/model/{quote(MODEL, safe='')}/converse-stream"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["accept"] == EVENTSTREAM
    assert request.json == {
        "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]},
    }


def test_tool_use_with_input_fragments_and_reasoning(server, bedrock):
    frames = [
        bedrock_event("messageStart", {"role": "assistant"}),
        bedrock_event("contentBlockDelta", {"delta": {"reasoningContent": {"text": "The user wants "}}, "contentBlockIndex": 0}),
        bedrock_event("contentBlockDelta", {"delta": {"reasoningContent": {"text": "the weather."}}, "contentBlockIndex": 0}),
        bedrock_event("contentBlockDelta", {"delta": {"reasoningContent": {"signature": "sig-1"}}, "contentBlockIndex": 0}),
        bedrock_event("contentBlockStop", {"contentBlockIndex": 0}),
        bedrock_event("contentBlockStart", {"start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}},
                                            "contentBlockIndex": 1}),
        bedrock_event("contentBlockDelta", {"delta": {"toolUse": {"input": '{"city": "Par'}}, "contentBlockIndex": 1}),
        bedrock_event("contentBlockDelta", {"delta": {"toolUse": {"input": 'is"}'}}, "contentBlockIndex": 1}),
        bedrock_event("contentBlockStop", {"contentBlockIndex": 1}),
        bedrock_event("contentBlockStart", {"start": {"toolUse": {"toolUseId": "tooluse_2", "name": "now"}},
                                            "contentBlockIndex": 2}),
        bedrock_event("contentBlockStop", {"contentBlockIndex": 2}),
        bedrock_event("messageStop", {"stopReason": "tool_use"}),
        bedrock_event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}}),
    ]
    server.enqueue(answer(frames))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    stream = bedrock().stream_chat(MESSAGES, model=MODEL, tools=tools, tool_choice="required")
    chunks = list(stream)
    assert stream.finish_reason == "tool_calls"
    calls = stream.tool_calls
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("tooluse_1", "get_weather", {"city": "Paris"}), ("tooluse_2", "now", {})]
    assert "".join(c.metadata.get("reasoning", "") for c in chunks) == "The user wants the weather."
    assert any(c.metadata.get("reasoning_signature") == "sig-1" for c in chunks)
    assert server.requests[0].json["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather now",
                                "inputSchema": {"json": tools[0]["function"]["parameters"]}}}],
        "toolChoice": {"any": {}},
    }


def test_tool_results_go_back_as_tool_use_and_tool_result_blocks(server, bedrock):
    server.enqueue(answer(text_frames()))
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "t2", "content": "sunny"},
    ]
    list(bedrock().stream_chat(history, model=MODEL))
    assert server.requests[0].json["messages"] == [
        {"role": "user", "content": [{"text": "Weather?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"temp": 21}}]}},
                                     {"toolResult": {"toolUseId": "t2", "content": [{"text": "sunny"}]}}]},
    ]


@pytest.mark.parametrize("stop, finish", [("max_tokens", "length"), ("guardrail_intervened", "content_filter"),
                                          ("stop_sequence", "stop")])
def test_stop_reasons_are_normalized(server, bedrock, stop, finish):
    server.enqueue(answer(text_frames(stop=stop)))
    stream = bedrock().stream_chat(MESSAGES, model=MODEL)
    list(stream)
    assert stream.finish_reason == finish


def test_throttling_before_the_first_chunk_is_retried(server, bedrock, sleeps):
    server.enqueue(answer([bedrock_exception("throttlingException", "Too many requests")]),
                   error(429, {"message": "Rate exceeded"}, headers={"Retry-After": "3"}),
                   answer(text_frames()))
    stream = bedrock().stream_chat(MESSAGES, model=MODEL)
    assert "".join(c.content for c in stream) == "".join(PIECES)
    assert len(server.requests) == 3
    assert sleeps[1] == 3.0  # the Retry-After of the HTTP 429


def test_throttling_that_persists_is_a_rate_limit_error(server, bedrock):
    server.enqueue(*[answer([bedrock_exception("throttlingException", "Too many requests")])] * 3)
    with pytest.raises(RateLimitError, match="throttlingException: Too many requests") as info:
        list(bedrock().stream_chat(MESSAGES, model=MODEL))
    assert info.value.status == 429 and info.value.body["type"] == "throttlingException"


def test_validation_exception_is_not_retried_and_reaches_on_error(server, bedrock):
    server.enqueue(answer([bedrock_exception("validationException", "The model ID is wrong")]))
    seen = []
    with pytest.raises(APIError, match="The model ID is wrong") as info:
        list(bedrock().stream_chat(MESSAGES, model=MODEL, on_error=lambda status, body: seen.append((status, body))))
    assert info.value.status == 400 and len(server.requests) == 1
    assert seen == [(400, {"message": "The model ID is wrong", "type": "validationException"})]


def test_mid_stream_model_stream_error_is_recovered_with_a_continuation(server, bedrock):
    store = MemoryStore()
    broken = text_frames(["Hello, ", "wor"], stop=None) + [bedrock_exception("modelStreamErrorException", "boom")]
    server.enqueue(answer(broken), answer(text_frames(["ld!"])))
    stream = bedrock(recovery_store=store).stream_chat(
        MESSAGES, model=MODEL, max_tokens=50, stream_recovery=True, stream_id="br-1", recovery={"strategy": "exact"})
    list(stream)
    assert stream.text == "Hello, world!"
    assert stream.metrics.recoveries == 1
    continuation = server.requests[1].json
    assert continuation["messages"][-2] == {"role": "assistant", "content": [{"text": "Hello, wor"}]}
    assert continuation["messages"][-1]["role"] == "user"
    assert continuation["inferenceConfig"]["maxTokens"] < 50


def test_an_exception_after_message_stop_ends_the_complete_answer_and_is_raised_never_regenerated(server, bedrock):
    # The answer and its finish came; the exception frame took the place of the metadata.
    tail = text_frames(usage=False) + [bedrock_exception("internalServerException", "boom")]
    server.enqueue(answer(tail), answer(tail), answer(tail))
    reported, got = [], []
    stream = bedrock(recovery_store=MemoryStore()).stream_chat(
        MESSAGES, model=MODEL, stream_recovery=True, on_error=lambda status, body: reported.append(status))
    with pytest.raises(streamcoord.ServerError, match="internalServerException: boom"):
        for chunk in stream:
            got.append(chunk)
    assert "".join(c.content for c in got) == stream.text == "".join(PIECES)
    assert [c.finish_reason for c in got if c.finish_reason] == ["stop"] and stream.finish_reason == "stop"
    assert reported == [500] and len(server.requests) == 1  # no continuation of a finished answer


@pytest.mark.parametrize("tools_given", ["tools", "tool_config"])
def test_tool_choice_none_sends_no_tools_so_the_model_cannot_call_one(server, bedrock, tools_given):
    # Converse's toolChoice has no "none" (auto, any, tool).
    server.enqueue(answer(text_frames()))
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    given = {"tools": [tool]} if tools_given == "tools" else {
        "tool_config": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}}]}}
    stream = bedrock().stream_chat(MESSAGES, model=MODEL, tool_choice="none", **given)
    assert "".join(c.content for c in stream) == "".join(PIECES)
    assert "toolConfig" not in server.requests[0].json


def test_tool_choice_none_with_tool_messages_is_refused_before_any_request(server, bedrock):
    # Bedrock refuses toolUse/toolResult blocks without their toolConfig, which would let
    # the model call the tools again.
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
    ]
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    with pytest.raises(ValueError, match="tool_choice='none'.*leave tool_choice out"):
        list(bedrock().stream_chat(history, model=MODEL, tools=[tool], tool_choice="none"))
    assert server.requests == []


def test_a_dropped_body_is_connection_lost_and_a_stall_an_idle_timeout(server, bedrock):
    server.enqueue(answer(text_frames(stop=None) + [Drop()]))
    with pytest.raises(ConnectionLost):
        list(bedrock(max_retries=0).stream_chat(MESSAGES, model=MODEL))
    release = threading.Event()
    server.enqueue(answer(text_frames(stop=None) + [Stall(release, timeout=5)]))
    try:
        with pytest.raises(StreamTimeout):
            list(bedrock(max_retries=0).stream_chat(MESSAGES, model=MODEL, timeout=0.2))
    finally:
        release.set()


def test_a_corrupt_frame_is_a_protocol_error(server, bedrock):
    frames = text_frames()
    bad = bytearray(frames[3])
    bad[-10] ^= 0x20
    frames[3] = bytes(bad)
    server.enqueue(answer(frames))
    stream = bedrock(max_retries=0).stream_chat(MESSAGES, model=MODEL)
    with pytest.raises(ProtocolError, match="CRC32"):
        list(stream)
    assert stream.text == "Hel"  # what came before the corrupt frame was delivered


# -- SigV4 --------------------------------------------------------------------------------
@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Credentials in the environment only; no files, no instance metadata. (botocore
    signs: without it, on Python 3.9, Bedrock takes API keys only.)"""
    pytest.importorskip("botocore.auth")
    for name in ("AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


def _clock(monkeypatch, *times):
    """botocore's signing clock, one fixed time per signature."""
    import botocore.auth as botocore_auth

    it = iter(times)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: next(it))


def expected_authorization(server, request, region="us-west-2"):
    """What botocore computes for the request the server received (its bytes, its date)."""
    import botocore.auth as botocore_auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    when = datetime.datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    names = ("content-type", "accept", "x-amz-date", "x-amz-security-token")
    aws = AWSRequest(method=request.method, url=server.base_url + request.path, data=request.body,
                     headers={n: request.headers[n] for n in names if n in request.headers})
    aws.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
    signer = botocore_auth.SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN), "bedrock", region)
    canonical = signer.canonical_request(aws)
    signature = signer.signature(signer.string_to_sign(aws, canonical), aws)
    return f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{when:%Y%m%d}/{region}/bedrock/aws4_request, " \
           f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(aws))}, Signature={signature}"


def test_sigv4_signs_each_attempt_afresh_over_the_bytes_sent(server, client, aws_env, monkeypatch, sleeps):
    t0 = datetime.datetime(2026, 1, 2, 3, 4, 5)
    _clock(monkeypatch, t0, t0 + datetime.timedelta(seconds=7))
    server.enqueue(error(503, {"message": "Service unavailable"}), answer(text_frames()))
    stream = client("bedrock", api_key=None, region="us-west-2").stream_chat(MESSAGES, model=MODEL)
    assert "".join(c.content for c in stream) == "".join(PIECES)
    first, second = server.requests
    assert first.headers["x-amz-date"] == "20260102T030405Z" and second.headers["x-amz-date"] == "20260102T030412Z"
    for request in (first, second):
        assert request.headers["authorization"] == expected_authorization(server, request)
        assert request.headers["x-amz-security-token"] == SESSION_TOKEN
        assert SECRET_KEY not in json.dumps(request.headers) and SECRET_KEY.encode() not in request.body
    assert first.headers["authorization"] != second.headers["authorization"]


def test_a_session_token_echoed_back_never_reaches_the_caller(server, client, aws_env):
    server.enqueue(error(403, {"message": f"The security token {SESSION_TOKEN} is invalid"}))
    seen = []
    with pytest.raises(streamcoord.AuthenticationError) as info:
        list(client("bedrock", api_key=None, region="us-west-2", max_retries=0).stream_chat(
            MESSAGES, model=MODEL, on_error=lambda status, body: seen.append(body)))
    assert SESSION_TOKEN not in str(info.value) and SESSION_TOKEN not in json.dumps(info.value.body)
    assert SESSION_TOKEN not in json.dumps(seen) and "is invalid" in json.dumps(seen)


def test_sigv4_signature_is_reproducible_with_fixed_credentials_and_time(aws_env, monkeypatch):
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    _clock(monkeypatch, datetime.datetime(2026, 1, 2, 3, 4, 5))
    adapter = streamcoord.Client("bedrock", region="eu-central-1").adapter
    request = adapter.build_request([{"role": "user", "content": "hi"}], {"model": "amazon.nova-lite-v1:0"},
                                    base_url=adapter.default_base_url, api_key=None)
    signed = adapter.before_send(request)
    assert signed.content == b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
    assert signed.headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE0123/20260102/eu-central-1/bedrock/aws4_request, "
        "SignedHeaders=accept;content-type;host;x-amz-date, "
        "Signature=5949a7463ce36c34d512c5f9a651c62a2c914e46d19aaad2f2e11dcf162dc288"
    )
    assert signed.headers["Authorization"].endswith(documented_sigv4(signed, "20260102T030405Z", "eu-central-1"))


def documented_sigv4(request, amz_date, region):
    """The signature by AWS's published SigV4 steps (canonical request, string to sign,
    derived key), written out here independently of botocore."""
    import hashlib
    import hmac
    from urllib.parse import urlsplit

    url = urlsplit(request.url)
    path = quote(url.path, safe="/~")  # non-S3 services: the path is encoded once more
    headers = {k.lower(): v.strip() for k, v in request.headers.items() if k.lower() in ("accept", "content-type")}
    headers.update(host=url.netloc, **{"x-amz-date": amz_date})
    names = sorted(headers)
    canonical = "\n".join(["POST", path, "", *(f"{n}:{headers[n]}" for n in names), "", ";".join(names),
                           hashlib.sha256(request.content).hexdigest()])
    scope = f"{amz_date[:8]}/{region}/bedrock/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + SECRET_KEY).encode()
    for part in (amz_date[:8], region, "bedrock", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return "Signature=" + hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_the_region_comes_from_the_environment_and_gives_the_default_address(monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    client = streamcoord.Client("bedrock", api_key=API_KEY)
    assert client.base_url == "https://bedrock-runtime.ap-southeast-2.amazonaws.com"
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    assert streamcoord.Client("bedrock", api_key=API_KEY).base_url == "https://bedrock-runtime.us-east-2.amazonaws.com"
    # The China partition has its own DNS suffix (an address under amazonaws.com does not resolve there).
    monkeypatch.setenv("AWS_REGION", "cn-northwest-1")
    assert streamcoord.Client("bedrock", api_key=API_KEY).base_url == (
        "https://bedrock-runtime.cn-northwest-1.amazonaws.com.cn")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ValueError, match="region='us-east-1'"):
        streamcoord.Client("bedrock", api_key=API_KEY)


@pytest.mark.parametrize("bad", ["attacker.example#", "us-east-1 eu", "attacker.example/", "us-east-1.evil", "US-EAST-1"])
@pytest.mark.parametrize("given_as", ["argument", "AWS_REGION", "AWS_DEFAULT_REGION"])
def test_a_region_that_is_no_aws_region_is_refused_before_the_key_goes_anywhere(server, bedrock, monkeypatch, bad,
                                                                                given_as):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    if given_as == "argument":
        region, source = bad, "the region= argument"
    else:
        monkeypatch.setenv(given_as, bad)
        region, source = None, f"the environment variable {given_as}"
    with pytest.raises(ValueError) as caught:
        bedrock(region=region).stream_chat(MESSAGES, model=MODEL)
    assert source in str(caught.value) and "'us-east-1'" in str(caught.value)
    assert API_KEY not in str(caught.value) and server.requests == []


@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-5", "us-gov-west-1", "cn-north-1", "eu-isoe-west-1"])
def test_every_partitions_region_form_is_taken(server, bedrock, region):
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    assert streamcoord.Client("bedrock", api_key=API_KEY, region=region).base_url == (
        f"https://bedrock-runtime.{region}.{suffix}")
    server.enqueue(answer(text_frames()))
    assert "".join(c.content for c in bedrock(region=region).stream_chat(MESSAGES, model=MODEL)) == "".join(PIECES)


def test_without_botocore_and_without_a_key_the_error_says_what_to_install(monkeypatch):
    from adapters._sigv4 import INSTALL_HINT

    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    monkeypatch.setitem(sys.modules, "botocore.auth", None)  # import botocore.auth fails
    with pytest.raises(ValueError, match=re.escape(INSTALL_HINT)):
        streamcoord.Client("bedrock", region="us-east-1")
    if sys.version_info >= (3, 10):
        assert INSTALL_HINT == "pip install streamcoord[bedrock]"
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", API_KEY)
    assert streamcoord.Client("bedrock", region="us-east-1").provider == "bedrock"  # a key needs no botocore
