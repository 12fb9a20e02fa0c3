"""Scrubbing reaches every exception a chain leads to and every text they format: the
shapes real low-level errors have (urllib3 nests its reason, OSError and UnicodeError
format C-level fields, JSONDecodeError keeps the whole document, requests keeps the
request with its headers)."""

from __future__ import annotations

import json
import traceback

import requests
import urllib3.exceptions

from streamcoord._keys import Scrubber

KEY = "sk-test-SCRUB-3e5f7a9b"


def _raise_chain():
    try:
        ("x-api-key: " + KEY + "\u2026").encode("latin-1")  # what http.client does with a header
    except UnicodeEncodeError as encode_error:
        try:
            raise OSError(5, f"write failed for {KEY}", f"/tmp/{KEY}") from encode_error
        except OSError as os_error:
            try:
                json.loads('{"key": "' + KEY + '"')
            except ValueError as json_error:
                reason = urllib3.exceptions.NewConnectionError(None, f"refused with {KEY}")
                pooled = urllib3.exceptions.MaxRetryError(None, "/v1", reason)
                prepared = requests.Request("POST", "http://h/v1", headers={"Authorization": f"Bearer {KEY}"}).prepare()
                failed = requests.exceptions.ConnectionError(pooled, request=prepared)
                failed.__cause__ = os_error
                failed.__context__ = json_error
                return failed


def _everything(exc):
    seen, todo, texts = [], [exc], []
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        texts += [str(e), repr(e), repr(vars(e)) if hasattr(e, "__dict__") else "", repr(e.args)]
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        todo += [a for a in e.args if isinstance(a, BaseException)]
    texts.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    request = getattr(exc, "request", None)
    texts.append(repr(dict(request.headers)))
    return texts, len(seen)


def test_scrubbing_reaches_every_exception_in_the_chain_and_every_text_they_format():
    exc = _raise_chain()
    before, count = _everything(exc)
    assert any(KEY in text for text in before) and count >= 5
    assert Scrubber([KEY]).exception(exc) is exc
    after, _ = _everything(exc)
    assert [text[:200] for text in after if KEY in text] == []
    assert "***" in str(exc.__cause__) and exc.request.headers["Authorization"] == "***"


def test_values_are_copied_only_where_a_secret_was_found():
    scrubber = Scrubber([KEY, "ab"])  # too short to be a secret: left alone
    clean = {"a": ["ab", 1, None], "b": ("x",)}
    assert scrubber.value(clean) is clean
    dirty = {"error": {"message": f"bad key {KEY}", "codes": [KEY.encode(), 2]}}
    assert scrubber.value(dirty) == {"error": {"message": "bad key ***", "codes": [b"***", 2]}}
    assert dirty["error"]["message"] == f"bad key {KEY}"  # the original is not changed


def test_scrubbers_collected_while_nothing_is_logged_leave_nothing_behind():
    # Before, each stream's scrubber left its dead reference in the logging filter's
    # registry until a record was logged: one entry per stream for the process's life.
    from streamcoord import _keys

    before = len(_keys._live)
    kept = []
    for n in range(2000):
        scrubber = Scrubber([f"{KEY}-{n}"])
        del scrubber
        kept.append(Scrubber([KEY], live=False))  # takes the freed address: each live one gets a new id
    assert len(_keys._live) <= max(before * 2, _keys.SWEEP_AT_LEAST)
    assert not any(f"{KEY}-{n}" in _keys.live_secrets() for n in range(2000))
    alive = Scrubber([f"{KEY}-alive"])
    assert f"{KEY}-alive" in _keys.live_secrets()
    del alive
