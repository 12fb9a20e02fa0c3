"""A loopback server, run in its own process, that streams N OpenAI-format chunks without
ever holding the whole body: events are generated as they are sent, so a million-chunk
answer (~250 MB on the wire) costs this process a few hundred KiB.

    python benchmarks/_server_stream.py N_CHUNKS [packed|per-event] [--close]
        ->  prints the port, serves until killed

The events are the same as ``_server.py``'s (content `` word{i % 1000}``, then a
``finish_reason: stop`` event and ``data: [DONE]``), sent with chunked transfer encoding:
``packed`` cuts the SSE stream into 64 KiB HTTP chunks (events split across them, as a fast
server with a slow reader produces); ``per-event`` makes every event its own HTTP chunk, as
the providers' servers do (many of them per ``sendall``, so the server keeps up).

Unlike ``_server.py`` (``Connection: close``), connections are kept alive and may carry
further requests, as real providers' are, so that a client's connection pool can reuse
them; ``--close`` answers with ``Connection: close`` instead.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from typing import Iterator, List

PACK = 65536


def _event(i: int) -> bytes:
    event = {
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1727346168,
        "model": "gpt-4o-mini", "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": {"content": f" word{i % 1000}"}, "logprobs": None, "finish_reason": None}],
    }
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


# The content cycles through 1000 values, so 1000 encoded events are all there is to build.
EVENTS: List[bytes] = [_event(i) for i in range(1000)]
_FINAL = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1727346168, "model": "gpt-4o-mini",
          "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}
TAIL = b"data: " + json.dumps(_FINAL).encode() + b"\n\ndata: [DONE]\n\n"


def events(n_chunks: int) -> Iterator[bytes]:
    """The SSE events of one answer, one at a time."""
    cycle = EVENTS
    for i in range(n_chunks):
        yield cycle[i % 1000]
    yield TAIL


def http_chunks(n_chunks: int, framing: str) -> Iterator[bytes]:
    """The body on the wire, in pieces of about 64 KiB (each piece is one ``sendall``)."""
    out = bytearray()
    if framing == "per-event":
        for event in events(n_chunks):
            out += b"%x\r\n%s\r\n" % (len(event), event)
            if len(out) >= PACK:
                yield bytes(out)
                out.clear()
    else:
        raw = bytearray()
        for event in events(n_chunks):
            raw += event
            if len(raw) >= PACK:
                out += b"%x\r\n%s\r\n" % (PACK, raw[:PACK])
                del raw[:PACK]
                yield bytes(out)
                out.clear()
        if raw:
            out += b"%x\r\n%s\r\n" % (len(raw), bytes(raw))
    out += b"0\r\n\r\n"
    yield bytes(out)


def serve(n_chunks: int, framing: str, keep_alive: bool) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
        + (b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
    )
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    print(listener.getsockname()[1], flush=True)

    def read_request(conn: socket.socket, data: bytes):
        """One request (head and Content-Length body); returns (the head, leftover bytes) or None."""
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            if not more:
                return None
            data += more
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head_bytes.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(rest) < length:
            more = conn.recv(65536)
            if not more:
                return None
            rest += more
        return head_bytes, rest[length:]

    def handle(conn: socket.socket) -> None:
        with conn:
            pending = b""
            try:
                while True:
                    got = read_request(conn, pending)
                    if got is None:
                        return
                    request_head, pending = got
                    conn.sendall(head)
                    for piece in http_chunks(n_chunks, framing):
                        conn.sendall(piece)
                    if not keep_alive or b"connection: close" in request_head.lower():
                        return
            except OSError:
                pass  # the client went away (an early close): nothing to clean up but the socket

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    serve(int(args[0]), args[1] if len(args) > 1 else "packed", "--close" not in sys.argv[1:])
