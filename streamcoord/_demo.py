"""The embedded demo provider: a loopback server that speaks OpenAI's streaming format.

``python -m streamcoord demo`` streams from it through the whole stack (HTTP, SSE
decoding, the OpenAI adapter, the worker thread, metrics, stream recovery) with no key and
no network. The server drops the first connection part-way through the answer, once, so
the demo shows a recovery; a continuation request (the partial answer as an assistant
turn) is answered with the rest of the answer.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple, cast

__all__ = ["DEMO_ANSWER", "DemoProvider", "tokenize"]

DEMO_ANSWER = (
    "streamcoord reads the provider's chunked HTTP answer on a worker thread, decodes the "
    "event stream, and hands each piece to your loop as soon as it arrives.\n\n"
    "Nothing you see is ever lost: with stream recovery on, every piece is saved before it "
    "reaches you, and a broken connection is resumed from the last paragraph or sentence.\n\n"
    "Metrics, validation, transformation and buffering run inline in the worker, so your "
    "code stays a plain for loop, in a script or in a Django or Flask view."
)


def tokenize(text: str) -> List[str]:
    """Word-sized pieces, like a model's tokens (whitespace stays attached)."""
    return re.findall(r"\S+\s*|\s+", text)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet demo
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        model = body.get("model", "demo")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        answer = self.server.answer
        partial = _partial_answer(body.get("messages") or [])
        if partial and answer.startswith(partial):
            answer = answer[len(partial):]  # a continuation: the rest of the answer
        pieces = tokenize(answer)
        drop_at = len(pieces) * 2 // 5 if self.server.take_drop() else None
        try:
            self._event({"role": "assistant", "content": ""}, model, None)
            for i, piece in enumerate(pieces):
                if self.server.closing.wait(self.server.delay):
                    return
                if i == drop_at:
                    self.connection.shutdown(socket.SHUT_RDWR)  # the network fails, mid-answer
                    return
                self._event({"content": piece}, model, None)
            self._event({}, model, "stop")
            words = len(pieces)
            self._send(
                "data: " + json.dumps({
                    "id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": model, "choices": [],
                    "usage": {"prompt_tokens": 12, "completion_tokens": words, "total_tokens": 12 + words},
                }) + "\n\ndata: [DONE]\n\n"
            )
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away: nothing to do

    def _event(self, delta: Dict[str, Any], model: str, finish: Optional[str]) -> None:
        event = {
            "id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        self._send("data: " + json.dumps(event) + "\n\n")

    def _send(self, text: str) -> None:
        data = text.encode("utf-8")
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def _partial_answer(messages: List[Dict[str, Any]]) -> str:
    """The partial answer a continuation request carries (the last assistant turn)."""
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, str):
            return content
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: str, delay: float, drops: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.delay = delay
        self.closing = threading.Event()
        self._drops = drops
        self._lock = threading.Lock()

    def take_drop(self) -> bool:
        with self._lock:
            if self._drops > 0:
                self._drops -= 1
                return True
            return False


class DemoProvider:
    """``with DemoProvider() as demo: Client("openai", api_key="demo", base_url=demo.base_url)``."""

    def __init__(self, answer: str = DEMO_ANSWER, delay: float = 0.02, drops: int = 1) -> None:
        self._server = _Server(answer, delay, drops)
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-provider", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = cast(Tuple[str, int], self._server.server_address[:2])  # an AF_INET address
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "DemoProvider":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._server.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
