"""The HTTP body decoders (chunked framing, gzip, deflate): any split of the bytes gives
the same body, and malformed input gives a ProtocolError, never another exception or a hang."""

from __future__ import annotations

import gzip
import importlib.util
import re
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcoord._http_decoders import (
    ACCEPT_ENCODING,
    MAX_TRAILER_LINES,
    ChunkedDecoder,
    content_decoder,
)
from streamcoord.errors import ProtocolError

FUZZ = settings(max_examples=150, deadline=2000)
payloads = st.lists(st.binary(min_size=1, max_size=60), max_size=8)
extensions = st.sampled_from([b"", b";a=b", b" ;x", b";name=\"quoted\""])
cuts = st.lists(st.integers(min_value=0, max_value=2000), max_size=10)


def split(data: bytes, at) -> list:
    points = sorted({p % (len(data) + 1) for p in at})
    return [data[i:j] for i, j in zip([0] + points, points + [len(data)])]


def feed(decoder, pieces) -> bytes:
    return b"".join(decoder.decode(piece) for piece in pieces) + decoder.flush()


def framed(parts, ext=b"", trailers=b"") -> bytes:
    return b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in parts) + b"0\r\n" + trailers + b"\r\n"


@FUZZ
@given(payloads, extensions, cuts, st.sampled_from([b"", b"X-A: 1\r\n", b"X-A: 1\r\nX-B: 2\r\n"]))
def test_chunked_body_split_anywhere_decodes_to_its_payload(parts, ext, at, trailers):
    decoder = ChunkedDecoder()
    assert feed(decoder, split(framed(parts, ext, trailers), at)) == b"".join(parts)
    assert decoder.done and decoder.reusable


@FUZZ
@given(st.binary(max_size=300), cuts)
def test_arbitrary_bytes_give_a_body_or_a_protocol_error_the_same_for_any_split(data, at):
    def outcome(pieces):
        decoder = ChunkedDecoder()
        try:
            return feed(decoder, pieces)
        except ProtocolError:
            return ProtocolError

    assert outcome(split(data, at)) == outcome([data])


STRICT_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}[ \t]*(;.*)?", re.S)


@FUZZ
@given(st.binary(max_size=12).filter(lambda b: b"\r\n" not in b and not b.endswith(b"\r")))
def test_a_chunk_size_is_hex_digits_and_nothing_else(line):
    decoder = ChunkedDecoder()
    try:
        decoder.decode(line + b"\r\n")
        accepted = True
    except ProtocolError:
        accepted = False
    assert accepted == bool(STRICT_SIZE.fullmatch(line))


@pytest.mark.parametrize("size", [b"0x5", b"+5", b"0_5", b" 5", b"5_", b"-0", b""])
def test_sizes_python_int_would_take_are_refused(size):
    with pytest.raises(ProtocolError, match="chunk size"):
        ChunkedDecoder().decode(size + b"\r\nhello\r\n0\r\n\r\n")


def test_trailers_past_the_bound_end_the_body_without_reuse():
    decoder = ChunkedDecoder()
    trailers = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_TRAILER_LINES + 1))
    assert decoder.decode(b"2\r\nhi\r\n0\r\n" + trailers) == b"hi"
    assert decoder.done and not decoder.reusable


def test_a_body_cut_before_its_last_chunk_is_a_protocol_error_at_flush():
    decoder = ChunkedDecoder()
    assert decoder.decode(b"5\r\nhel") == b"hel"
    with pytest.raises(ProtocolError):
        decoder.flush()


def compress(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    obj = zlib.compressobj(wbits=zlib.MAX_WBITS if encoding == "deflate" else -zlib.MAX_WBITS)
    return obj.compress(data) + obj.flush()


@FUZZ
@given(st.sampled_from(["gzip", "deflate", "raw deflate"]), st.binary(max_size=2000), cuts)
def test_compressed_body_split_anywhere_decodes_to_the_original(encoding, data, at):
    decoder = content_decoder("gzip" if encoding == "gzip" else "deflate")
    assert feed(decoder, split(compress(encoding, data), at)) == data


@FUZZ
@given(st.sampled_from(["gzip", "deflate", "raw deflate", "gzip, gzip", "deflate, gzip"]),
       st.lists(st.binary(max_size=400), min_size=1, max_size=3), cuts, st.integers(1, 64))
def test_bounded_output_per_decode_still_gives_the_whole_body(encoding, members, at, limit):
    # Each decode() gives at most about `limit` bytes a layer; the rest is pending and
    # comes with decode(b"") (as the transport asks before it reads the socket again).
    layers = encoding.split(", ")
    data = b"".join(members)
    packed = b"".join(compress(layers[0], m) for m in members) if layers[0] == "gzip" else compress(layers[0], data)
    for layer in layers[1:]:
        packed = compress(layer, packed)
    decoder = content_decoder(", ".join("deflate" if name == "raw deflate" else name for name in layers), limit)
    out = []
    for piece in split(packed, at):
        out.append(decoder.decode(piece))
        assert len(out[-1]) <= limit * len(layers) * 2 + 64
        while decoder.pending:
            out.append(decoder.decode(b""))
    out.append(decoder.flush())
    assert b"".join(out) == data


@FUZZ
@given(st.sampled_from(["gzip", "deflate", "gzip, deflate"]), st.binary(max_size=300), cuts)
def test_arbitrary_bytes_to_a_content_decoder_give_bytes_or_a_protocol_error(header, data, at):
    try:
        feed(content_decoder(header), split(data, at))
    except ProtocolError:
        pass


def test_two_layers_are_undone_last_first():
    data = b"data: hi\n\n" * 50
    assert feed(content_decoder("deflate, gzip"), [gzip.compress(compress("deflate", data))]) == data


def test_identity_needs_no_decoder_and_unknown_encodings_say_what_is_missing():
    assert content_decoder(None) is None and content_decoder("identity") is None
    with pytest.raises(ProtocolError, match="compress"):
        content_decoder("compress")


def test_only_what_can_be_decoded_is_advertised():
    advertised = [name.strip() for name in ACCEPT_ENCODING.split(",")]
    assert {"gzip", "deflate"} <= set(advertised)
    for name in advertised:
        assert content_decoder(name) is not None
    for name, modules in (("br", ("brotli", "brotlicffi")), ("zstd", ("zstandard",))):
        if not any(importlib.util.find_spec(module) for module in modules):
            assert name not in advertised


@pytest.mark.parametrize("name, module", [("br", "brotli"), ("zstd", "zstandard")])
def test_br_and_zstd_when_their_package_is_installed(name, module):
    package = pytest.importorskip(module)
    data = b"data: hi\n\n" * 200
    packed = package.compress(data) if name == "br" else package.ZstdCompressor().compress(data)
    assert name in ACCEPT_ENCODING
    assert feed(content_decoder(name), split(packed, [3, 50, 51])) == data
    with pytest.raises(ProtocolError, match=name):
        feed(content_decoder(name), [b"not compressed at all" * 4])
