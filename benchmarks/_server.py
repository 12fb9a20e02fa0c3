"""A loopback server, run in its own process, that streams OpenAI- or Anthropic-format
chunks as fast as the socket allows (or at a set pace). A body is built once per set of
options and cached; each request gets it with ``sendall`` (``Connection: close``).

    python benchmarks/_server.py N_CHUNKS [packed|per-event|gzip]  ->  prints the port, serves until killed

The command line sets the defaults; a request overrides them in its path, so that one
server answers every workload of a run:
``/bench/n=200000,framing=per-event,provider=anthropic,pack=16384,rate=0/v1/...``
(a client's ``base_url`` is ``http://127.0.0.1:PORT/bench/OPTIONS`` plus ``/v1`` for
OpenAI). Options:

- ``n``: content events per answer;
- ``framing``: ``packed`` cuts the event stream into ``pack``-byte HTTP chunks (a fast server,
  a slow reader), ``per-event`` sends each event as its own HTTP chunk, as the providers do,
  ``gzip`` sends the packed stream gzip-compressed (``Content-Encoding: gzip``), as nginx
  with ``gzip on`` or a corporate proxy does;
- ``provider``: ``openai`` (chat.completion.chunk events) or ``anthropic`` (an ``event:``
  line and a ``data:`` line per event, message_start ... message_stop);
- ``pack``: bytes per packed HTTP chunk (65536);
- ``rate``: events per second, 0 for as fast as possible. Paced answers are sent event by
  event (one HTTP chunk each) and their content is `` t<CLOCK_MONOTONIC ns at the send>``,
  so a client on this machine can compute each chunk's latency (``time.monotonic_ns()``
  is the same clock in every process on Linux).
"""

from __future__ import annotations

import gzip
import json
import socket
import sys
import threading
import time
from typing import Dict, List, Tuple

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n\r\n"
)
GZIP_HEAD = HEAD.replace(b"Connection: close\r\n", b"Connection: close\r\nContent-Encoding: gzip\r\n")
DEFAULTS: Dict[str, str] = {"n": "200000", "framing": "packed", "provider": "openai", "pack": "65536", "rate": "0"}


def openai_event(content: str) -> bytes:
    event = {
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1727346168,
        "model": "gpt-4o-mini", "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": None}],
    }
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


OPENAI_TAIL = b"data: " + json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1727346168, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
}).encode() + b"\n\ndata: [DONE]\n\n"


def _sse(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def anthropic_event(content: str) -> bytes:
    return _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": content}})


ANTHROPIC_HEAD = _sse("message_start", {"type": "message_start", "message": {
    "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench", "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}) + _sse(
    "content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
ANTHROPIC_TAIL = _sse("content_block_stop", {"type": "content_block_stop", "index": 0}) + _sse(
    "message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                      "usage": {"output_tokens": 7}}) + _sse("message_stop", {"type": "message_stop"})
FORMATS = {"openai": (b"", openai_event, OPENAI_TAIL), "anthropic": (ANTHROPIC_HEAD, anthropic_event, ANTHROPIC_TAIL)}


def build_events(n_chunks: int, provider: str = "openai") -> List[bytes]:
    head, event, tail = FORMATS[provider]
    cycle = [event(f" word{i}") for i in range(1000)]
    events = [head] if head else []
    events.extend(cycle[i % 1000] for i in range(n_chunks))
    events.append(tail)
    return events


def chunked(pieces: List[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def build_body(n_chunks: int, framing: str = "packed", provider: str = "openai", pack: int = 65536) -> bytes:
    """The SSE body as HTTP chunks (see the module's docstring for the framings)."""
    events = build_events(n_chunks, provider)
    if framing == "per-event":
        return chunked(events)
    raw = b"".join(events)
    if framing == "gzip":
        raw = gzip.compress(raw, compresslevel=6)
    return chunked([raw[start:start + pack] for start in range(0, len(raw), pack)])


def parse_options(path: bytes) -> Dict[str, str]:
    options = dict(DEFAULTS)
    parts = path.split(b"/")
    if len(parts) > 2 and parts[1] == b"bench":
        for pair in parts[2].decode().split(","):
            key, _, value = pair.partition("=")
            if key not in options:
                raise ValueError(f"unknown option {key!r}")
            options[key] = value
    return options


def send_paced(conn: socket.socket, options: Dict[str, str]) -> None:
    """One event per HTTP chunk, ``rate`` per second, each stamped with its send time."""
    head, event, tail = FORMATS[options["provider"]]
    interval = 1.0 / float(options["rate"])
    conn.sendall(HEAD + (b"%x\r\n%s\r\n" % (len(head), head) if head else b""))
    due = time.monotonic()
    for _ in range(int(options["n"])):
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        due += interval
        piece = event(f" t{time.monotonic_ns()}")
        conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))


def serve(defaults: Dict[str, str]) -> None:
    DEFAULTS.update(defaults)
    bodies: Dict[Tuple[str, ...], bytes] = {}
    lock = threading.Lock()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    print(listener.getsockname()[1], flush=True)

    def body_for(options: Dict[str, str]) -> bytes:
        key = tuple(options[k] for k in ("n", "framing", "provider", "pack"))
        with lock:
            if key not in bodies:
                body = build_body(int(options["n"]), options["framing"], options["provider"], int(options["pack"]))
                bodies[key] = (GZIP_HEAD if options["framing"] == "gzip" else HEAD) + body
            return bodies[key]

    def handle(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(rest) < length:
                rest += conn.recv(65536)
            options = parse_options(head.split(b" ", 2)[1])
            try:
                if float(options["rate"]) > 0:
                    send_paced(conn, options)
                else:
                    conn.sendall(body_for(options))
            except OSError:
                pass  # the client went away (an early close)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def start(n_chunks: int = 200_000, framing: str = "packed"):
    """Starts a server process; returns (the process, ``http://127.0.0.1:PORT``)."""
    import os
    import subprocess

    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(n_chunks), framing],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{int(proc.stdout.readline())}"


def url(origin: str, **options: object) -> str:
    """The base URL (without ``/v1``) that asks ``origin``'s server for these options."""
    return f"{origin}/bench/" + ",".join(f"{k}={v}" for k, v in options.items())


if __name__ == "__main__":
    serve({"n": sys.argv[1], "framing": sys.argv[2] if len(sys.argv) > 2 else "packed"})
