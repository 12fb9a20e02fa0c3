"""Incremental ``application/vnd.amazon.eventstream`` decoder: bytes in, messages out, no I/O.

The AWS event stream (Bedrock's ConverseStream body) is a sequence of binary messages::

    prelude   total length (uint32 BE), headers length (uint32 BE), CRC32 of those 8 bytes
    headers   name length (uint8), name (UTF-8), value type (uint8), value; repeated
    payload   total - headers - 16 bytes (JSON for Bedrock)
    trailer   CRC32 of everything before it

Both CRCs are checked; a mismatch, a size out of bounds, an unknown header type or a
repeated header name is a ProtocolError (a stream that went wrong cannot be resynchronised:
there is no delimiter to look for). Messages may be split anywhere across reads. Header
values decode as botocore's ``EventStreamBuffer`` decodes them (the tests check it on
random messages): bools, ints, ``bytes`` for byte arrays and UUIDs, ``str`` for strings,
and timestamps as ``int`` milliseconds since the epoch.
"""

from __future__ import annotations

import struct
from binascii import crc32
from typing import Any, Dict, List, Optional

from streamcoord.errors import ProtocolError

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "MAX_HEADERS_BYTES", "EventStreamDecoder", "EventStreamMessage"]

# botocore's limit for the headers; a whole message is bounded by the stream's
# max_line_bytes (8 MiB by default: botocore allows 24 MiB payloads, more than any chat
# event needs).
MAX_HEADERS_BYTES = 128 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
_PRELUDE = struct.Struct(">III")
_PRELUDE_BYTES = 12
_OVERHEAD = 16  # prelude and the message CRC

# Value type -> its struct, for the fixed-size types (8, a timestamp, is int64 ms).
_FIXED = {2: struct.Struct(">b"), 3: struct.Struct(">h"), 4: struct.Struct(">i"), 5: struct.Struct(">q"),
          8: struct.Struct(">q")}
_LENGTH = struct.Struct(">H")
_CRC = struct.Struct(">I")


class EventStreamMessage:
    """One decoded message: ``headers`` (dict, shared by messages with the same header
    bytes: read it, do not change it) and ``payload`` (bytes).

    ``event`` is the ``:event-type`` (or ``:exception-type``) header and ``data`` the payload
    as text, the two fields the adapters' parsers read from an SSE event too.
    """

    __slots__ = ("headers", "payload")

    def __init__(self, headers: Dict[str, Any], payload: bytes) -> None:
        self.headers = headers
        self.payload = payload

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", "event"))

    @property
    def event(self) -> str:
        headers = self.headers
        return headers.get(":event-type") or headers.get(":exception-type") or headers.get(":error-code") or ""

    @property
    def data(self) -> str:
        return self.payload.decode("utf-8", "replace")

    id = ""

    def __repr__(self) -> str:
        return f"EventStreamMessage(headers={self.headers!r}, payload={self.payload[:200]!r})"


class EventStreamDecoder:
    """``feed(bytes) -> [EventStreamMessage]``; ``finish()`` at the end of the body.

    A message split across reads is collected in one ``bytearray`` (appending is amortised
    O(1) a byte): joining the pending bytes and each read anew would copy a message near the
    8 MiB maximum, arriving in 64 KiB reads, about 128 times (~0.5 GB). A read that starts
    with no bytes pending is decoded where it lies, without a copy.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._pending = bytearray()  # the bytes of an incomplete message
        self._needed = 0  # its length, once its prelude has arrived (and passed its checks)
        # A corrupt message after good ones in the same read: the good ones are returned
        # and the error raised by the next call, so nothing before the damage is lost.
        self._error: Optional[ProtocolError] = None
        # Messages of one event type carry the same header bytes: decoded once each.
        self._known_headers: Dict[bytes, Dict[str, Any]] = {}

    def feed(self, data: bytes) -> List[EventStreamMessage]:
        if self._error is not None:
            raise self._error
        out: List[EventStreamMessage] = []
        pending = self._pending
        try:
            if not pending:
                used = self._decode(data, out)
                if used < len(data):
                    pending += memoryview(data)[used:]
                return out
            pending += data
            if len(pending) < self._needed:  # the rest of a long message is still coming
                return out
            used = self._decode(pending, out)
            del pending[:used]  # what is left is less than one message
        except ProtocolError as exc:
            pending.clear()
            self._needed = 0
            if not out:
                raise
            self._error = exc
        return out

    def _decode(self, buffer: Any, out: List[EventStreamMessage]) -> int:
        """Append the complete messages in ``buffer`` (bytes or bytearray) to ``out``; the
        number of bytes they took."""
        self._needed = 0
        with memoryview(buffer) as view:  # released before the bytearray is resized
            size = len(view)
            pos = 0
            known = self._known_headers
            while size - pos >= _PRELUDE_BYTES:
                total, headers_length, prelude_crc = _PRELUDE.unpack_from(view, pos)
                if crc32(view[pos:pos + 8]) != prelude_crc:
                    raise ProtocolError("the event stream's message prelude fails its CRC32 check (a corrupt stream)")
                if total > self.max_message_bytes:
                    raise ProtocolError(
                        f"an event stream message of {total} bytes is longer than max_line_bytes={self.max_message_bytes}"
                    )
                if headers_length > MAX_HEADERS_BYTES or total < _OVERHEAD + headers_length:
                    raise ProtocolError(
                        f"an event stream message has impossible lengths (total {total}, headers {headers_length})"
                    )
                end = pos + total
                if size < end:
                    self._needed = total
                    break
                (message_crc,) = _CRC.unpack_from(view, end - 4)
                if crc32(view[pos:end - 4]) != message_crc:
                    raise ProtocolError("an event stream message fails its CRC32 check (a corrupt stream)")
                headers_end = pos + _PRELUDE_BYTES + headers_length
                raw_headers = bytes(view[pos + _PRELUDE_BYTES:headers_end])
                headers = known.get(raw_headers)
                if headers is None:
                    headers = _headers(raw_headers)
                    if len(known) < 64:
                        known[raw_headers] = headers
                out.append(EventStreamMessage(headers, bytes(view[headers_end:end - 4])))
                pos = end
        return pos

    def finish(self) -> List[EventStreamMessage]:
        """The end of the body: bytes of an incomplete message are dropped (the parser,
        which never saw the end of the answer, reports the stream as cut short)."""
        if self._error is not None:
            raise self._error
        self._pending.clear()
        self._needed = 0
        return []

    flush = finish


def _headers(data: bytes) -> Dict[str, Any]:
    headers: Dict[str, Any] = {}
    pos = 0
    size = len(data)
    try:
        while pos < size:
            name_length = data[pos]
            name = data[pos + 1:pos + 1 + name_length].decode("utf-8")
            pos += 1 + name_length
            if pos >= size:
                raise ValueError("a header name runs past the headers")
            kind = data[pos]
            pos += 1
            if kind == 0 or kind == 1:
                value: Any = kind == 0
            elif kind in _FIXED:
                fixed = _FIXED[kind]
                (value,) = fixed.unpack_from(data, pos)
                pos += fixed.size
            elif kind == 6 or kind == 7:
                (length,) = _LENGTH.unpack_from(data, pos)
                pos += 2
                value = data[pos:pos + length]
                if len(value) != length:
                    raise ValueError("a header value runs past the headers")
                if kind == 7:
                    value = value.decode("utf-8")
                pos += length
            elif kind == 9:
                value = data[pos:pos + 16]
                if len(value) != 16:
                    raise ValueError("a UUID header runs past the headers")
                pos += 16
            else:
                raise ValueError(f"unknown header value type {kind}")
            if name in headers:
                raise ValueError(f"the header {name!r} appears twice")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"an event stream message has malformed headers: {exc}") from None
    return headers
