"""I/O-free decoders of an HTTP body: the chunked framing and the ``Content-Encoding``.

The shape is httpx's ``_decoders.py``: ``decode(bytes) -> bytes`` for what arrived, and
``flush() -> bytes`` at the end of the body. The transport chains them: the bytes read
from the socket go through ``ChunkedDecoder`` (when the body is chunked), then through
the content decoder, then to the SSE/NDJSON decoder. Malformed input is a
``ProtocolError``, never an exception of zlib or of a compression package.

gzip and deflate are always available; br and zstd only when ``brotli`` (or
``brotlicffi``) and ``zstandard`` are importable, and only those are advertised in
``Accept-Encoding``.
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Callable, Dict, List, Optional

from streamcoord.errors import ProtocolError

try:  # optional: Brotli, from either of its two packagings
    import brotli as _brotli
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        import brotlicffi as _brotli
    except ImportError:
        _brotli = None
try:  # optional
    import zstandard as _zstandard
except ImportError:  # pragma: no cover - depends on what is installed
    _zstandard = None

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_CHUNK_LINE",
    "MAX_TRAILER_BYTES",
    "MAX_TRAILER_LINES",
    "ChunkedDecoder",
    "ContentDecoder",
    "content_decoder",
]

# A chunk-size line (with its extensions) or a trailer line longer than this is not HTTP.
MAX_CHUNK_LINE = 4096
# Trailers after the last chunk: bounded, so a server sending them for ever cannot hold a
# complete answer hostage (h11 bounds the whole trailer block at 16 KiB, likewise).
MAX_TRAILER_LINES = 64
MAX_TRAILER_BYTES = 16384


# RFC 9112 7.1: ``chunk-size [ BWS ";" chunk-ext ]``, hex digits and nothing else.
_SIZE_WITH_EXTENSIONS = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?", re.S)


def _chunk_size(line: bytes) -> int:
    # The plain form, once per HTTP chunk, so cheaply: int(x, 16) alone would take "0x5",
    # "+5", "0_5" and surrounding whitespace; isalnum() rules out all but the "0x" prefix
    # (measured: ~60 ns on top of int(), a regex ~300 ns).
    if line.isalnum() and len(line) <= 16 and (len(line) < 2 or line[1] not in b"xX"):
        try:
            return int(line, 16)
        except ValueError:
            pass
    else:
        match = _SIZE_WITH_EXTENSIONS.fullmatch(line)
        if match is not None:
            return int(match.group(1), 16)
    raise ProtocolError(f"invalid chunked encoding: bad chunk size {line[:40]!r}")


class ChunkedDecoder:
    """Incremental decoder of HTTP/1.1 ``Transfer-Encoding: chunked``.

    ``done`` is set once the last chunk and the trailers have arrived; bytes after that
    are not part of the body and are ignored. Trailers past ``MAX_TRAILER_LINES`` or
    ``MAX_TRAILER_BYTES`` end the body too, with ``reusable`` False: the connection is
    closed rather than given back to the pool.
    """

    __slots__ = ("_buf", "_left", "_state", "_trailer_bytes", "_trailer_lines", "done", "reusable")

    def __init__(self) -> None:
        self._buf = b""
        self._left = 0  # payload bytes still to come in the current chunk
        self._state = 0  # 0: size line, 1: payload, 2: CRLF after payload, 3: trailers
        self._trailer_lines = 0
        self._trailer_bytes = 0
        self.done = False
        self.reusable = True

    def decode(self, data: bytes) -> bytes:
        if self.done:
            return b""
        buf = self._buf + data if self._buf else data
        out = []
        pos = 0
        end = len(buf)
        state = self._state
        left = self._left
        while pos < end:
            if state == 1:
                take = min(left, end - pos)
                out.append(buf[pos:pos + take])
                pos += take
                left -= take
                if left == 0:
                    state = 2
            elif state == 0:
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if end - pos > MAX_CHUNK_LINE:
                        raise ProtocolError("invalid chunked encoding: chunk-size line too long")
                    break
                left = _chunk_size(buf[pos:nl])
                pos = nl + 2
                if not left:
                    state = 3
                    continue
                # The common case, a whole chunk and its CRLF already in the buffer (a
                # provider sends each event as its own small chunk): take it in one step.
                stop = pos + left
                if stop + 2 <= end:
                    if buf[stop:stop + 2] != b"\r\n":
                        raise ProtocolError("invalid chunked encoding: chunk not followed by CRLF")
                    out.append(buf[pos:stop])
                    pos = stop + 2
                    left = 0
                    continue
                state = 1
            elif state == 2:
                if end - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise ProtocolError("invalid chunked encoding: chunk not followed by CRLF")
                pos += 2
                state = 0
            else:  # trailers, ended by an empty line
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if end - pos > MAX_CHUNK_LINE:
                        raise ProtocolError("invalid chunked encoding: trailer line too long")
                    break
                if nl == pos:
                    self.done = True
                    pos = end  # anything after the body is not ours to decode
                    break
                self._trailer_lines += 1
                self._trailer_bytes += nl + 2 - pos
                if self._trailer_lines > MAX_TRAILER_LINES or self._trailer_bytes > MAX_TRAILER_BYTES:
                    # The body itself is complete; what is left is metadata nobody reads.
                    # Stop there, and do not reuse a connection left in that state.
                    self.done = True
                    self.reusable = False
                    pos = end
                    break
                pos = nl + 2
        self._buf = buf[pos:] if pos < end else b""
        self._state = state
        self._left = left
        return out[0] if len(out) == 1 else b"".join(out)

    def flush(self) -> bytes:
        """The end of the input: a body that ends before its last chunk is cut short."""
        if not self.done:
            raise ProtocolError("invalid chunked encoding: the body ended before its last chunk")
        return b""


class ContentDecoder:
    """Undoes one or more ``Content-Encoding`` layers (listed in the order applied).

    The output of one ``decode`` is bounded (about ``limit`` bytes a layer): 16 KiB of
    compressed events can be a megabyte of text, which would arrive as one huge batch
    (memory, and the garbage collector wakes on it). What is left is ``pending``, and comes
    with the next ``decode(b"")``; ``flush`` gives all of it.
    """

    __slots__ = ("_layers", "encoding")

    def __init__(self, encoding: str, layers: List[Any]) -> None:
        self.encoding = encoding
        self._layers = layers

    @property
    def pending(self) -> bool:
        return any(layer.pending for layer in self._layers)

    def decode(self, data: bytes) -> bytes:
        for layer in self._layers:
            if data or layer.pending:
                data = layer.decode(data)
        return data

    def flush(self) -> bytes:
        data = b""
        for layer in self._layers:
            parts = [layer.decode(data)] if data else []
            while layer.pending:
                parts.append(layer.decode(b""))
            parts.append(layer.flush())
            data = b"".join(parts)
        return data


def _decode_error(encoding: str, exc: BaseException) -> ProtocolError:
    error = ProtocolError(f"could not decode the {encoding} body: {exc}")
    error.__cause__ = exc
    return error


class _Zlib:
    """A zlib layer whose output is bounded per call; ``_tail`` is the compressed input
    zlib has not consumed yet because of the bound."""

    encoding = ""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._tail = b""
        self._obj: Any = None

    @property
    def pending(self) -> bool:
        return bool(self._tail)

    def _decompress(self, data: bytes) -> bytes:
        data = self._tail + data if self._tail else data
        try:
            out: bytes = self._obj.decompress(data, self._limit)
        except zlib.error as exc:
            raise _decode_error(self.encoding, exc) from exc
        self._tail = self._obj.unconsumed_tail
        if self._obj.eof:
            self._end_of_stream()
        return out

    def _end_of_stream(self) -> None:
        """What follows the end of the compressed stream: by default, not body."""
        self._tail = b""

    def flush(self) -> bytes:
        try:
            return self._obj.flush() if self._obj is not None else b""
        except zlib.error as exc:  # pragma: no cover - flush of a decompressobj does not raise in practice
            raise _decode_error(self.encoding, exc) from exc


class _GZip(_Zlib):
    """gzip, including several concatenated members (RFC 1952 allows them)."""

    encoding = "gzip"

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def _end_of_stream(self) -> None:
        rest = self._obj.unused_data
        self._tail = rest
        if rest:  # another member: decoded by a fresh decompressor, from the next call on
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def decode(self, data: bytes) -> bytes:
        out = self._decompress(data)
        while not out and self._tail:  # a member boundary, or a header with no text yet
            before = self._tail
            out = self._decompress(b"")
            if self._tail == before:  # pragma: no cover - zlib always makes progress
                break
        return out


class _Deflate(_Zlib):
    """deflate as servers send it: zlib-wrapped (RFC 1950, what the RFC means) or raw
    (RFC 1951, what some servers send); the first bytes tell which."""

    encoding = "deflate"

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._head = b""

    def decode(self, data: bytes) -> bytes:
        if self._obj is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return b""
            # A zlib header: CMF/FLG with method 8 and a check value divisible by 31.
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        if self._obj.eof:
            return b""  # whatever follows the end of the deflate stream is not body
        return self._decompress(data)

    def flush(self) -> bytes:
        if self._obj is None and self._head:
            raise _decode_error("deflate", ValueError("the body ended inside the deflate header"))
        return super().flush()


class _Brotli:
    pending = False  # not bounded: the brotli package has no output limit in every version

    def __init__(self, limit: int) -> None:
        self._obj = _brotli.Decompressor()
        # brotli has process(); brotlicffi has decompress()
        self._process: Callable[[bytes], bytes] = getattr(self._obj, "process", None) or self._obj.decompress

    def decode(self, data: bytes) -> bytes:
        try:
            return self._process(data)
        except Exception as exc:  # brotli.error / brotlicffi.Error: whatever the package raises
            raise _decode_error("br", exc) from exc

    def flush(self) -> bytes:
        return b""


class _Zstd:
    pending = False  # not bounded, like _Brotli

    def __init__(self, limit: int) -> None:
        self._obj = _zstandard.ZstdDecompressor().decompressobj()

    def decode(self, data: bytes) -> bytes:
        out = []
        try:
            while data:
                out.append(self._obj.decompress(data))
                data = self._obj.unused_data if self._obj.eof else b""
                if data:  # another frame
                    self._obj = _zstandard.ZstdDecompressor().decompressobj()
        except Exception as exc:  # zstandard.ZstdError
            raise _decode_error("zstd", exc) from exc
        return b"".join(out)

    def flush(self) -> bytes:
        return b""


_LAYERS: Dict[str, Callable[[int], Any]] = {"gzip": _GZip, "x-gzip": _GZip, "deflate": _Deflate}
if _brotli is not None:
    _LAYERS["br"] = _Brotli
if _zstandard is not None:
    _LAYERS["zstd"] = _Zstd

# What requests advertises: exactly what can be decoded, best first.
ACCEPT_ENCODING = ", ".join(name for name in ("zstd", "br", "gzip", "deflate") if name in _LAYERS)


# Decoded bytes per decode() call and layer: what the transport reads from the socket at once.
DECODED_PER_CALL = 16384


def content_decoder(header: Optional[str], limit: int = DECODED_PER_CALL) -> Optional[ContentDecoder]:
    """The decoder for a ``Content-Encoding`` header; None for an identity body."""
    names = [name.strip().lower() for name in (header or "").split(",")]
    names = [name for name in names if name and name != "identity"]
    if not names:
        return None
    unknown = [name for name in names if name not in _LAYERS]
    if unknown:
        raise ProtocolError(
            f"the body is encoded with {', '.join(unknown)!s}, which streamcoord cannot decode "
            f"(it asked for {ACCEPT_ENCODING}); br needs the brotli package, zstd the zstandard package"
        )
    # The last encoding listed was applied last: undo it first.
    return ContentDecoder(", ".join(names), [_LAYERS[name](limit) for name in reversed(names)])
