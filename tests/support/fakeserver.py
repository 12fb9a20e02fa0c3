"""Scriptable loopback fake LLM-provider HTTP server for the test suite (stdlib only).

Usage::

    from tests.support.fakeserver import FakeProvider, Stall, Drop, openai_text, error

    with FakeProvider() as server:
        server.enqueue(error(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"}),
                       openai_text(["Hel", "lo"], usage=True))
        url = server.base_url + "/v1/chat/completions"
        ...                                   # run the client against url
        assert server.wait_for_requests(2)
        assert server.requests[1].json["stream"] is True

Each request (any method, any path) pops the next scripted ``Response`` (FIFO); with an empty
queue ``server.default`` is used, else a 500 JSON error. A ``Response`` is a status, headers and
``parts``: ``bytes`` (one HTTP chunk each when ``chunked``), ``Stall`` (pause until an event,
server close or timeout; a client disconnect is noticed while stalled), ``Gate`` (pause until an
event, for synchronising tests) and ``Drop`` (abort the connection mid-body, no final chunk).
Builders (``openai_text``, ``anthropic_text``, ``gemini_text``, ``ollama_text``,
``mistral_text``, ``sse``, ``raw_file``, ``error``) emit each provider's recorded wire format;
the text builders take ``drop_after=N`` / ``stall_after=N`` to break the stream after N pieces
(``drop=Drop(reset=True)`` / ``stall=Stall(event)`` choose the object inserted).
Observe with ``server.stalled``, ``server.connection_closed`` (Events),
``wait_for_requests(n)``, ``wait_for_responses_finished(n)`` and ``server.outcomes``.
"""
from __future__ import annotations

import datetime
import json
import os
import random
import select
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "FakeProvider", "Response", "Stall", "Gate", "Drop", "RecordedRequest",
    "sse", "openai_text", "anthropic_text", "gemini_text", "ollama_text", "mistral_text",
    "error", "raw_file",
]


# --------------------------------------------------------------------------- script objects
@dataclass(frozen=True)
class Stall:
    """Stop sending until ``event`` is set, the server closes, or ``timeout`` s (None: no limit)
    pass; then go on with the remaining parts. Sets ``server.stalled`` on entry. If the client
    closes the connection meanwhile, ``server.connection_closed`` is set and the handler stops."""
    event: Optional[threading.Event] = None
    timeout: Optional[float] = 30.0


@dataclass(frozen=True)
class Gate:
    """Like ``Stall`` but meant for test synchronisation: does not set ``server.stalled``."""
    event: threading.Event
    timeout: Optional[float] = 30.0


@dataclass(frozen=True)
class Drop:
    """Abort the connection here, without the terminating chunk. ``reset=True`` sends an RST
    (SO_LINGER 0) instead of a FIN."""
    reset: bool = False


Part = Union[bytes, Stall, Gate, Drop]


@dataclass(frozen=True)
class Response:
    """A re-playable scripted answer. Framing: ``chunked=True`` -> one HTTP chunk per bytes part;
    ``chunked=False`` -> raw bytes and ``Connection: close``, unless ``headers`` carry a
    Content-Length (then keep-alive)."""
    status: int = 200
    headers: Optional[Mapping[str, str]] = None
    parts: Sequence[Part] = ()
    chunked: bool = True
    content_type: Optional[str] = "text/event-stream"

    def __post_init__(self) -> None:
        parts = (self.parts,) if isinstance(self.parts, (bytes, Stall, Gate, Drop)) else self.parts
        parts = tuple(bytes(p) if isinstance(p, (bytearray, memoryview)) else p for p in parts)
        for p in parts:
            if not isinstance(p, (bytes, Stall, Gate, Drop)):
                raise TypeError("Response parts must be bytes, Stall, Gate or Drop, not %r" % (p,))
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "headers", dict(self.headers or {}))


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str                       # without the query string
    query: Dict[str, str]           # last value wins for repeated keys
    headers: Dict[str, str]         # keys lower-cased
    body: bytes
    json: Any = field(default=None)  # parsed body, or None when absent / not JSON


# --------------------------------------------------------------------------- the server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "fakeserver/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # silence the access log
        pass

    def __getattr__(self, name: str) -> Any:  # do_GET, do_POST, ... any method
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():  # (trailers unsupported)
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                body += self.rfile.read(size) + self.rfile.readline()[:0]
                if size == 0:
                    return body
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        owner: FakeProvider = self.server.owner  # type: ignore[attr-defined]
        body = self._read_body()
        url = urlsplit(self.path)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        owner._record(RecordedRequest(
            method=self.command, path=url.path, query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()}, body=body, json=parsed))
        self._respond(owner, owner._next_response())

    def _respond(self, owner: "FakeProvider", resp: Response) -> None:
        outcome = "complete"
        try:
            headers = {k.lower(): (k, v) for k, v in resp.headers.items()}
            framing = "chunked" if resp.chunked else ("length" if "content-length" in headers else "close")
            self.send_response(resp.status)
            if resp.content_type and "content-type" not in headers:
                self.send_header("Content-Type", resp.content_type)
            if framing == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
            elif framing == "close":
                self.send_header("Connection", "close")
            for k, v in headers.values():
                self.send_header(k, v)
            self.end_headers()
            for part in resp.parts:
                if isinstance(part, bytes):
                    if part:  # an empty chunk would end the body
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if framing == "chunked" else part)
                elif isinstance(part, Drop):
                    self._drop(part.reset)
                    outcome = "dropped"
                    break
                else:
                    if isinstance(part, Stall):
                        owner.stalled_at = time.monotonic()  # everything before it is on the wire
                        owner.stalled.set()
                    outcome = self._wait(owner, part.event, part.timeout)
                    if outcome != "complete":
                        break
            else:
                if framing == "chunked":
                    self.wfile.write(b"0\r\n\r\n")
        except OSError:  # BrokenPipe, ConnectionReset, EBADF after close()...
            outcome = "server_closed" if owner._closing.is_set() else "client_closed"
        finally:
            if outcome != "complete":
                self.close_connection = True
            if outcome == "client_closed":
                owner.connection_closed.set()
            owner._finished(outcome)

    def _wait(self, owner: "FakeProvider", event: Optional[threading.Event], timeout: Optional[float]) -> str:
        """Pause; returns "complete" to go on, "client_closed" or "server_closed" to stop."""
        clock = threading.Event()  # only for a short back-off when the client sent bytes
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self.connection
        while True:
            if event is not None and event.is_set():
                return "complete"
            if owner._closing.is_set():
                return "server_closed"
            wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if wait <= 0:
                return "complete"
            try:
                readable = select.select([sock], [], [], wait)[0]
                peeked = sock.recv(1, socket.MSG_PEEK) if readable else None
            except (OSError, ValueError):
                peeked = b""
            if peeked == b"":
                return "server_closed" if owner._closing.is_set() else "client_closed"
            if peeked:  # pipelined bytes from the client: don't spin on a readable socket
                clock.wait(wait)

    def _drop(self, reset: bool) -> None:
        sock = self.connection
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.rfile.close()  # drop the makefile() reference so close() really closes the fd
        sock.close()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, owner: "FakeProvider") -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:  # skip HTTPServer's getfqdn(): it can do a slow DNS lookup
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             name="fakeserver-conn", daemon=True)
        self.owner._track(request, t)
        t.start()

    def shutdown_request(self, request: Any) -> None:
        self.owner._untrack(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.owner._closing.is_set():
            return  # client went away / server closing: not an error
        self.owner.errors.append(exc)
        traceback.print_exc()  # a bug in the fake server itself: make it visible


class FakeProvider:
    """Loopback HTTP/1.1 server answering scripted ``Response``s. Context manager."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list = []
        self._requests: list = []
        self._finished_count = 0
        self.outcomes: list = []  # per response: complete | dropped | client_closed | server_closed
        self.errors: list = []    # unexpected exceptions in handlers (should stay empty)
        self.default: Optional[Response] = None
        self.stalled = threading.Event()
        self.stalled_at: Optional[float] = None  # time.monotonic() when a Stall last began
        self.connection_closed = threading.Event()
        self._closing = threading.Event()
        self._conns: set = set()
        self._threads: list = []
        self._httpd: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # lifecycle
    def start(self) -> "FakeProvider":
        if self._httpd is None:
            if self._closing.is_set():
                raise ValueError("FakeProvider was closed; create a new one")
            self._httpd = _Server(self)
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                            name="fakeserver", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        with self._cond:
            if self._closing.is_set():
                return
            self._closing.set()  # releases every Stall / Gate
            self._cond.notify_all()
        if self._httpd is None:
            return
        self._httpd.shutdown()  # no more accepts; afterwards the connection set is final
        with self._cond:
            conns, threads = list(self._conns), list(self._threads)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes handlers blocked reading or writing
            except OSError:
                pass
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join()
        for t in threads:
            t.join(10)

    def __enter__(self) -> "FakeProvider":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise ValueError("FakeProvider is not started: use start() or a with block")
        return "http://127.0.0.1:%d" % self._httpd.server_address[1]

    # scripting
    def enqueue(self, *responses: Response) -> "FakeProvider":
        for r in responses:
            if not isinstance(r, Response):
                raise TypeError("enqueue() takes Response objects, got %r" % (r,))
        with self._cond:
            self._queue.extend(responses)
        return self

    def _next_response(self) -> Response:
        with self._cond:
            if self._queue:
                return self._queue.pop(0)
        return self.default if self.default is not None else _NO_SCRIPT

    # observation
    @property
    def requests(self) -> list:
        with self._cond:
            return list(self._requests)

    @property
    def responses_finished(self) -> int:
        with self._cond:
            return self._finished_count

    def wait_for_requests(self, n: int, timeout: float = 5) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._requests) >= n, timeout)

    def wait_for_responses_finished(self, n: int, timeout: float = 5) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._finished_count >= n, timeout)

    def serves_on(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is one of this server's connection handlers (they end a moment
        after the client closes: a test counting its own threads leaves them out)."""
        with self._cond:
            return thread in self._threads

    def _record(self, req: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()

    def _finished(self, outcome: str) -> None:
        with self._cond:
            self._finished_count += 1
            self.outcomes.append(outcome)
            self._cond.notify_all()

    def _track(self, sock: socket.socket, thread: threading.Thread) -> None:
        with self._cond:
            self._conns.add(sock)
            if len(self._threads) > 64:  # forget threads that have fully exited
                self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _untrack(self, sock: socket.socket) -> None:
        with self._cond:
            self._conns.discard(sock)


# --------------------------------------------------------------------------- builders
def _dumps(obj: Any, separators: Tuple[str, str] = (",", ":")) -> str:
    return json.dumps(obj, separators=separators, ensure_ascii=False)


def _sse_event(data: str, event: Optional[str] = None, eol: str = "\n") -> bytes:
    head = "event: %s%s" % (event, eol) if event is not None else ""
    lines = "".join("data: %s%s" % (line, eol) for line in data.split("\n"))
    return (head + lines + eol).encode("utf-8")


def _assemble(head: list, pieces: list, tail: list, kw: Dict[str, Any]) -> Response:
    """head + pieces + tail as a Response, with the fault kwargs every text builder takes:
    ``drop_after=N`` (``drop``, default ``Drop()``, after the N-th piece, instead of the tail) and
    ``stall_after=N`` (``stall``, default ``Stall()``, after the N-th piece). Other kw go to Response."""
    drop_after, stall_after = kw.pop("drop_after", None), kw.pop("stall_after", None)
    stall, drop = kw.pop("stall", None), kw.pop("drop", None)
    for name, n in (("drop_after", drop_after), ("stall_after", stall_after)):
        if n is not None and not 0 <= n <= len(pieces):
            raise ValueError("%s=%r must be between 0 and the number of pieces (%d)" % (name, n, len(pieces)))
    parts = list(head)
    for i in range(len(pieces) + 1):
        if i == stall_after:
            parts.append(stall if stall is not None else Stall())
        if i == drop_after:
            return Response(parts=tuple(parts) + (drop if drop is not None else Drop(),), **kw)
        if i < len(pieces):
            parts.append(pieces[i])
    return Response(parts=tuple(parts + list(tail)), **kw)


def sse(events: Sequence[Any], done: bool = False, **kw: Any) -> Response:
    """One part per event: ``str`` data, ``dict``/``list`` (JSON), ``(event_name, payload)``, or
    ``bytes`` sent verbatim (e.g. ``b": keep-alive\\n\\n"``). ``done=True`` appends [DONE]."""
    parts = []
    for ev in list(events) + (["[DONE]"] if done else []):
        if isinstance(ev, bytes):
            parts.append(ev)
            continue
        name, payload = ev if isinstance(ev, tuple) else (None, ev)
        parts.append(_sse_event(payload if isinstance(payload, str) else _dumps(payload), name))
    return Response(parts=tuple(parts), **kw)


def openai_text(pieces: Sequence[str], model: str = "gpt-4o-mini", finish_reason: Optional[str] = "stop",
                usage: Any = None, done: bool = True, id: str = "chatcmpl-test", **kw: Any) -> Response:
    """OpenAI chat.completion.chunk stream. ``usage``: dict, True (computed) or None (no usage
    chunk). ``finish_reason=None`` omits the finish chunk."""
    def chunk(choices: list, **extra: Any) -> bytes:
        obj = {"id": id, "object": "chat.completion.chunk", "created": 1727346168, "model": model,
               "system_fingerprint": "fp_fakeserver", "choices": choices}
        obj.update(extra)
        return _sse_event(_dumps(obj))

    def choice(delta: dict, finish: Optional[str] = None) -> list:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    if usage is True:
        usage = {"prompt_tokens": 10, "completion_tokens": len(pieces), "total_tokens": 10 + len(pieces),
                 "completion_tokens_details": {"reasoning_tokens": 0}}
    tail = [chunk(choice({}, finish_reason))] if finish_reason is not None else []
    tail += [chunk([], usage=usage)] if usage else []
    tail += [_sse_event("[DONE]")] if done else []
    return _assemble([chunk(choice({"role": "assistant", "content": "", "refusal": None}))],
                     [chunk(choice({"content": p})) for p in pieces], tail, kw)


def mistral_text(pieces: Sequence[str], model: str = "mistral-small-latest", finish_reason: Optional[str] = "stop",
                 usage: Optional[dict] = None, done: bool = True, id: str = "5c0f2bb1d6e24b8c9a7e3f1d2c4b6a80",
                 **kw: Any) -> Response:
    """Mistral stream: usage rides in the finish_reason chunk, then [DONE]."""
    def chunk(delta: dict, finish: Optional[str] = None, **extra: Any) -> bytes:
        obj = {"id": id, "object": "chat.completion.chunk", "created": 1724786681, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        obj.update(extra)
        return _sse_event(_dumps(obj))

    if usage is None:
        usage = {"prompt_tokens": 10, "total_tokens": 10 + len(pieces), "completion_tokens": len(pieces)}
    tail = [chunk({"content": ""}, finish_reason, usage=usage)] if finish_reason is not None else []
    tail += [_sse_event("[DONE]")] if done else []
    return _assemble([chunk({"role": "assistant", "content": ""})], [chunk({"content": p}) for p in pieces],
                     tail, kw)


def anthropic_text(pieces: Sequence[str], model: str = "claude-sonnet-4-5", stop_reason: Optional[str] = "end_turn",
                   input_tokens: int = 10, output_tokens: Optional[int] = None, id: str = "msg_fakeserver",
                   **kw: Any) -> Response:
    """Anthropic Messages stream, with the ping and the space padding inside the JSON objects
    that the real API sends. ``stop_reason=None`` omits message_delta and message_stop."""
    count = [0]

    def ev(name: str, obj: dict) -> bytes:
        count[0] += 1
        text = _dumps(obj)
        return _sse_event(text[:-1] + " " * (2 + count[0] * 5 % 13) + "}", name)

    out = len(pieces) if output_tokens is None else output_tokens
    cache = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    head = [
        ev("message_start", {"type": "message_start", "message": {
            "model": model, "id": id, "type": "message", "role": "assistant", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {
                "input_tokens": input_tokens, **cache,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 1, "service_tier": "standard", "inference_geo": "not_available"}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}}),
        _sse_event(json.dumps({"type": "ping"}), "ping"),
    ]
    body = [ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": p}}) for p in pieces]
    tail = [ev("content_block_stop", {"type": "content_block_stop", "index": 0})]
    if stop_reason is not None:
        tail += [ev("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                      "usage": {"input_tokens": input_tokens, **cache, "output_tokens": out}}),
                 ev("message_stop", {"type": "message_stop"})]
    return _assemble(head, body, tail, kw)


def gemini_text(pieces: Sequence[str], finish_reason: Optional[str] = "STOP", model: str = "gemini-2.0-flash",
                prompt_tokens: int = 10, response_id: str = "fakeserver-response", **kw: Any) -> Response:
    """Gemini streamGenerateContent?alt=sse: CRLF line ends, no [DONE]; finishReason and the full
    usageMetadata ride on the last piece (never when ``drop_after`` is given)."""
    pieces = list(pieces) or [""]
    finish = None if kw.get("drop_after") is not None else finish_reason
    details = [{"modality": "TEXT", "tokenCount": prompt_tokens}]

    def chunk(i: int, text: str) -> bytes:
        cand: Dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
        usage: Dict[str, Any] = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens,
                                 "promptTokensDetails": details}
        if i == len(pieces) - 1 and finish is not None:
            cand["finishReason"] = finish
            n = len(pieces)
            usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": n,
                     "totalTokenCount": prompt_tokens + n, "promptTokensDetails": details,
                     "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": n}]}
        obj = {"candidates": [cand], "usageMetadata": usage, "modelVersion": model, "responseId": response_id}
        return _sse_event(_dumps(obj, (",", ": ")), eol="\r\n")

    return _assemble([], [chunk(i, p) for i, p in enumerate(pieces)], [], kw)


def ollama_text(pieces: Sequence[str], model: str = "llama3", done_reason: Optional[str] = "stop",
                prompt_eval_count: int = 10, **kw: Any) -> Response:
    """Ollama /api/chat NDJSON. ``done_reason=None`` omits the final done:true line."""
    start = datetime.datetime(2024, 5, 24, 20, 26, 46, 294874)

    def line(i: int, content: str, **extra: Any) -> bytes:
        stamp = (start + datetime.timedelta(microseconds=32437 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        obj = {"model": model, "created_at": stamp, "message": {"role": "assistant", "content": content}}
        obj.update(extra)
        return (_dumps(obj) + "\n").encode("utf-8")

    n = len(pieces)
    tail = [line(n, "", done_reason=done_reason, done=True, total_duration=1897385625, load_duration=1631208,
                 prompt_eval_count=prompt_eval_count, prompt_eval_duration=313560000, eval_count=n,
                 eval_duration=1577990000)] if done_reason is not None else []
    kw.setdefault("content_type", "application/x-ndjson")
    return _assemble([], [line(i, p, done=False) for i, p in enumerate(pieces)], tail, kw)


def error(status: int, body: Any, headers: Optional[Mapping[str, str]] = None, **kw: Any) -> Response:
    """Non-streaming answer with Content-Length (keep-alive). ``body``: dict/list -> JSON,
    str -> text/plain, bytes -> sent as is (application/json unless ``content_type=``)."""
    if isinstance(body, str):
        data, ctype = body.encode("utf-8"), "text/plain; charset=utf-8"
    elif isinstance(body, (bytes, bytearray)):
        data, ctype = bytes(body), "application/json"
    else:
        data, ctype = json.dumps(body).encode("utf-8"), "application/json"
    hdrs = {k: v for k, v in (headers or {}).items() if k.lower() != "content-length"}
    hdrs["Content-Length"] = str(len(data))
    kw.setdefault("content_type", ctype)
    return Response(status=status, headers=hdrs, parts=(data,), chunked=False, **kw)


def raw_file(path_or_bytes: Union[str, "os.PathLike[str]", bytes], split: Optional[Tuple[int, int]] = None,
             seed: int = 0, content_type: Optional[str] = None, **kw: Any) -> Response:
    """Serve a recorded body, whole or re-split into sizes in ``split=(lo, hi)`` drawn from
    ``random.Random(seed)``. content_type defaults to NDJSON if the body starts with '{'."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    if content_type is None:
        content_type = "application/x-ndjson" if data.lstrip()[:1] == b"{" else "text/event-stream"
    if split is None:
        parts: Tuple[bytes, ...] = (data,)
    else:
        lo, hi = split
        if not 1 <= lo <= hi:
            raise ValueError("split=(lo, hi) needs 1 <= lo <= hi, got %r" % (split,))
        rng, out, i = random.Random(seed), [], 0
        while i < len(data):
            n = rng.randint(lo, hi)
            out.append(data[i:i + n])
            i += n
        parts = tuple(out)
    return Response(parts=parts, content_type=content_type, **kw)


_NO_SCRIPT = error(500, {"error": {"message": "fakeserver: no scripted response", "type": "server_error"}})
