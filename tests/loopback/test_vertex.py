"""Gemini on Vertex AI end to end over loopback HTTP: the Vertex address and path, Bearer
tokens from access_token= (a str or a provider asked before each request) or google-auth's
application default credentials, the Gemini stream, errors and recovery."""

from __future__ import annotations

import sys
from urllib.parse import quote

import pytest

import streamcoord
from recovery_store import MemoryStore
from streamcoord.errors import AuthenticationError, CallbackError, ServerError
from tests.support.fakeserver import error, gemini_text, sse

MODEL = "gemini-2.5-flash"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
PIECES = ["Hel", "lo, ", "wör", "ld ", "😄"]
TOKEN = "ya29.test-ACCESS-token-0123456789"
PATH = f"/v1/projects/my-proj/locations/us-central1/publishers/google/models/{MODEL}:streamGenerateContent"


@pytest.fixture
def vertex(client):
    def make(**kwargs):
        kwargs.setdefault("api_key", None)
        kwargs.setdefault("project", "my-proj")
        kwargs.setdefault("location", "us-central1")
        return client("vertex", **kwargs)
    return make


def test_full_answer_at_the_vertex_path_with_a_bearer_token(server, vertex):
    server.enqueue(gemini_text(PIECES, model=MODEL))
    stream = vertex(access_token=TOKEN).stream_chat(MESSAGES, model=MODEL, max_tokens=64)
    chunks = list(stream)
    assert "".join(c.content for c in chunks) == stream.text == "".join(PIECES)
    assert stream.finish_reason == "stop"
    assert stream.usage["prompt_tokens"] == 10 and stream.usage["total_tokens"] > 10
    request = server.requests[0]
    assert request.path == PATH and request.query == {"alt": "sse"}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert "x-goog-api-key" not in request.headers
    assert request.json["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]
    assert request.json["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert request.json["generationConfig"] == {"maxOutputTokens": 64}


def test_a_token_provider_is_asked_before_each_request_and_its_tokens_never_leak(server, vertex, sleeps):
    tokens = iter([TOKEN + "-1", TOKEN + "-2"])
    asked = []

    def provider():
        asked.append(1)
        return next(tokens)

    # The 503 echoes the token back, as a misbehaving proxy might.
    server.enqueue(error(503, {"error": {"code": 503, "message": f"unavailable for {TOKEN}-1", "status": "UNAVAILABLE"}}),
                   gemini_text(PIECES, model=MODEL))
    stream = vertex(access_token=provider).stream_chat(MESSAGES, model=MODEL)
    assert stream.text == "" and "".join(c.content for c in stream) == "".join(PIECES)
    assert len(asked) == 2
    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {TOKEN}-1", f"Bearer {TOKEN}-2"]

    server.enqueue(*[error(503, {"error": {"message": f"down for {TOKEN}-9", "status": "UNAVAILABLE"}})] * 3)
    with pytest.raises(ServerError) as info:
        list(vertex(access_token=lambda: TOKEN + "-9").stream_chat(MESSAGES, model=MODEL))
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value.body)


def test_a_failing_token_provider_is_a_callback_error(server, vertex):
    def provider():
        raise RuntimeError("token service down")

    with pytest.raises(CallbackError, match="token service down"):
        list(vertex(access_token=provider).stream_chat(MESSAGES, model=MODEL))
    with pytest.raises(CallbackError, match="not a token"):
        list(vertex(access_token=lambda: None).stream_chat(MESSAGES, model=MODEL))
    assert server.requests == []


def test_application_default_credentials_through_google_auth(server, vertex, monkeypatch):
    google_auth = pytest.importorskip("google.auth")
    from google.oauth2.credentials import Credentials

    calls = []

    def default(scopes=None, **kwargs):  # google-auth's own credentials object, valid (no expiry)
        calls.append(scopes)
        return Credentials(token=TOKEN), "adc-project"

    monkeypatch.setattr(google_auth, "default", default)
    server.enqueue(gemini_text(PIECES, model=MODEL), gemini_text(PIECES, model=MODEL))
    client = vertex()
    for _ in range(2):
        assert "".join(c.content for c in client.stream_chat(MESSAGES, model=MODEL)) == "".join(PIECES)
    assert calls == [["https://www.googleapis.com/auth/cloud-platform"]]  # found once, used for both
    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {TOKEN}"] * 2


def test_credentials_google_auth_cannot_find_are_an_authentication_error(server, vertex, monkeypatch):
    google_auth = pytest.importorskip("google.auth")
    import google.auth.exceptions

    def default(**kwargs):
        raise google.auth.exceptions.DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google_auth, "default", default)
    with pytest.raises(AuthenticationError, match="application-default login"):
        list(vertex().stream_chat(MESSAGES, model=MODEL))
    assert server.requests == []


def test_a_mid_stream_break_is_recovered_with_a_model_turn(server, vertex):
    server.enqueue(gemini_text(["Hello, ", "wor", "x"], model=MODEL, drop_after=2), gemini_text(["ld!"], model=MODEL))
    stream = vertex(access_token=TOKEN, recovery_store=MemoryStore()).stream_chat(
        MESSAGES, model=MODEL, stream_recovery=True, stream_id="vx-1", recovery={"strategy": "exact"})
    list(stream)
    assert stream.text == "Hello, world!"
    continuation = server.requests[1]
    assert continuation.path == PATH
    assert continuation.json["contents"][-2] == {"role": "model", "parts": [{"text": "Hello, wor"}]}


def test_an_error_event_is_classified_by_its_status_and_reported_as_vertex(server, vertex):
    server.enqueue(sse([{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}]))
    with pytest.raises(streamcoord.RateLimitError, match="^vertex sent an error event: Quota exceeded$") as caught:
        list(vertex(access_token=TOKEN, max_retries=0).stream_chat(MESSAGES, model=MODEL))
    assert caught.value.provider == "vertex"


def test_an_http_error_answered_as_a_one_element_array_shows_its_message(server, vertex):
    # Vertex's streaming methods answer an HTTP error with a JSON array of one error.
    body = [{"error": {"code": 400, "message": "Unable to submit request because it has an empty text parameter.",
                       "status": "INVALID_ARGUMENT"}}]
    server.enqueue(error(400, body))
    bodies = []
    with pytest.raises(streamcoord.APIError) as caught:
        list(vertex(access_token=TOKEN, max_retries=0).stream_chat(
            MESSAGES, model=MODEL, on_error=lambda status, got: bodies.append((status, got))))
    assert str(caught.value) == "vertex answered HTTP 400: Unable to submit request because it has an empty text parameter."
    assert (caught.value.status, caught.value.provider) == (400, "vertex") and bodies == [(400, body)]


def test_addresses_project_and_location_from_arguments_or_the_environment(monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-proj")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    client = streamcoord.Client("vertex", access_token=TOKEN)
    assert client.base_url == "https://europe-west4-aiplatform.googleapis.com"
    request = client.adapter.build_request(MESSAGES, {"model": MODEL}, base_url=client.base_url, api_key=None)
    assert request.url.startswith("https://europe-west4-aiplatform.googleapis.com/v1/projects/env-proj/locations/europe-west4/")
    assert streamcoord.Client("vertex", location="global", access_token=TOKEN).base_url == "https://aiplatform.googleapis.com"
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    with pytest.raises(ValueError, match=r"project= \(or GOOGLE_CLOUD_PROJECT\)"):
        streamcoord.Client("vertex", access_token=TOKEN)
    with pytest.raises(ValueError, match="access_token="):
        streamcoord.Client("vertex", api_key="AIza-not-for-vertex-0123", project="my-proj")
    with pytest.raises(TypeError, match=r"Client\('vertex'\) got unexpected argument\(s\) region; its provider settings are project="):
        streamcoord.Client("vertex", region="us-east-1", project="my-proj")


@pytest.mark.parametrize("setting, bad", [
    ("location", "us-central1.attacker.example#"), ("location", "attacker.example/x#"), ("location", "us central1"),
    ("project", "p/../../other"), ("project", "my-proj?alt=x"), ("project", "a"), ("project", "Trailing-"),
])
@pytest.mark.parametrize("given_as", ["argument", "environment"])
def test_a_project_or_location_that_is_no_google_name_is_refused_before_the_token_goes_anywhere(
        server, vertex, monkeypatch, setting, bad, given_as):
    variable = {"project": "GOOGLE_CLOUD_PROJECT", "location": "GOOGLE_CLOUD_LOCATION"}[setting]
    if given_as == "argument":
        settings, source = {setting: bad}, f"the {setting}= argument"
    else:
        monkeypatch.setenv(variable, bad)
        settings, source = {setting: None}, f"the environment variable {variable}"
    with pytest.raises(ValueError) as caught:
        vertex(access_token=TOKEN, **settings).stream_chat(MESSAGES, model=MODEL)
    example = {"project": "'my-project-123'", "location": "'us-central1'"}[setting]
    assert source in str(caught.value) and example in str(caught.value)
    assert TOKEN not in str(caught.value) and server.requests == []


@pytest.mark.parametrize("project, location, address", [
    ("my-proj", "europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
    ("example.com:my-project", "northamerica-northeast1", "https://northamerica-northeast1-aiplatform.googleapis.com"),
    ("123456789012", "global", "https://aiplatform.googleapis.com"),
    ("my-proj", "eu", "https://aiplatform.eu.rep.googleapis.com"),
])
def test_real_project_ids_and_locations_make_their_address_and_path(server, vertex, project, location, address):
    assert streamcoord.Client("vertex", project=project, location=location, access_token=TOKEN).base_url == address
    server.enqueue(gemini_text(PIECES, model=MODEL))
    stream = vertex(access_token=TOKEN, project=project, location=location).stream_chat(MESSAGES, model=MODEL)
    assert "".join(c.content for c in stream) == "".join(PIECES)
    # The domain-scoped ID's ':' is sent escaped (%3A), apart from the method's ':'.
    assert server.requests[0].path == PATH.replace("my-proj", quote(project)).replace("us-central1", location)


def test_without_google_auth_and_without_a_token_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.auth", None)
    with pytest.raises(ValueError, match=r"pip install streamcoord\[vertex\]"):
        streamcoord.Client("vertex", project="my-proj", location="us-central1")
    assert streamcoord.Client("vertex", project="my-proj", location="us-central1", access_token=TOKEN).provider == "vertex"


def test_module_level_stream_chat_takes_the_provider_settings(server):
    server.enqueue(gemini_text(PIECES, model=MODEL))
    stream = streamcoord.stream_chat("vertex", MESSAGES, model=MODEL, base_url=server.base_url,
                                     project="my-proj", location="us-central1", access_token=TOKEN)
    assert "".join(c.content for c in stream) == "".join(PIECES)
    assert server.requests[0].path == PATH
