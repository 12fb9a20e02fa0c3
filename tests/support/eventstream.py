"""Building AWS event stream messages (``application/vnd.amazon.eventstream``) for tests.

An encoder of our own, written from the format's description (botocore has none); the
tests check that botocore's ``EventStreamBuffer`` decodes what it builds.
"""

from __future__ import annotations

import json
import struct
from binascii import crc32
from typing import Any, List, Tuple

__all__ = ["bedrock_event", "bedrock_exception", "encode_message", "header"]

Header = Tuple[str, int, Any]

_FIXED = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


def header(name: str, value: Any, kind: int = 7) -> Header:
    return (name, kind, value)


def _header_bytes(headers: List[Header]) -> bytes:
    out = bytearray()
    for name, kind, value in headers:
        raw = name.encode("utf-8")
        out += struct.pack(">B", len(raw)) + raw + struct.pack(">B", kind)
        if kind in (0, 1):
            continue
        if kind in _FIXED:
            out += struct.pack(_FIXED[kind], value)
        elif kind in (6, 7):
            data = value.encode("utf-8") if kind == 7 else value
            out += struct.pack(">H", len(data)) + data
        elif kind == 9:
            out += value
        else:
            raise ValueError(kind)
    return bytes(out)


def encode_message(headers: List[Header], payload: bytes) -> bytes:
    head = _header_bytes(headers)
    total = 16 + len(head) + len(payload)
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", crc32(body))


def bedrock_event(event_type: str, payload: Any) -> bytes:
    """One ConverseStream event, as Bedrock frames it."""
    return encode_message(
        [header(":event-type", event_type), header(":content-type", "application/json"), header(":message-type", "event")],
        json.dumps(payload).encode(),
    )


def bedrock_exception(exception_type: str, message: str) -> bytes:
    return encode_message(
        [header(":exception-type", exception_type), header(":content-type", "application/json"),
         header(":message-type", "exception")],
        json.dumps({"message": message}).encode(),
    )
