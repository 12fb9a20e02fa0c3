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


def _signing(prepare):
    """A wrapper of ``prepare_request`` as a caller writes one: it adds a header."""
    def prepare_request(*args):
        request = prepare(*args)
        request.headers["X-Signature"] = "signed"
        return request
    return prepare_request


@pytest.mark.parametrize("where", ["the instance", "requests.Session"])
def test_a_callers_wrapper_of_prepare_request_runs_for_a_stream(clean, raw, monkeypatch, where):
    session = streamcoord.new_session()
    if where == "the instance":
        session.prepare_request = _signing(session.prepare_request)
    else:  # as mock.patch.object(requests.Session, "prepare_request", ...) does
        monkeypatch.setattr(requests.Session, "prepare_request", _signing(requests.Session.prepare_request))
    try:
        raw.script(*answer())
        assert read_all(client_for(raw.base_url, session)) == "Hi"
        assert raw.wait_connections(1)
    finally:
        session.close()
    assert raw.connections[0].requests[0].headers.get("x-signature") == "signed"


def test_a_callers_wrapper_of_request_on_the_instance_is_what_sends_a_stream(clean, raw):
    session = streamcoord.new_session()
    sent = []
    request = session.request

    def wrapped(*args, **kwargs):
        sent.append(args[:2])
        return request(*args, **kwargs)

    session.request = wrapped
    try:
        raw.script(*answer())
        assert read_all(client_for(raw.base_url, session)) == "Hi"
    finally:
        session.close()
    assert [method for method, _ in sent] == ["POST"]


def test_a_url_with_a_query_is_not_kept_once_its_request_is_sent():
    # A query may hold a secret (?api-key=, ?sig=): the prepared-URL cache must not keep it
    # for the life of the process, after the client that sent it is gone.
    session = streamcoord.new_session()
    try:
        request = prepare_module.prepared(session, "post", "http://127.0.0.1:9/v1/chat?sig=query-SECRET-42", {},
                                          {"model": "m"}, None, {"response": []})
    finally:
        session.close()
    assert request.url == "http://127.0.0.1:9/v1/chat?sig=query-SECRET-42"
    assert not any("query-SECRET-42" in kept for kept in prepare_module._urls)


def test_a_sessions_own_environment_merging_is_never_given_to_another_session():
    from streamcoord._environment import send_settings

    class Unverified(requests.Session):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            return dict(super().merge_environment_settings(url, proxies, stream, verify, cert), verify=False)

    url = "https://api.example.test/v1/chat/completions"
    special, plain = Unverified(), requests.Session()
    try:
        assert send_settings(special, url)["verify"] is False
        assert send_settings(plain, url)["verify"] == plain.merge_environment_settings(url, {}, True, plain.verify,
                                                                                       None)["verify"]
        assert send_settings(plain, url)["verify"] is not False
        assert send_settings(special, url)["verify"] is False  # in the other order too
    finally:
        special.close()
        plain.close()


def test_the_settings_cache_keeps_no_user_or_password_of_a_url():
    import streamcoord._environment as environment

    session = requests.Session()
    try:
        environment.send_settings(session, "https://robot:pw-SECRET-42@api.example.test/v1/chat")
    finally:
        session.close()
    assert "pw-SECRET-42" not in repr(list(environment._cache))
