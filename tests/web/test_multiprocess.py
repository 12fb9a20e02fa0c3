"""The examples under a multi-process server: two waitress processes sharing a DiskStore,
behind a round-robin loopback proxy (tests/support/proxy.py), streaming from the
FakeProvider in this process, which counts the generation requests.

A headless Chromium whose event stream the proxy drops mid-answer reconnects to the other
process, follows the same generation there and shows the exact answer: the provider got
one request. The Stop endpoint, reached through the other process, stops the generation
within a second.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from tests.support.fakeserver import Gate, openai_text
from tests.support.proxy import EVENTS_PATH, RoundRobinProxy
from tests.web.conftest import WAIT_SECONDS
from tests.web.support import SSEClient, read_answer
from tests.web.test_apps import FULL, PIECES, events_url

REPO_ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 30.0  # a bound for a broken test, never reached by a passing one

# One server process: the example app (as its WSGI entry point builds it), served by
# waitress on a free port, which it prints.
SERVE_SCRIPT = """
import os, sys
sys.path[:0] = [os.path.join("examples", "django_app"), "examples"]
from waitress import create_server
if sys.argv[1] == "flask":
    import flask_app
    app = flask_app.create_app()
else:
    from chatsite.wsgi import application as app
server = create_server(app, host="127.0.0.1", port=0, threads=8, channel_request_lookahead=1)
print(server.effective_port, flush=True)
server.run()
"""


@pytest.fixture
def processes(server, tmp_path):
    """Start two server processes of an example; yields their (host, port)s."""
    started = []

    def start(app_name):
        env = dict(
            os.environ, STREAMCOORD_PROVIDER="openai", OPENAI_API_KEY="sk-test", STREAMCOORD_MODEL="gpt-4o-mini",
            STREAMCOORD_BASE_URL=server.base_url + "/v1", STREAMCOORD_RECOVERY_DIR=str(tmp_path / "store"),
            PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )
        env.pop("REDIS_URL", None)
        for i in range(2):
            with open(tmp_path / f"server-{i}.log", "w") as log:  # the child has its own copy
                proc = subprocess.Popen(
                    [sys.executable, "-c", SERVE_SCRIPT, app_name], cwd=str(REPO_ROOT), env=env, text=True,
                    stdout=subprocess.PIPE, stderr=log,
                )
            started.append(proc)
        return [("127.0.0.1", _port(proc, tmp_path / f"server-{i}.log")) for i, proc in enumerate(started)]

    yield start
    for proc in started:
        proc.kill()
        proc.wait(START_SECONDS)
        proc.stdout.close()


def _port(proc, log):
    found = []
    reader = threading.Thread(target=lambda: found.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_SECONDS)
    if not found or not re.fullmatch(r"[0-9]+\n", found[0]):
        proc.kill()
        pytest.fail(f"the server process did not start: {log.read_text()[-2000:]}")
    return int(found[0])


@pytest.fixture
def proxy():
    made = []

    def make(backends, **kwargs):
        made.append(RoundRobinProxy(backends, **kwargs))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_a_browser_cut_off_mid_answer_reconnects_to_the_other_process_and_shows_the_exact_answer(
    browser, server, processes, proxy
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    gate = threading.Event()
    server.enqueue(openai_text(PIECES, stall_after=4, stall=Gate(gate, timeout=WAIT_SECONDS)))
    front = proxy(processes("flask"), cut_after=1)
    browser.get(front.url + "/")
    browser.find_element(By.ID, "send").click()
    assert front.reconnected.wait(WAIT_SECONDS), "the browser never reconnected"
    gate.set()  # the rest of the answer is generated only now, after the cut
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error")
    )

    def text(element_id):
        return browser.find_element(By.ID, element_id).get_property("textContent")

    assert text("status").startswith("Done"), text("status")
    assert text("answer") == FULL
    assert text("reconnects") == "1" and front.cut.is_set()
    first, second = [route for route in front.routes if route.path == EVENTS_PATH]
    assert first.last_event_id is None and 0 < int(second.last_event_id) < len(FULL)
    assert first.backend != second.backend, "the reconnect landed on the same process"
    assert len(server.requests) == 1, "one generation, whichever process the browser reached"


def test_the_stop_endpoint_in_another_process_stops_the_generation_within_a_second(server, processes, proxy):
    gate = threading.Event()
    server.enqueue(openai_text(PIECES, stall_after=3, stall=Gate(gate)))
    front = proxy(processes("django"))
    client = SSEClient(events_url(front.url, "stop-mp"))
    try:
        events = client.events()
        shown, _ = read_answer(events, stop_after=1)
        assert requests.post(f"{front.url}/chat/cancel?stream_id=stop-mp", timeout=10).status_code == 204
        assert server.connection_closed.wait(1.0), "the producer still generates 1 s after Stop returned"
        text, seen = read_answer(events, text=shown)
        assert seen[-1].event == "done" and FULL.startswith(text)
    finally:
        client.close()
        gate.set()
    events_route, cancel_route = front.routes
    assert events_route.backend != cancel_route.backend  # Stop was served by the other process
    assert len(server.requests) == 1
