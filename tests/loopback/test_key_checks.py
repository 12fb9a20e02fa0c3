"""Keys and header values as users really pass them: read from a file (a trailing newline),
pasted from a web page (a zero-width space, an ellipsis). Whitespace around them is
stripped; any other character HTTP cannot carry is a ValueError at once that names the
position and never quotes the key."""

from __future__ import annotations

import pytest

import streamcoord
from streamcoord import StreamingCoordinator
from tests.conftest import MESSAGES
from tests.support.fakeserver import anthropic_text, gemini_text, openai_text

KEY = "sk-live-CHECKS-0a1b2c3d4e5f"

SENT_AS = {
    "openai": ("authorization", f"Bearer {KEY}", openai_text(["ok"])),
    "anthropic": ("x-api-key", KEY, anthropic_text(["ok"])),
    "gemini": ("x-goog-api-key", KEY, gemini_text(["ok"])),
}


def _quotes_the_key(message):
    """True if ``message`` holds any 6 consecutive characters of the key."""
    return any(KEY[i:i + 6] in message for i in range(len(KEY) - 5))


@pytest.mark.parametrize("provider", sorted(SENT_AS))
def test_a_key_read_from_a_file_is_sent_without_its_newline(server, client, tmp_path, provider):
    (tmp_path / "key.txt").write_text(f"{KEY}\n")
    header, value, answer = SENT_AS[provider]
    server.enqueue(answer)
    with open(tmp_path / "key.txt") as f:
        c = client(provider, api_key=f.read())
    assert "".join(chunk.content for chunk in c.stream_chat(MESSAGES, model="m", max_tokens=5)) == "ok"
    assert server.requests[0].headers[header] == value


def test_a_key_from_the_environment_is_stripped_too(server, client, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", f"  {KEY}\r\n")
    server.enqueue(anthropic_text(["ok"]))
    c = client("anthropic", api_key=None)
    assert "".join(chunk.content for chunk in c.stream_chat(MESSAGES, model="m", max_tokens=5)) == "ok"
    assert server.requests[0].headers["x-api-key"] == KEY


BAD = {
    "zero-width space": (KEY[:7] + "\u200b" + KEY[7:], 7, "ZERO WIDTH SPACE"),
    "ellipsis": (KEY[:10] + "\u2026", 10, "HORIZONTAL ELLIPSIS"),
    "tab inside": (KEY[:3] + "\t" + KEY[3:], 3, "control character"),
    "DEL": (KEY + "\x7fx", len(KEY), "control character"),
    "accented letter": ("\n" + KEY[:4] + "\u00e9" + KEY[4:], 5, "LATIN SMALL LETTER E WITH ACUTE"),
}


@pytest.mark.parametrize("bad", BAD.values(), ids=list(BAD))
@pytest.mark.parametrize("source", ["argument", "environment"])
def test_a_key_with_a_character_http_cannot_carry_is_a_value_error_naming_its_position(monkeypatch, source, bad):
    key, position, kind = bad
    monkeypatch.setenv("OPENAI_API_KEY", key if source == "environment" else "")
    with pytest.raises(ValueError) as info:
        streamcoord.Client("openai", api_key=key if source == "argument" else None)
    message = str(info.value)
    assert f"position {position} (counting from 0)" in message and kind in message
    assert ("OPENAI_API_KEY" in message) == (source == "environment")
    assert not _quotes_the_key(message)
    assert info.value.__cause__ is None and info.value.__context__ is None  # no UnicodeEncodeError holding it


def test_a_key_that_is_only_whitespace_counts_as_no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="no API key for 'openai'"):
        streamcoord.Client("openai", api_key=" \n")


def test_extra_headers_are_sent_stripped(server, client):
    server.enqueue(openai_text(["ok"]))
    stream = client("openai").stream_chat(MESSAGES, model="m", extra_headers={"X-Proxy-Token": f"{KEY}\n"})
    assert "".join(chunk.content for chunk in stream) == "ok"
    assert server.requests[0].headers["x-proxy-token"] == KEY


@pytest.mark.parametrize("headers", [{"api-key": KEY + "\u200b"}, {"X-Tag": "caf\u00e9"}, {"X Bad": "v"}, {"X-N": 5}])
def test_extra_headers_that_cannot_be_sent_fail_at_stream_chat_without_quoting_them(client, headers):
    c = client("openai")
    with pytest.raises((ValueError, TypeError)) as info:
        c.stream_chat(MESSAGES, model="m", extra_headers=headers)
    assert "extra_headers" in str(info.value) and not _quotes_the_key(str(info.value))


def test_the_direct_api_refuses_a_header_value_that_cannot_be_sent_without_quoting_it(no_thread_leak):
    with pytest.raises(ValueError) as info:
        StreamingCoordinator.start_stream(
            "http://127.0.0.1:9/x", {}, {"Authorization": f"Bearer {KEY}\u2026"}, lambda chunk: None,
            parse_chunk_fn=lambda data: None,
        )
    assert "header 'Authorization'" in str(info.value) and "position 34 (counting from 0)" in str(info.value)
    assert not _quotes_the_key(str(info.value))
