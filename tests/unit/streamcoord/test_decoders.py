"""The wire decoders: the WHATWG EventSource cases, NDJSON framing, and any split of the bytes."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcoord._decoders import NDJSONDecoder, ServerSentEvent, SSEDecoder
from streamcoord.errors import ProtocolError
from tests.support.environment import CONFORMANCE_DIR

SSE_CASES_MD = CONFORMANCE_DIR / "SSE_CASES.md"


def load_cases():
    text = SSE_CASES_MD.read_text(encoding="utf-8")
    return json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))


CASES = load_cases()


def decode(decoder, data: bytes, sizes=None):
    events = []
    if sizes is None:
        events += decoder.feed(data)
    else:
        pos, i = 0, 0
        while pos < len(data):
            size = sizes[i % len(sizes)]
            events += decoder.feed(data[pos:pos + size])
            pos += size
            i += 1
    return events + decoder.flush()


def as_dicts(events):
    return [{"type": e.event, "data": e.data, "lastEventId": e.id} for e in events]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
@pytest.mark.parametrize("sizes", [None, [1], [2, 3], [7]], ids=["whole", "bytewise", "2-3", "7"])
def test_eventsource_case(case, sizes):
    initial = "\u2026" if case["id"] == "id-persists-across-reconnect" else ""
    decoder = SSEDecoder(last_event_id=initial)
    events = decode(decoder, case["input"].encode("utf-8"), sizes)
    assert as_dicts(events) == case["expected_events"]
    assert decoder.retry == case["expected_retry_ms"]
    assert decoder.last_event_id == case["final_last_event_id"]


def test_crlf_split_between_reads_is_one_line_end():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == [ServerSentEvent("a")]
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [ServerSentEvent("b")]


def test_utf8_character_split_across_reads_is_decoded_whole():
    data = "data: caf\u00e9 \U0001F604\n\n".encode("utf-8")
    events = decode(SSEDecoder(), data, [1])
    assert [e.data for e in events] == ["caf\u00e9 \U0001F604"]


def test_bom_only_stripped_at_the_start_of_the_stream():
    assert [e.data for e in decode(SSEDecoder(), "\ufeffdata: x\n\n".encode(), [1])] == ["x"]


def test_invalid_utf8_is_replaced_not_raised():
    assert decode(SSEDecoder(), b"data: \xff\n\n")[0].data == "\ufffd"


def test_over_long_line_raises_protocol_error():
    decoder = SSEDecoder(max_line_bytes=1024)
    with pytest.raises(ProtocolError, match="max_line_bytes"):
        for _ in range(3):
            decoder.feed(b"x" * 500)


def test_over_long_line_inside_one_read_raises_protocol_error():
    with pytest.raises(ProtocolError):
        SSEDecoder(max_line_bytes=1024).feed(b"data: " + b"x" * 2000 + b"\n\n")


def test_many_data_lines_cannot_grow_an_event_without_bound():
    with pytest.raises(ProtocolError):
        SSEDecoder(max_line_bytes=1024).feed(b"data: " + b"x" * 600 + b"\n" + b"data: " + b"x" * 600 + b"\n")


def test_ndjson_one_event_per_line_and_blank_lines_skipped():
    events = decode(NDJSONDecoder(), b'{"a": 1}\n\n{"b": 2}\r\n{"c": 3}', [3])
    assert [json.loads(e.data) for e in events] == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_ndjson_over_long_line_raises_protocol_error():
    with pytest.raises(ProtocolError):
        NDJSONDecoder(max_line_bytes=1024).feed(b"{" * 2000)


EVENT_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20)


@st.composite
def sse_streams(draw):
    """Streams of events with mixed line ends, comments, ids and multi-line data."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        eol = draw(st.sampled_from(["\n", "\r", "\r\n"]))
        if draw(st.booleans()):
            parts.append(":" + draw(EVENT_TEXT) + eol)
        if draw(st.booleans()):
            parts.append("event: " + draw(EVENT_TEXT) + eol)
        if draw(st.booleans()):
            parts.append("id: " + draw(EVENT_TEXT) + eol)
        for _ in range(draw(st.integers(0, 3))):
            parts.append("data:" + draw(st.sampled_from(["", " "])) + draw(EVENT_TEXT) + eol)
        parts.append(eol)
    return "".join(parts).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(data=sse_streams(), cuts=st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_every_split_of_the_same_bytes_gives_the_same_events(data, cuts):
    whole = decode(SSEDecoder(), data)
    split = decode(SSEDecoder(), data, cuts)
    assert split == whole


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=3), max_size=8),
       cuts=st.lists(st.integers(1, 16), min_size=1, max_size=10))
def test_every_split_of_ndjson_gives_the_same_lines(lines, cuts):
    data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
    assert [json.loads(e.data) for e in decode(NDJSONDecoder(), data, cuts)] == lines


def test_with_data_strings_a_data_only_event_is_its_data_and_any_other_stays_an_event():
    decoder = SSEDecoder(end_marker="[DONE]", data_strings=True)
    events = decoder.feed(b'data: {"a":1}\n\nevent: ping\ndata: {}\n\nid: 7\ndata: x\n\ndata: [DONE]\n\n')
    assert events[0] == '{"a":1}' and type(events[0]) is str
    assert (events[1].event, events[1].data) == ("ping", "{}")
    assert (events[2].id, events[2].data) == ("7", "x")
    assert len(events) == 3 and decoder.done
