"""What every differential test shares: the wire (SSE/NDJSON bytes with the variants the
specs allow, cut anywhere), streamcoord's side over a loopback server, and the list of
places where an official SDK is itself wrong and the provider's documentation is followed
instead."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import streamcoord
from tests.support.fakeserver import FakeProvider, Response

__all__ = [
    "DIFFERENTIAL", "SDK_BUGS", "Loopback", "cut", "cuts", "escape_unicode_line_breaks", "http_library", "ndjson_bytes",
    "sse_bytes", "wire_variants",
]

# Bounded and derandomized: the same examples on every run and every CI machine, and the
# whole differential suite within its budget (~60 s per Python, measured far below).
DIFFERENTIAL = settings(
    max_examples=60, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

# Where an official SDK disagrees with the provider's documentation (and streamcoord
# follows the documentation). The tests name the entry they apply; each has a test of its
# own that shows the SDK's behaviour, so an SDK that gets fixed makes that test fail.
SDK_BUGS = {
    "sse-bom": (
        "openai, anthropic and google-genai: the SSE decoder does not strip a leading byte "
        "order mark (the WHATWG EventSource rules say to), so the first line is not a data "
        "line and the first event is lost (google-genai: fails)"
    ),
    "openai-compatible-tool-calls": (
        "openai: ChatCompletionStreamState concatenates every string of a tool-call delta, so "
        "an OpenAI-compatible server that repeats id and name in each fragment gives "
        "'call_1call_1' / 'searchsearch', and two calls sent at index 0 become one call with "
        "arguments '{...}{...}'"
    ),
    "openai-usage-overwritten": (
        "openai: the snapshot's usage is the last chunk's, so a usage sent before a later "
        "chunk without one (compatible servers) is lost"
    ),
    "genai-sse-lines": (
        "google-genai: only lines that start with 'data: ' (with the space) are data lines; "
        "any other line (an SSE comment, 'data:' without the optional space, 'event:') is "
        "taken for raw JSON and fails with UnknownApiResponseError"
    ),
    "ndjson-unicode-lines": (
        "ollama (and google-genai 1.x): the client reads lines with httpx's iter_lines(), which "
        "splits them the way str.splitlines() does, also at U+0085, U+2028 and U+2029 inside "
        "a JSON string; a line is ended by CR, LF or CRLF alone (NDJSON, SSE), and Ollama's "
        "server sends U+0085 unescaped"
    ),
}

# What the SDK is fed under SDK_BUGS["ndjson-unicode-lines"]: the same JSON, those
# characters escaped.
_UNICODE_LINE_BREAKS = {"\u0085": b"\\u0085", "\u2028": b"\\u2028", "\u2029": b"\\u2029"}


def escape_unicode_line_breaks(body: bytes) -> bytes:
    for char, escape in _UNICODE_LINE_BREAKS.items():
        body = body.replace(char.encode("utf-8"), escape)
    return body


@st.composite
def wire_variants(draw) -> Dict[str, Any]:
    """The framing variants a valid event stream may use."""
    return {
        "eol": draw(st.sampled_from(["\n", "\r\n", "\r"])),
        "bom": draw(st.booleans()),
        "comments": draw(st.booleans()),
        "space": draw(st.booleans()),  # "data: x" or "data:x"
    }


def sse_bytes(events: Sequence[Tuple[Optional[str], str]], variant: Dict[str, Any], seed: int) -> bytes:
    """``(event name or None, data)`` pairs as an SSE body under ``variant``."""
    eol, sep = variant["eol"], " " if variant["space"] else ""
    out: List[str] = ["\ufeff"] if variant["bom"] else []
    for i, (name, data) in enumerate(events):
        if variant["comments"] and (seed + i) % 3 == 0:
            out.append(f": keep-alive{eol}")
        if name is not None:
            out.append(f"event:{sep}{name}{eol}")
        out.extend(f"data:{sep}{line}{eol}" for line in data.split("\n"))
        out.append(eol)
    return "".join(out).encode("utf-8")


def ndjson_bytes(objects: Sequence[Dict[str, Any]], eol: str = "\n") -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + eol for o in objects).encode("utf-8")


def cut(body: bytes, points: Sequence[int]) -> List[bytes]:
    """``body`` cut at ``points`` (anywhere: inside a line, a JSON string, a UTF-8 character)."""
    edges = sorted({p % (len(body) + 1) for p in points} | {0, len(body)})
    return [body[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def http_library(module: Any) -> Any:
    """The HTTP library an official SDK's client ``module`` is built on (httpx; httpx2 in
    the newest openai, anthropic and mistralai releases), for its MockTransport."""
    for name in ("httpx2", "httpx"):
        if name in vars(module):
            return vars(module)[name]
    raise RuntimeError(f"{module.__name__} is built on neither httpx nor httpx2")


def cuts():
    return st.lists(st.integers(0, 1 << 20), max_size=12)


class Loopback:
    """streamcoord's side: one loopback server, one client per provider, a stream per body."""

    def __init__(self) -> None:
        self.server = FakeProvider().start()
        self._clients: Dict[str, streamcoord.Client] = {}

    def stream(self, provider: str, pieces: Sequence[bytes], content_type: str = "text/event-stream", **options: Any):
        client = self._clients.get(provider)
        if client is None:
            suffix = "/v1" if provider in ("openai", "mistral") else ""
            client = streamcoord.Client(provider, api_key="sk-differential", base_url=self.server.base_url + suffix,
                                        max_retries=0)
            self._clients[provider] = client
        self.server.enqueue(Response(parts=tuple(pieces), content_type=content_type))
        stream = client.stream_chat([{"role": "user", "content": "Hi"}], **options)
        chunks = list(stream)
        return stream, chunks

    def close(self) -> None:
        self.server.close()
