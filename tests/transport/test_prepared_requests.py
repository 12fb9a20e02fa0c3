"""The request a stream sends is the one requests' ``Session.prepare_request`` makes for
the same session, byte for byte on the wire, whether it is built directly (a session with
nothing to merge) or by requests (cookies, auth, params, netrc credentials)."""

from __future__ import annotations

import pytest
import requests

import streamcoord
import streamcoord._prepare as prepare_module
from tests.support.rawserver import LAST_CHUNK, READ, Send, chunk, head, openai_events
from tests.transport._support import client_for, read_all


def answer():
    return [READ, Send(head(chunked=True, headers={"Connection": "close"}) + b"".join(chunk(e) for e in openai_events(["Hi"])) + LAST_CHUNK)]


def _with_headers() -> requests.Session:
    session = requests.Session()
    session.headers["X-Team"] = "blue"
    session.headers["User-Agent"] = None  # left out, as requests leaves it out (urllib3 adds its own)
    return session


def _with_cookie() -> requests.Session:
    session = streamcoord.new_session()
    session.cookies.set("sid", "abc123")
    return session


def _with_auth() -> requests.Session:
    session = streamcoord.new_session()
    session.auth = ("user", "pass")
    return session


def _with_params() -> requests.Session:
    session = streamcoord.new_session()
    session.params = {"api-version": "2024-10-21"}
    return session


SESSIONS = {
    "new_session": streamcoord.new_session,
    "requests.Session with headers": _with_headers,
    "a cookie in the jar": _with_cookie,
    "session auth": _with_auth,
    "session params": _with_params,
}


def sent_both_ways(raw, session, monkeypatch, **options):
    """The request as sent, built by ``prepared`` as it chooses, then by requests itself."""
    client = client_for(raw.base_url, session)
    raw.script(*answer()).script(*answer())
    assert read_all(client, **options) == "Hi"
    with monkeypatch.context() as patched:
        patched.setattr(prepare_module, "_merges_nothing", lambda session, url: False)
        assert read_all(client, **options) == "Hi"
    assert raw.wait_connections(2)
    return [conn.requests[0] for conn in raw.connections[:2]]


@pytest.mark.parametrize("kind", sorted(SESSIONS))
def test_a_stream_sends_what_prepare_request_makes_for_its_session(clean, raw, monkeypatch, kind):
    session = SESSIONS[kind]()
    try:
        ours, theirs = sent_both_ways(raw, session, monkeypatch, extra_headers={"X-Request-Id": "r-1"})
    finally:
        session.close()
    assert (ours.line, ours.headers, ours.body) == (theirs.line, theirs.headers, theirs.body)
    assert ours.headers["x-request-id"] == "r-1" and b'"model": "m"' in ours.body
    if kind == "requests.Session with headers":
        assert ours.headers["x-team"] == "blue" and "python-requests" not in ours.headers["user-agent"]
    if kind == "a cookie in the jar":
        assert ours.headers["cookie"] == "sid=abc123"
    if kind == "session params":
        assert "?api-version=2024-10-21 " in ours.line


def test_credentials_in_the_base_url_are_sent_as_requests_sends_them(clean, raw, monkeypatch):
    session = streamcoord.new_session()
    try:
        client = streamcoord.Client("openai", api_key="sk-test-SECRET-0123456789", session=session, max_retries=0,
                                    base_url=raw.base_url.replace("//", "//robot:hunter22@") + "/v1")
        raw.script(*answer()).script(*answer())
        assert read_all(client) == "Hi"
        with monkeypatch.context() as patched:
            patched.setattr(prepare_module, "_merges_nothing", lambda session, url: False)
            assert read_all(client) == "Hi"
        assert raw.wait_connections(2)
        ours, theirs = (conn.requests[0] for conn in raw.connections[:2])
    finally:
        session.close()
    assert (ours.line, ours.headers, ours.body) == (theirs.line, theirs.headers, theirs.body)
    assert ours.headers["authorization"].startswith("Basic ")  # requests' rule for a URL's user: it wins


def test_netrc_credentials_are_sent_as_requests_sends_them(clean, raw, monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login robot password hunter22\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    session = streamcoord.new_session()
    try:
        ours, theirs = sent_both_ways(raw, session, monkeypatch)
    finally:
        session.close()
    assert (ours.line, ours.headers, ours.body) == (theirs.line, theirs.headers, theirs.body)
    assert ours.headers["authorization"].startswith("Basic ")  # requests' netrc rule: it wins


def test_a_sessions_response_hooks_are_called_for_a_stream(clean, raw):
    seen = []
    session = streamcoord.new_session()
    session.hooks["response"].append(lambda response, **kwargs: seen.append(response.status_code))
    try:
        raw.script(*answer())
        assert read_all(client_for(raw.base_url, session)) == "Hi"
    finally:
        session.close()
    assert seen == [200]  # requests merges the session's hooks into every request it prepares
