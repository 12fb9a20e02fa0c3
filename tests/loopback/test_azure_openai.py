"""The ``azure_openai`` adapters over loopback HTTP: deployment URLs with api-version, the
v1 endpoint (chat completions and Responses), the resource endpoint from
``AZURE_OPENAI_ENDPOINT``, the ``api-key`` header, Entra tokens asked for before every
request, and Azure's content-filter chunks."""

from __future__ import annotations

import itertools
import json
import threading

import pytest

import streamcoord
from streamcoord.errors import CallbackError
from tests.conftest import API_KEY
from tests.support.fakeserver import Drop, Gate, Response, error, sse
from tests.support.responses_wire import ResponsesStream

MESSAGES = [{"role": "user", "content": "Say hello"}]
SAFE = {"hate": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
FILTERED = dict(SAFE, violence={"filtered": True, "severity": "medium"})


def azure_chunk(delta, finish=None, results=SAFE):
    return {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1727346168, "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_az", "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                       "logprobs": None, "content_filter_results": results}]}


# Azure's first chunk: no choices, the prompt's filter results.
PROMPT_FILTER = {"id": "", "object": "", "created": 0, "model": "", "choices": [],
                 "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}]}


def azure_text(pieces, finish="stop", finish_results=None):
    events = [PROMPT_FILTER, azure_chunk({"role": "assistant", "content": ""})]
    events += [azure_chunk({"content": p}) for p in pieces]
    events.append(azure_chunk({}, finish, finish_results or {}))
    return sse(events, done=True)


@pytest.fixture
def no_azure_env(monkeypatch):
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "OPENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)


def test_deployment_url_with_api_version_and_api_key_header(server, client, no_azure_env):
    server.enqueue(azure_text(["Hel", "lo"]))
    azure = client("azure_openai", base_url=server.base_url + "/openai/deployments/my-gpt", api_version="2024-10-21")
    stream = azure.stream_chat(MESSAGES, max_tokens=50)
    chunks = list(stream)
    assert (stream.text, stream.finish_reason) == ("Hello", "stop")
    assert chunks[0].metadata["prompt_filter_results"][0]["content_filter_results"] == SAFE
    request = server.requests[0]
    assert (request.path, request.query) == ("/openai/deployments/my-gpt/chat/completions", {"api-version": "2024-10-21"})
    assert request.headers["api-key"] == API_KEY and "authorization" not in request.headers
    assert request.json["model"] == "my-gpt" and request.json["messages"] == MESSAGES


def test_filtered_answer_ends_with_content_filter_and_its_results(server, client, no_azure_env):
    server.enqueue(azure_text(["Once upon"], finish="content_filter", finish_results=FILTERED))
    stream = client("azure_openai", base_url=server.base_url + "/openai/v1").stream_chat(MESSAGES, model="dep")
    chunks = list(stream)
    assert (stream.text, stream.finish_reason) == ("Once upon", "content_filter")
    assert chunks[-1].metadata["content_filter_results"]["violence"]["filtered"] is True


def test_every_chunk_keeps_its_filter_results_and_an_asynchronous_filter_annotation_arrives(server, client, no_azure_env):
    # Azure sends content_filter_results on every content chunk; with the Asynchronous
    # Filter, a later choice without a delta annotates text already sent
    # (content_filter_offsets says which span).
    offsets = {"check_offset": 0, "start_offset": 0, "end_offset": 9}
    annotation = dict(azure_chunk({}), choices=[{"index": 0, "finish_reason": None, "content_filter_results": FILTERED,
                                                 "content_filter_offsets": offsets}])
    events = [PROMPT_FILTER, azure_chunk({"role": "assistant", "content": ""}, results={}),
              azure_chunk({"content": "Once"}), azure_chunk({"content": " upon"}, results=FILTERED),
              azure_chunk({}, "stop", {}), annotation,
              dict(azure_chunk({}), choices=[], usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})]
    server.enqueue(sse(events, done=True))
    stream = client("azure_openai", base_url=server.base_url + "/openai/v1").stream_chat(MESSAGES, model="dep")
    chunks = list(stream)
    assert (stream.text, stream.finish_reason, stream.usage["total_tokens"]) == ("Once upon", "stop", 7)
    assert [(c.content, c.metadata.get("content_filter_results")) for c in chunks if c.content] == [
        ("Once", SAFE), (" upon", FILTERED)]
    (note,) = [c for c in chunks if "content_filter_offsets" in c.metadata]
    assert (note.content, note.metadata["content_filter_results"], note.metadata["content_filter_offsets"]) == (
        "", FILTERED, offsets)


def test_v1_endpoint_has_no_api_version_and_serves_responses_too(server, client, no_azure_env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")  # not used on the v1 API
    server.enqueue(azure_text(["A"]), ResponsesStream("resp_az").text(["B"]).completed().response())
    base_url = server.base_url + "/openai/v1"
    chat = client("azure_openai", base_url=base_url).stream_chat(MESSAGES, model="dep")
    responses = client("azure_openai_responses", base_url=base_url).stream_chat(MESSAGES, model="dep")
    assert (chat.text if list(chat) else None, responses.text if list(responses) else None) == ("A", "B")
    first, second = server.requests
    assert (first.path, first.query, second.path, second.query) == (
        "/openai/v1/chat/completions", {}, "/openai/v1/responses", {})
    assert second.headers["api-key"] == API_KEY and second.json["input"] == MESSAGES


def test_resource_endpoint_and_key_from_the_environment(server, no_azure_env, monkeypatch, no_thread_leak):
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.base_url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-01-01-preview")
    server.enqueue(azure_text(["Hi"]))
    stream = streamcoord.stream_chat("azure_openai", MESSAGES, model="gpt-4o-deploy")
    assert "".join(c.content for c in stream) == "Hi"
    request = server.requests[0]
    assert request.path == "/openai/deployments/gpt-4o-deploy/chat/completions"
    assert request.query == {"api-version": "2025-01-01-preview"} and request.headers["api-key"] == API_KEY


def test_entra_token_is_asked_for_before_every_request(server, client, no_azure_env, sleeps):
    tokens = (f"entra-token-{n:04d}" for n in itertools.count(1))
    asked = []

    def token_provider():
        asked.append(next(tokens))
        return asked[-1]

    broken = azure_text(["First. ", "Sec"])
    broken = Response(parts=broken.parts[:4] + (Drop(),))
    echo = {"error": {"message": "busy; your token was entra-token-0001", "type": "server_error"}}
    server.enqueue(error(503, echo), broken, azure_text(["ond."]))
    reported = []
    stream = client("azure_openai", api_key=None, base_url=server.base_url + "/openai/v1",
                    azure_ad_token_provider=token_provider).stream_chat(
        MESSAGES, model="dep", stream_recovery=True, recovery={"strategy": "exact"},
        on_error=lambda status, body: reported.append(body))
    list(stream)
    assert stream.text == "First. Second."
    # A retry and a continuation: each request carried the token current when it was sent.
    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {t}" for t in asked]
    assert len(asked) == 3 and all("api-key" not in r.headers for r in server.requests)
    assert reported and "entra-token-0001" not in json.dumps(reported)  # the token is a secret of the stream


def test_settings_are_checked_and_a_failing_token_provider_is_a_callback_error(server, client, no_azure_env):
    with pytest.raises(TypeError, match="api_version=, azure_ad_token_provider="):
        client("azure_openai", base_url="https://r.openai.azure.com/openai/v1", region="eu")
    with pytest.raises(TypeError, match="takes no provider settings"):
        client("openai", api_version="2024-10-21")
    with pytest.raises(ValueError, match="OPENAI_API_VERSION"):
        client("azure_openai", base_url="https://r.openai.azure.com/openai/deployments/d").stream_chat(MESSAGES)

    def broken_provider():
        raise RuntimeError("no credential available")

    stream = client("azure_openai", api_key=None, base_url=server.base_url + "/openai/v1",
                    azure_ad_token_provider=broken_provider).stream_chat(MESSAGES, model="dep")
    with pytest.raises(CallbackError, match="no credential available") as info:
        list(stream)
    assert info.value.callback == "azure_ad_token_provider" and server.requests == []


def test_an_api_version_is_refused_with_the_v1_endpoint_and_by_the_responses_adapter(server, client, no_azure_env,
                                                                                      monkeypatch):
    v1 = server.base_url + "/openai/v1"
    with pytest.raises(ValueError, match="the v1 endpoint takes no API version: leave api_version= out"):
        client("azure_openai", base_url=v1, api_version="2024-10-21")
    with pytest.raises(TypeError, match="unexpected argument.*api_version"):
        client("azure_openai_responses", base_url=v1, api_version="2024-10-21")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")  # read by other tools too: ignored on the v1 API
    server.enqueue(azure_text(["A"]))
    assert "".join(c.content for c in client("azure_openai", base_url=v1).stream_chat(MESSAGES, model="dep")) == "A"
    assert server.requests[0].query == {}


def test_a_provider_setting_given_to_one_request_says_it_belongs_to_the_client(server, client, no_azure_env):
    azure = client("azure_openai", base_url=server.base_url + "/openai/v1")
    with pytest.raises(TypeError, match=r"argument of the client.*Client\('azure_openai', api_version=\.\.\.\)"):
        azure.stream_chat(MESSAGES, model="dep", api_version="2024-10-21")


def test_without_an_endpoint_the_key_goes_nowhere(no_azure_env):
    # Never OpenAI's address (the OpenAI adapters' default): an Azure key is for Azure only.
    for provider in ("azure_openai", "azure_openai_responses"):
        with pytest.raises(ValueError, match=r"needs its address: pass base_url=.*AZURE_OPENAI_ENDPOINT"):
            streamcoord.Client(provider, api_key=API_KEY)


@pytest.mark.parametrize("with_text", [False, True], ids=["on its own", "with plain text in the same read"])
def test_the_model_is_known_once_the_answer_starts_after_azures_prompt_filter_chunk(server, client, no_azure_env,
                                                                                   with_text):
    # Azure's first chunk (the prompt's filter results) says "model": "", alone or in one
    # read with text chunks that carry nothing else (no filter results: the plain path).
    went_on = threading.Event()
    plain = {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1727346168,
             "model": "gpt-4o-2024-08-06", "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}
    first = sse([PROMPT_FILTER] + ([plain] if with_text else [azure_chunk({"content": "Hel"})])).parts
    rest = azure_text(["lo"]).parts[2:]  # after its own prompt-filter and role chunks
    server.enqueue(Response(parts=(b"".join(first), Gate(went_on)) + tuple(rest)))
    stream = client("azure_openai", base_url=server.base_url + "/openai/deployments/my-gpt",
                    api_version="2024-10-21").stream_chat(MESSAGES, max_tokens=50)
    try:
        seen = []
        for chunk in stream:
            if chunk.content == "Hel":
                seen.append(stream.model)  # before the rest has come
                went_on.set()
    finally:
        went_on.set()
        stream.close()
    assert seen == ["gpt-4o-2024-08-06"]
    assert (stream.text, stream.model) == ("Hello", "gpt-4o-2024-08-06")
