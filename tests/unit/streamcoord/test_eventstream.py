"""The AWS event stream decoder, checked against botocore's own ``EventStreamBuffer``."""

from __future__ import annotations

import struct
import tracemalloc
from binascii import crc32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcoord._eventstream import EventStreamDecoder
from streamcoord.errors import ProtocolError
from tests.support.eventstream import encode_message, header

try:  # the oracle (botocore needs Python 3.10+ with urllib3 2)
    import botocore.eventstream as eventstream
except ImportError:  # pragma: no cover - Python 3.9
    eventstream = None
needs_botocore = pytest.mark.skipif(eventstream is None, reason="botocore (the oracle) is not installed")

_INTS = {2: 8, 3: 16, 4: 32, 5: 64, 8: 64}


def _value(kind):
    if kind in (0, 1):
        return st.just(kind == 0)
    if kind in _INTS:
        bits = _INTS[kind]
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if kind == 6:
        return st.binary(max_size=40)
    if kind == 7:
        return st.text(max_size=20)
    return st.binary(min_size=16, max_size=16)  # 9: uuid


headers_strategy = st.lists(
    st.tuples(st.text(min_size=1, max_size=12), st.sampled_from(range(10))).flatmap(
        lambda nk: _value(nk[1]).map(lambda v: header(nk[0], v, nk[1]))
    ),
    max_size=6,
    unique_by=lambda h: h[0],
)
messages_strategy = st.lists(st.tuples(headers_strategy, st.binary(max_size=300)), min_size=1, max_size=4)


def _decode_in_pieces(data: bytes, cuts):
    decoder = EventStreamDecoder()
    out = []
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += decoder.feed(data[start:cut])
        start = cut
    return [(m.headers, m.payload) for m in out]


@needs_botocore
@settings(max_examples=60, deadline=None)
@given(messages_strategy, st.lists(st.integers(0, 2000), max_size=8))
def test_messages_split_anywhere_decode_as_botocore_decodes_them(messages, cuts):
    data = b"".join(encode_message(h, p) for h, p in messages)
    buffer = eventstream.EventStreamBuffer()
    buffer.add_data(data)
    expected = [(m.headers, m.payload) for m in buffer]
    assert _decode_in_pieces(data, [c for c in cuts if c < len(data)]) == expected
    assert len(expected) == len(messages)


@needs_botocore
@settings(max_examples=40, deadline=None)
@given(messages_strategy, st.data())
def test_any_flipped_bit_is_a_protocol_error_as_in_botocore(messages, data):
    stream = bytearray(b"".join(encode_message(h, p) for h, p in messages))
    bit = data.draw(st.integers(0, len(stream) * 8 - 1))
    stream[bit // 8] ^= 1 << (bit % 8)
    decoder = EventStreamDecoder()
    with pytest.raises(ProtocolError):  # at once, or (after good messages) by the next call
        decoder.feed(bytes(stream))
        decoder.finish()
    buffer = eventstream.EventStreamBuffer()
    buffer.add_data(bytes(stream))
    with pytest.raises(eventstream.ParserError):
        list(buffer)


def test_an_oversized_message_is_refused_from_its_prelude_alone():
    message = encode_message([header(":event-type", "x")], b"a" * 5000)
    decoder = EventStreamDecoder(max_message_bytes=4096)
    with pytest.raises(ProtocolError, match="max_line_bytes=4096"):
        decoder.feed(message[:12])  # only the prelude has arrived


def test_messages_before_a_corrupt_one_in_the_same_read_are_returned_first():
    good = encode_message([header(":event-type", "x")], b"{}")
    bad = bytearray(good)
    bad[-1] ^= 1
    decoder = EventStreamDecoder()
    assert [m.event for m in decoder.feed(good + bytes(bad))] == ["x"]
    with pytest.raises(ProtocolError, match="CRC32"):
        decoder.feed(good)


def test_a_truncated_last_message_is_dropped_at_the_end_of_the_body():
    message = encode_message([header(":event-type", "x")], b"{}")
    decoder = EventStreamDecoder()
    assert len(decoder.feed(message + message[:-3])) == 1
    assert decoder.finish() == []


def _with_raw_headers(raw_headers: bytes, payload: bytes = b"{}") -> bytes:
    total = 16 + len(raw_headers) + len(payload)
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", crc32(body))


@pytest.mark.parametrize(
    "raw_headers",
    [
        b"\x01a\x0a",  # value type 10 does not exist
        b"\x01a\x07\x00\x09abc",  # a string longer than the headers
        b"\x05ab",  # a name longer than the headers
        b"\x01a\x00\x01a\x01",  # the same name twice
        b"\x01a\x07\x00\x02\xff\xfe",  # a string that is not UTF-8
    ],
)
def test_malformed_headers_with_valid_checksums_are_protocol_errors(raw_headers):
    with pytest.raises(ProtocolError, match="malformed headers"):
        EventStreamDecoder().feed(_with_raw_headers(raw_headers))


def test_impossible_lengths_are_protocol_errors():
    prelude = struct.pack(">II", 10, 0)  # shorter than a message can be
    with pytest.raises(ProtocolError, match="impossible lengths"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", crc32(prelude)))


def test_a_long_message_arriving_in_many_reads_is_held_once_not_copied_with_each_read():
    # Joining the pending bytes and each read anew held two copies of the message at once
    # (and copied it ~size/64 KiB times): peak memory twice its size.
    payload = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    message = encode_message([header(":event-type", "contentBlockDelta")], payload)
    reads = [message[i:i + 65536] for i in range(0, len(message), 65536)]
    decoder = EventStreamDecoder()
    tracemalloc.start()
    try:
        assert [decoder.feed(read) for read in reads[:-1]] == [[]] * (len(reads) - 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * len(message)
    (decoded,) = decoder.feed(reads[-1])
    assert decoded.event == "contentBlockDelta" and decoded.payload == payload
