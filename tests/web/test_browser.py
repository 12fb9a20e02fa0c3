"""A real browser: headless Chromium (Debian's chromium + chromium-driver, driven by selenium)
opens the Flask example's page, served by waitress and answering from the embedded demo
provider, and the answer must render completely and correctly: through a recovery on the
server (the demo drops its first upstream connection mid-answer) and through a break of the
page's own connection (EventSource reconnects with Last-Event-ID, the server resumes)."""

from __future__ import annotations

import pytest

from recovery_store import MemoryStore
from streamcoord._demo import DEMO_ANSWER
from tests.web.conftest import WAIT_SECONDS
from tests.web.support import serve, wait_for_no_worker_threads


@pytest.fixture
def demo_backend(monkeypatch, no_thread_leak):
    import chat_common

    def make(drops):
        backend = chat_common.Backend.demo(delay=0.01, drops=drops, recovery_store=MemoryStore())
        monkeypatch.setattr(chat_common, "_backend", backend)
        made.append(backend)
        return backend

    made = []
    yield make
    for backend in made:
        backend.close()


class CutOnce:
    """WSGI middleware that ends the first event stream after ``after`` content events, the
    way a proxy or a flaky network drops a connection; records each Last-Event-ID sent."""

    def __init__(self, app, after):
        self.app = app
        self.after = after
        self.cut = False
        self.last_event_ids = []

    def __call__(self, environ, start_response):
        body = self.app(environ, start_response)
        if environ["PATH_INFO"] != "/chat/events":
            return body
        self.last_event_ids.append(environ.get("HTTP_LAST_EVENT_ID"))
        if self.cut:
            return body
        self.cut = True
        return self._cut(body)

    def _cut(self, body):
        contents = 0
        try:
            for data in body:
                yield data
                contents += data.count(b'data: {"content"')
                if contents >= self.after:
                    return
        finally:
            body.close()


def ask_and_wait(driver, base_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base_url + "/")
    driver.find_element(By.ID, "send").click()
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error")
    )
    def text(element_id):
        return driver.find_element(By.ID, element_id).get_property("textContent")

    def metric(name):
        return driver.find_element(By.CSS_SELECTOR, f'dd[data-metric="{name}"]').get_property("textContent")

    return text, metric


def test_the_page_renders_an_answer_recovered_on_the_server(browser, demo_backend, tmp_path):
    import flask_app

    demo_backend(drops=1)  # the demo drops its first upstream connection part-way
    with serve(flask_app.create_app()) as base_url:
        text, metric = ask_and_wait(browser, base_url)
        screenshot = tmp_path / "chat.png"
        assert browser.save_screenshot(str(screenshot))

    assert text("status").startswith("Done"), text("status")
    assert text("answer") == DEMO_ANSWER
    assert int(text("rewinds")) == 1  # the recovery's rewind reached the page and was applied
    assert metric("recoveries") == "1" and metric("status") == "completed"
    assert int(text("chars")) == len(DEMO_ANSWER)
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one
    assert wait_for_no_worker_threads(2) == []


def test_the_page_resumes_after_its_own_connection_breaks(browser, demo_backend, tmp_path):
    import flask_app

    demo_backend(drops=0)
    app = CutOnce(flask_app.create_app(), after=20)
    with serve(app) as base_url:
        text, metric = ask_and_wait(browser, base_url)
        browser.save_screenshot(str(tmp_path / "chat-resumed.png"))

    assert text("status").startswith("Done"), text("status")
    assert text("answer") == DEMO_ANSWER
    assert text("reconnects") == "1"
    first, second = app.last_event_ids
    assert first is None and int(second) > 0  # the browser said how much it had; the server resumed there
    assert wait_for_no_worker_threads(2) == []
