"""Redirects: only a 307/308 to the same origin is followed (at most 5); everything else
is an APIError naming the status and the location, and no credential header ever
reaches another origin."""

from __future__ import annotations

import pytest

import streamcoord
from tests.conftest import API_KEY
from tests.support.rawserver import READ, Close, RawServer, Send, head, sse_body
from tests.transport._support import client_for, read_all

BODY = sse_body(["Hi", " there"])


def answer() -> Send:
    return Send(head(length=len(BODY)) + BODY)


def redirect(status: int, location: str) -> Send:
    return Send(head(status, {"Location": location}, length=0, content_type=""))


@pytest.mark.parametrize("status", [307, 308])
def test_same_origin_307_308_is_followed_with_method_body_and_key(clean, raw, session, status):
    raw.script(READ, redirect(status, "/v2/chat/completions"), READ, answer(), Close())
    assert read_all(client_for(raw.base_url, session)) == "Hi there"
    first, second = raw.connections[0].requests
    assert second.line.startswith("POST /v2/chat/completions ")
    assert second.body == first.body
    assert second.headers["authorization"] == f"Bearer {API_KEY}"


def test_a_chain_of_five_redirects_is_followed_and_a_sixth_is_refused(clean, raw, session):
    hops = []
    for i in range(5):
        hops += [READ, redirect(307, f"/hop{i}")]
    raw.script(*hops, READ, answer(), Close())
    assert read_all(client_for(raw.base_url, session)) == "Hi there"
    raw.script(*hops, READ, redirect(307, "/hop-six"), Close())
    with pytest.raises(streamcoord.APIError, match="more than 5 redirects") as caught:
        read_all(client_for(raw.base_url, session))
    assert caught.value.status == 307


@pytest.mark.parametrize("status", [301, 302, 303])
def test_other_redirects_are_an_api_error_naming_status_and_location(clean, raw, session, status):
    raw.script(READ, redirect(status, "/moved?token=s3cret&x=1"), Close())
    seen = []
    with pytest.raises(streamcoord.APIError) as caught:
        read_all(client_for(raw.base_url, session, retries=2), on_error=lambda status, body: seen.append(status))
    assert seen == [status]  # on_error hears of every non-2xx answer
    message = str(caught.value)
    assert str(status) in message and "/moved?token=...&x=..." in message
    assert "s3cret" not in message
    assert caught.value.status == status
    assert len(raw.connections) == 1 and len(raw.connections[0].requests) == 1  # neither followed nor retried


@pytest.mark.parametrize("header", ["Authorization", "x-api-key", "x-goog-api-key", "api-key"])
def test_redirect_to_another_origin_is_refused_and_the_key_never_reaches_it(clean, raw, session, header):
    with RawServer() as other:
        other.script(READ, answer(), Close())
        raw.script(READ, redirect(307, other.base_url + "/steal"), Close())
        client = client_for(raw.base_url, session)
        with pytest.raises(streamcoord.APIError, match="another origin") as caught:
            read_all(client, extra_headers={header: "k-" + API_KEY})
        assert other.base_url in str(caught.value)
    assert other.connections == []


def test_redirect_from_https_to_http_on_the_same_host_is_another_origin(clean, tls_raw, ca_file):
    import requests

    session = requests.Session()
    session.verify = ca_file
    tls_raw.script(READ, redirect(308, f"http://127.0.0.1:{tls_raw.port}/v1/chat/completions"), Close())
    with pytest.raises(streamcoord.APIError, match="another origin"):
        read_all(client_for(tls_raw.base_url, session))
    session.close()


@pytest.mark.parametrize("location, words", [
    ("/v1/chat/completions", "loop"),
    ("gopher://127.0.0.1/x", "not an http"),
    ("http://127.0.0.1:notaport/", "not a valid URL"),
    ("http://[::1/", "not a valid URL"),
    ("", "no address"),
])
def test_loops_and_bad_locations_are_an_api_error_not_a_value_error(clean, raw, session, location, words):
    raw.script(READ, redirect(307, location) if location else Send(head(307, length=0)), Close())
    with pytest.raises(streamcoord.APIError, match=words):
        read_all(client_for(raw.base_url, session))
