"""Fixtures of the web tests: the example apps (Flask, Django) served by waitress, streaming
from the loopback FakeProvider so that every fault is scriptable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import streamcoord
from recovery_store import MemoryStore
from tests.conftest import API_KEY
from tests.web.support import serve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
for path in (EXAMPLES / "django_app", EXAMPLES):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

MODEL = "gpt-4o-mini"


def make_app(name):
    """The example's WSGI application, as its own entry point builds it."""
    if name == "flask":
        import flask_app

        return flask_app.create_app()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    from chatsite.wsgi import application

    return application


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def backend(server, store, monkeypatch, no_thread_leak):
    """The examples' backend, pointed at the FakeProvider (exact recovery: resume adds no rewind)."""
    import chat_common

    client = streamcoord.Client(
        "openai", api_key=API_KEY, base_url=server.base_url + "/v1", recovery_store=store, max_retries=0
    )
    options = {"model": MODEL, "track_metrics": True, "recovery": {"strategy": "exact"}}
    backend = chat_common.Backend(client, options, "the fake provider")
    monkeypatch.setattr(chat_common, "_backend", backend)
    return backend


@pytest.fixture(params=["flask", "django"])
def app_name(request):
    return request.param


@pytest.fixture
def app(app_name, backend):
    return make_app(app_name)


@pytest.fixture
def base_url(app):
    with serve(app) as url:
        yield url
