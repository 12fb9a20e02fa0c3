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
from tests.support.environment import CHROMEDRIVER, CHROMIUM, browser_missing
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


# No background traffic: this machine has no network, and Chromium would keep trying.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1100,1000",
]
WAIT_SECONDS = 60


@pytest.fixture
def browser(tmp_path):
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
