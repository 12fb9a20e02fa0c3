"""The proxy settings requests takes from the environment are looked up once per origin
and environment (``_environment``), and still follow the environment: a proxy set or
removed between two streams is used, or not, by the next one."""

from __future__ import annotations

import requests

import streamcoord._environment as environment_module
from tests.support.rawserver import LAST_CHUNK, READ, Send, chunk, head, openai_events
from tests.transport._support import client_for, read_all


def no_proxy_variables(monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def answer():
    return [READ, Send(head(chunked=True, headers={"Connection": "close"}) + b"".join(chunk(e) for e in openai_events(["Hi"])) + LAST_CHUNK)]


def test_a_proxy_set_in_the_environment_between_two_streams_carries_the_second(clean, raw, proxy, session, monkeypatch):
    no_proxy_variables(monkeypatch)
    client = client_for(raw.base_url, session)
    raw.script(*answer()).script(*answer()).script(*answer())
    assert read_all(client) == "Hi"
    assert proxy.lines == []
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert read_all(client) == "Hi"
    assert len(proxy.lines) == 1 and proxy.lines[0].startswith("POST http://127.0.0.1")
    monkeypatch.delenv("HTTP_PROXY")
    assert read_all(client) == "Hi"
    assert len(proxy.lines) == 1


def test_a_system_proxy_set_between_two_streams_carries_the_second(clean, raw, proxy, session, monkeypatch):
    # macOS and Windows: with no proxy variable, urllib's getproxies reads the system's
    # settings (stood in for here), which the user may change while the process runs.
    no_proxy_variables(monkeypatch)
    monkeypatch.setattr(environment_module, "SYSTEM_PROXY_SETTINGS", True)
    system = {}
    monkeypatch.setattr(requests.utils, "getproxies", lambda: dict(system))
    client = client_for(raw.base_url, session)
    raw.script(*answer()).script(*answer()).script(*answer())
    assert read_all(client) == "Hi" and proxy.lines == []
    system["http"] = proxy.url
    assert read_all(client) == "Hi"
    assert len(proxy.lines) == 1 and proxy.lines[0].startswith("POST http://127.0.0.1")
    system.clear()
    assert read_all(client) == "Hi" and len(proxy.lines) == 1
