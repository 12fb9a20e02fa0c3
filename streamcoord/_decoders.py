"""Incremental wire decoders: bytes in, events out, no I/O.

``SSEDecoder`` follows the WHATWG EventSource "event stream interpretation" rules: UTF-8
always; one leading BOM stripped; CR, LF and CRLF line ends (a CRLF split across two reads
is still one line end); ``:`` comments; ``data`` lines joined with ``\\n``; one leading space
stripped from a value; ``event``/``id``/``retry``; unknown fields ignored; an event not
terminated by a blank line at the end of the stream is discarded by ``flush`` (the
EventSource rule) and dispatched by ``finish`` (what the provider SDKs do, and what the
worker uses at a clean end of the body).

``NDJSONDecoder`` yields one event per non-blank line (its ``data`` is the line).

Both take arbitrary splits of the byte stream, including inside a UTF-8 character: lines are
cut on the bytes ``\\n``/``\\r``, which never occur inside a multi-byte UTF-8 sequence, and
only complete lines are decoded. A line longer than ``max_line_bytes`` is a ProtocolError
rather than unbounded memory.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import Any, List, Optional, Tuple

from streamcoord.errors import ProtocolError

__all__ = ["DEFAULT_MAX_LINE_BYTES", "NDJSONDecoder", "SSEDecoder", "ServerSentEvent"]

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024

_LINE_END = re.compile(r"\r\n|\r|\n")


class ServerSentEvent(Tuple[str, str, str, Optional[int]]):
    """One dispatched event: ``event`` (type, "message" by default), ``data``, ``id``, ``retry``.

    A tuple underneath: the decoder makes one per event, and a tuple is the cheapest
    object Python builds (``_event(ServerSentEvent, (data, type, id, retry))``).
    """

    __slots__ = ()

    def __new__(cls, data: str, event: str = "message", id: str = "", retry: Optional[int] = None) -> "ServerSentEvent":  # noqa: A002
        return tuple.__new__(cls, (data, event, id, retry))

    data = property(itemgetter(0), doc="the payload: the event's data lines joined with LF")
    event = property(itemgetter(1), doc='the event type; "message" when the stream names none')
    id = property(itemgetter(2), doc="the last event ID in force when the event was dispatched")
    retry = property(itemgetter(3), doc="the reconnection time the server asked for (ms), or None")

    def __repr__(self) -> str:
        return f"ServerSentEvent(event={self.event!r}, data={self.data!r}, id={self.id!r}, retry={self.retry!r})"


_event = tuple.__new__


def _too_long(limit: int) -> ProtocolError:
    return ProtocolError(
        f"a line of the stream is longer than max_line_bytes={limit}; the server is not sending "
        "a valid event stream (raise max_line_bytes if such long lines are expected)"
    )


class SSEDecoder:
    """Incremental ``text/event-stream`` decoder: ``feed(bytes) -> [ServerSentEvent]``."""

    def __init__(
        self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, last_event_id: str = "", end_marker: Optional[str] = None,
        data_strings: bool = False,
    ) -> None:
        self.max_line_bytes = max_line_bytes
        # For a parser that reads nothing but ``data`` (EventParser.takes_data_strings): an
        # event that is one ``data:`` line comes out as its data string, not an event
        # object (the other events still do).
        self.data_strings = data_strings
        # An event whose data is ``end_marker`` (OpenAI's "[DONE]") ends the stream: it is
        # not returned, ``done`` becomes True, and nothing after it is decoded.
        self.end_marker = end_marker
        self.done = False
        self.last_event_id = last_event_id  # persists across events, as in EventSource
        self.retry: Optional[int] = None  # the reconnection time the server asked for, ms
        self._tail = b""  # bytes of the current, incomplete line
        self._started = False  # the BOM is only stripped at the very start
        self._skip_lf = False  # the previous read ended in CR: a leading LF completes a CRLF
        # The event being built:
        self._data: Optional[str] = None
        self._type = ""
        self._id: Optional[str] = None

    def feed(self, chunk: bytes) -> List[ServerSentEvent]:
        if not chunk or self.done:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._tail:
            chunk = self._tail + chunk
        cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if cut < 0:
            if len(chunk) > self.max_line_bytes:
                raise _too_long(self.max_line_bytes)
            self._tail = chunk
            return []
        tail = chunk[cut + 1 :]
        if len(tail) > self.max_line_bytes:
            raise _too_long(self.max_line_bytes)
        self._tail = tail
        if chunk[cut] == 13 and not tail:  # b"\r" last: the LF of a CRLF may start the next read
            self._skip_lf = True
        text = chunk[: cut + 1].decode("utf-8", "replace")
        if not self._started:
            self._started = True
            if text[:1] == "\ufeff":
                text = text[1:]
        if cut > self.max_line_bytes:
            for line in _LINE_END.split(text):
                if len(line) > self.max_line_bytes:  # chars <= bytes, so this errs on the safe side
                    raise _too_long(self.max_line_bytes)
        if "\r" in text:
            lines = _LINE_END.split(text)
            del lines[-1]  # the text ends with a line end: the last item is always ""
            return self._lines(lines)
        return self._blocks(text)

    def _blocks(self, text: str) -> List[Any]:  # ServerSentEvents, and strs with data_strings
        """LF-only text, cut at blank lines: an event that is one ``data:`` line (nearly
        every LLM event) is dispatched without the line-by-line state machine."""
        blocks = text.split("\n\n")
        last = blocks.pop()  # after the last blank line: "" or lines of an unfinished event
        events: List[Any] = []
        append = events.append
        end_marker = self.end_marker
        data_strings = self.data_strings
        # "clean": no event half-built by earlier lines, so a one-line block is a whole event.
        clean = self._data is None and not self._type and self._id is None
        last_id, retry = self.last_event_id, self.retry
        for block in blocks:
            if clean:
                if block.startswith("data: ") and "\n" not in block:
                    data = block[6:]
                    if data == end_marker:
                        self.done = True
                        return events
                    # A str instead of a tuple per event: ~0.1 us of the ~0.7 us the decoder
                    # spends per OpenAI event (timeit, Python 3.11).
                    append(data if data_strings else _event(ServerSentEvent, (data, "message", last_id, retry)))
                    continue
                # An ``event:`` line and one ``data:`` line (Anthropic's every event): the
                # same without the state machine, which cost Anthropic streams ~1 us/event
                # (measured in benchmarks/bench_throughput.py).
                if block.startswith("event: "):
                    cut = block.find("\n")
                    if cut > 0 and block.startswith("data: ", cut + 1) and block.find("\n", cut + 1) < 0:
                        data = block[cut + 7:]
                        if data == end_marker:
                            self.done = True
                            return events
                        append(_event(ServerSentEvent, (data, block[7:cut] or "message", last_id, retry)))
                        continue
            lines = block.split("\n")
            lines.append("")  # the blank line that ended the block
            events += self._lines(lines)
            if self.done:
                return events
            clean = self._data is None and not self._type and self._id is None
            last_id, retry = self.last_event_id, self.retry
        if last:
            lines = last.split("\n")
            del lines[-1]
            events += self._lines(lines)
        return events

    def _lines(self, lines: List[str]) -> List[ServerSentEvent]:
        events: List[ServerSentEvent] = []
        data = self._data
        for line in lines:
            if line[:6] == "data: ":
                if data is None:
                    data = line[6:]
                    continue
                data = data + "\n" + line[6:]
                if len(data) > self.max_line_bytes:
                    raise _too_long(self.max_line_bytes)
                continue
            if not line:
                if data is not None:
                    if self._id is not None:
                        self.last_event_id = self._id
                        self._id = None
                    if data == self.end_marker:
                        self.done = True
                        self._data = None
                        self._type = ""
                        return events
                    events.append(ServerSentEvent(data, self._type or "message", self.last_event_id, self.retry))
                    data = None
                elif self._id is not None:
                    self.last_event_id = self._id
                    self._id = None
                self._type = ""
                continue
            if line[0] == ":":
                continue
            field, colon, value = line.partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
            if field == "data":
                data = value if data is None else data + "\n" + value
                if len(data) > self.max_line_bytes:
                    raise _too_long(self.max_line_bytes)
            elif field == "event":
                self._type = value
            elif field == "id":
                if "\x00" not in value:
                    self._id = value
            elif field == "retry":
                if value and value.isascii() and value.isdigit():
                    self.retry = int(value)
        self._data = data
        return events

    def finish(self) -> List[ServerSentEvent]:
        """At a clean end of the body: an event whose lines are all there but that lacks
        its terminating blank line is still dispatched, as the official provider SDKs do
        (a complete answer whose server skipped the last blank line is not cut short). A
        last line without its line end is discarded, like any incomplete line."""
        data = self._data
        events: List[ServerSentEvent] = []
        if data is not None and not self.done:
            if self._id is not None:
                self.last_event_id = self._id
            if data == self.end_marker:
                self.done = True
            else:
                events.append(ServerSentEvent(data, self._type or "message", self.last_event_id, self.retry))
        self.flush()
        return events

    def flush(self) -> List[ServerSentEvent]:
        """End of stream: an event without its terminating blank line is discarded (the
        EventSource rule; the worker uses ``finish``)."""
        self._tail = b""
        self._data = None
        self._type = ""
        self._id = None
        return []


class NDJSONDecoder:
    """Incremental newline-delimited JSON framing: one event per non-blank line."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._tail = b""

    def feed(self, chunk: bytes) -> List[ServerSentEvent]:
        if self._tail:
            chunk = self._tail + chunk
        cut = chunk.rfind(b"\n")
        if cut < 0:
            if len(chunk) > self.max_line_bytes:
                raise _too_long(self.max_line_bytes)
            self._tail = chunk
            return []
        tail = chunk[cut + 1 :]
        if len(tail) > self.max_line_bytes:
            raise _too_long(self.max_line_bytes)
        self._tail = tail
        lines = chunk[:cut].decode("utf-8", "replace").split("\n")
        if cut > self.max_line_bytes:
            for line in lines:
                if len(line) > self.max_line_bytes:
                    raise _too_long(self.max_line_bytes)
        return [_event(ServerSentEvent, (line, "message", "", None)) for line in lines if line.strip()]

    def finish(self) -> List[ServerSentEvent]:
        """At a clean end of the body: the same as ``flush``."""
        return self.flush()

    def flush(self) -> List[ServerSentEvent]:
        """End of stream: a last line without its newline is still a line."""
        tail, self._tail = self._tail, b""
        line = tail.decode("utf-8", "replace")
        return [ServerSentEvent(line)] if line.strip() else []
