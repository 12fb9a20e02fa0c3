"""A loopback server, run in its own process, that streams OpenAI-format chunks as fast as
the socket allows. The body is built once; each request gets it with ``sendall``.

    python benchmarks/_server.py N_CHUNKS [packed|per-event|gzip]  ->  prints the port, serves until killed

``gzip`` sends the event stream gzip-compressed (``Content-Encoding: gzip``, as nginx with
``gzip on`` or a corporate proxy would), in 64 KiB HTTP chunks.
"""

from __future__ import annotations

import gzip
import json
import socket
import sys
import threading

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n\r\n"
)
GZIP_HEAD = HEAD.replace(b"Connection: close\r\n", b"Connection: close\r\nContent-Encoding: gzip\r\n")


def build_body(n_chunks: int, framing: str = "packed") -> bytes:
    """The SSE body as HTTP chunks: ``packed`` puts 64 KiB of events in each (a fast server
    with a slow reader); ``per-event`` sends every event as its own HTTP chunk, as the
    providers' servers do."""
    events = []
    for i in range(n_chunks):
        event = {
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1727346168,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": {"content": f" word{i % 1000}"}, "logprobs": None, "finish_reason": None}],
        }
        events.append(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")
    final = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1727346168, "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}
    events.append(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
    if framing == "per-event":
        pieces = events
    else:
        raw = b"".join(events)
        if framing == "gzip":
            raw = gzip.compress(raw, compresslevel=6)
        pieces = [raw[start:start + 65536] for start in range(0, len(raw), 65536)]
    out = []
    for piece in pieces:
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def serve(n_chunks: int, framing: str) -> None:
    body = (GZIP_HEAD if framing == "gzip" else HEAD) + build_body(n_chunks, framing)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    print(listener.getsockname()[1], flush=True)

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
            try:
                conn.sendall(body)
            except OSError:
                pass

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "packed")
