"""Vertex's application default credentials refreshed over loopback HTTP (google-auth's own
``Credentials`` pointed at a token endpoint of ours): a refresh stuck on a stalled endpoint
is left at once by ``close()``, ends with ``StreamTimeout`` at the total deadline, and holds
up no other stream of the same client, which refreshes for itself."""

from __future__ import annotations

import json
import threading
import time

import pytest

import streamcoord
from streamcoord._stream import CLOSE_JOIN_SECONDS
from streamcoord.errors import StreamTimeout
from tests.support.fakeserver import FakeProvider, Response, Stall, gemini_text

google_auth = pytest.importorskip("google.auth")
from google.oauth2.credentials import Credentials  # noqa: E402

MODEL = "gemini-2.5-flash"
MESSAGES = [{"role": "user", "content": "Say hello"}]
PIECES = ["Hel", "lo"]
FRESH = "ya29.fresh-ACCESS-token-0123456789"
TOKEN = Response(parts=(json.dumps({"access_token": FRESH, "expires_in": 3600, "token_type": "Bearer"}).encode(),),
                 content_type="application/json")


@pytest.fixture
def token_endpoint(monkeypatch):
    """Google's token endpoint on loopback; the credentials google-auth finds (expired, with
    a refresh token) refresh there."""
    with FakeProvider() as endpoint:
        def default(scopes=None, **kwargs):
            return Credentials(token=None, refresh_token="1//refresh", client_id="cid", client_secret="csecret",
                               token_uri=endpoint.base_url + "/token"), "adc-project"

        monkeypatch.setattr(google_auth, "default", default)
        yield endpoint


@pytest.fixture
def vertex(client):
    def make(**kwargs):
        return client("vertex", api_key=None, project="my-proj", location="us-central1", **kwargs)
    return make


def test_close_leaves_a_refresh_stuck_on_the_token_endpoint_at_once(server, vertex, token_endpoint):
    token_endpoint.enqueue(Response(parts=(Stall(timeout=30),), content_type="application/json"))
    stream = vertex().stream_chat(MESSAGES, model=MODEL)
    with stream:  # starts the stream
        assert token_endpoint.stalled.wait(5)
        started = time.monotonic()
    assert time.monotonic() - started < CLOSE_JOIN_SECONDS
    assert token_endpoint.connection_closed.wait(2)  # the refresh's socket is gone too
    assert server.requests == []  # nothing went to Vertex without a token


def test_a_total_deadline_ends_a_stuck_refresh_with_stream_timeout(server, vertex, token_endpoint):
    token_endpoint.enqueue(Response(parts=(Stall(timeout=30),), content_type="application/json"))
    started = time.monotonic()
    with pytest.raises(StreamTimeout):
        list(vertex(timeout=streamcoord.Timeout(total=0.5), max_retries=0).stream_chat(MESSAGES, model=MODEL))
    assert time.monotonic() - started < 2.0
    assert token_endpoint.connection_closed.wait(2)


def test_a_stuck_refresh_holds_up_no_other_stream(server, vertex, token_endpoint):
    stuck = threading.Event()
    token_endpoint.enqueue(Response(parts=(Stall(event=stuck, timeout=30),), content_type="application/json"), TOKEN)
    server.enqueue(gemini_text(PIECES, model=MODEL))
    client = vertex()
    first = client.stream_chat(MESSAGES, model=MODEL)
    try:
        with first:
            assert token_endpoint.stalled.wait(5)
            second = client.stream_chat(MESSAGES, model=MODEL, timeout=streamcoord.Timeout(total=5))
            assert "".join(chunk.content for chunk in second) == "Hello"  # while the first is stuck
            assert server.requests[0].headers["authorization"] == f"Bearer {FRESH}"
            assert not stuck.is_set()
    finally:
        stuck.set()
