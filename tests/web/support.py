"""Helpers of the web tests: a real WSGI server (waitress, in this process) and a small SSE client."""

from __future__ import annotations

import gc
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import requests

from tests.conftest import streamcoord_threads


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve a WSGI app with waitress on a loopback port; yields its base URL.

    ``channel_request_lookahead=1`` makes waitress keep reading a connection while its
    request runs, so it sees a client close at once (what ``web.disconnect_probe`` reads).
    Shutdown closes every connection from inside waitress's loop (its trigger runs the
    function there), so the loop ends, then waits for the task threads.
    """
    import waitress

    # Objects left by earlier tests can close file descriptors when they are finalized;
    # let that happen before waitress opens its own (its wake-up pipe among them).
    gc.collect()
    server = waitress.create_server(
        app, host="127.0.0.1", port=0, threads=8, channel_request_lookahead=1, ident="streamcoord-tests"
    )
    thread = threading.Thread(target=server.run, name="waitress-loop", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        def close_everything() -> None:
            for dispatcher in list(server._map.values()):
                if hasattr(dispatcher, "outbufs"):
                    dispatcher.handle_close()  # a connection: also marks it disconnected for its task
                else:
                    dispatcher.close()  # the listening socket, the trigger

        try:
            server.trigger.pull_trigger(close_everything)
        except OSError:  # the loop already stopped and closed its trigger: close from here
            close_everything()
        thread.join(10)
        assert not thread.is_alive(), "waitress did not stop"
        server.task_dispatcher.shutdown(timeout=10)
        # Finalize what this server left behind now, not at a random moment during the next
        # test (asyncore's file wrappers close their fd in __del__).
        gc.collect()


@dataclass
class Event:
    event: str
    data: str
    id: Optional[str]

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEClient:
    """GET an event stream with requests (stream=True) and parse it per the SSE rules we use:
    LF line ends, ``field: value`` lines, ``:`` comments, a blank line ends an event."""

    url: str
    headers: Dict[str, str] = field(default_factory=dict)
    comments: List[str] = field(default_factory=list)
    retry: Optional[int] = None

    def __post_init__(self) -> None:
        self.session = requests.Session()  # its own: closing it really closes the socket
        self.response = self.session.get(self.url, headers=self.headers, stream=True, timeout=10)
        self._lines = self._iter_lines()

    def _iter_lines(self) -> Iterator[str]:
        buffer = b""
        for data in self._reads():
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode("utf-8")

    def _reads(self) -> Iterator[bytes]:
        """Whatever the network delivered, as soon as it did: chunk by chunk for a chunked
        answer (waitress); for a close-delimited one (Django's runserver) read1, since a
        plain read would wait for the end of the body."""
        raw = self.response.raw
        if raw.chunked:
            yield from raw.stream(None)
            return
        while True:
            data = raw.read1(65536)
            if not data:
                return
            yield data

    def events(self) -> Iterator[Event]:
        fields: Dict[str, List[str]] = {}
        for line in self._lines:
            if line == "":
                if "data" in fields:
                    ids = fields.get("id")
                    yield Event(fields.get("event", ["message"])[-1], "\n".join(fields["data"]), ids[-1] if ids else None)
                fields = {}
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "retry":
                    self.retry = int(value)
                else:
                    fields.setdefault(name, []).append(value)

    def close(self) -> None:
        self.response.close()
        self.session.close()


def read_answer(events: Iterator[Event], text: str = "", stop_after: Optional[int] = None) -> "tuple[str, List[Event]]":
    """Apply events the way the page does (append content, drop rewinds) until ``done`` or
    ``error`` (or ``stop_after`` content events); checks every id against the text length.
    Returns the text and the events, less the periodic ``metrics`` ones (their number
    depends on how long the answer took)."""
    seen: List[Event] = []
    contents = 0
    for event in events:
        if event.event == "metrics":
            assert event.json()["status"] == "streaming"
            continue
        seen.append(event)
        if event.event == "message":
            text += event.json()["content"]
            contents += 1
        elif event.event == "rewind":
            text = text[: len(text) - event.json()["rewind"]]
        if event.id is not None:
            assert int(event.id) == len(text), (event, len(text))
        if event.event in ("done", "error") or (stop_after is not None and contents >= stop_after):
            break
    return text, seen


def wait_for_no_worker_threads(timeout: float) -> List[str]:
    """Names of streamcoord worker threads still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for thread in streamcoord_threads():
        thread.join(max(deadline - time.monotonic(), 0.0))
    return [t.name for t in streamcoord_threads() if t.is_alive()]
