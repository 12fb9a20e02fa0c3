"""From chunks to typed events (``stream.events()``), on the consumer's thread.

Tool-call deltas arrive in OpenAI form: the first fragment of call ``index`` brings its id
and name, later ones append to its arguments; a delta without ``index`` (Gemini, Ollama,
Mistral) is a complete call. Each fragment becomes a ``ToolCallDelta``; every call is
done (``ToolCallDone``, arguments parsed) when the answer's finish reason arrives or the
stream ends, whichever is first: only then is it certain that no fragment is missing. A
rewind (recovery) drops the calls not yet done: the continuation sends them again.

Partial arguments come from jiter's partial mode, as in openai-python and anthropic; jiter
is optional (extra ``partial-json``), and without it ``partial_arguments`` is None.
"""

from __future__ import annotations

import json
import types
from typing import Any, Dict, Iterator, List, Optional

from streamcoord._chunk import Chunk
from streamcoord._spec import Restart
from streamcoord.events import Done, Event, ReasoningDelta, Rewind, TextDelta, ToolCallDelta, ToolCallDone

_jiter: Optional[types.ModuleType]
try:  # optional: partial_arguments (extra "partial-json")
    import jiter as _jiter
except ImportError:  # pragma: no cover - exercised in a subprocess without jiter
    _jiter = None

__all__ = ["EventTranslator", "iter_events", "parse_partial", "refuse_events"]


def refuse_events(reading: Optional[str]) -> None:
    """``events()`` on a stream already being read (``reading``: "chunks" or "events"): a
    stream is read one way, or chunks would go missing from one reader or the other."""
    if reading == "chunks":
        raise ValueError(
            "this stream is already being read as chunks, and a stream is read one way: keep iterating its "
            "chunks, or call events() on a new stream (client.stream_chat(...)) before reading any chunk"
        )
    if reading == "events":
        raise ValueError(
            "events() was already called on this stream: keep reading the iterator it returned "
            "(a second one would split the events between them)"
        )


def parse_partial(text: str) -> Optional[Dict[str, Any]]:
    """The JSON object parsed so far from incomplete JSON, or None (no jiter, not an object yet)."""
    if _jiter is None or not text:
        return None
    try:
        value = _jiter.from_json(text.encode("utf-8"), partial_mode="trailing-strings")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parse_final(text: str) -> Optional[Dict[str, Any]]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class _Call:
    __slots__ = ("arguments", "id", "index", "name")

    def __init__(self, index: int, call_id: Optional[str], name: str) -> None:
        self.index = index
        self.id = call_id
        self.name = name
        self.arguments = ""


class EventTranslator:
    """Turns one stream's chunks, in order, into events."""

    def __init__(self) -> None:
        self._calls: Dict[int, _Call] = {}
        self._next_free = 0  # the index a complete call without one gets
        self._pending: List[Event] = []  # a rewind of 0 characters, due before the next event

    def restart(self, restart: Restart) -> None:
        """A recovery (the ``Restart`` marker, after its rewind chunk if any): the calls
        not yet done come again, whole. One ``Rewind`` per recovery, 0 characters when no
        text was cut."""
        self._calls.clear()
        self._next_free = 0
        if not restart.announced:
            self._pending.append(Rewind(0, restart.attempt, restart.strategy))

    def translate(self, chunk: Chunk) -> List[Event]:
        metadata = chunk.metadata
        if self._pending:
            events: List[Event] = self._pending
            self._pending = []
        elif not metadata and chunk.tool_calls is None and chunk.finish_reason is None:
            return [TextDelta(chunk.content)] if chunk.content else []
        else:
            events = []
        if "choice" in metadata:  # another of n choices: not part of the answer
            return events
        recovery = metadata.get("recovery")
        if recovery:
            self._calls.clear()
            self._next_free = 0
            events.append(Rewind(recovery["rewind"], recovery["attempt"], recovery["strategy"]))
        reasoning = metadata.get("reasoning")
        if reasoning:
            events.append(ReasoningDelta(reasoning))
        if chunk.content:
            events.append(TextDelta(chunk.content))
        for delta in chunk.tool_calls or ():
            events.append(self._tool_delta(delta))
        if chunk.finish_reason is not None:
            events.extend(self.finish())
        return events

    def _tool_delta(self, delta: Dict[str, Any]) -> ToolCallDelta:
        function = delta.get("function") or {}
        index = delta.get("index")
        if index is None:
            index = max(self._next_free, max(self._calls, default=-1) + 1)
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _Call(index, delta.get("id"), function.get("name") or "")
        else:
            call.id = call.id or delta.get("id")
            call.name = call.name or function.get("name") or ""
        self._next_free = max(self._next_free, index + 1)
        fragment = function.get("arguments") or ""
        if not isinstance(fragment, str):  # a provider that sends the object itself
            fragment = json.dumps(fragment, ensure_ascii=False)
        call.arguments += fragment
        return ToolCallDelta(call.index, call.id, call.name, fragment, parse_partial(call.arguments))

    def finish(self) -> List[Event]:
        """Every open call is done (the answer's finish, or the end of the stream)."""
        done: List[Event] = [
            ToolCallDone(c.index, c.id, c.name, _parse_final(c.arguments), c.arguments)
            for _, c in sorted(self._calls.items())
        ]
        self._calls.clear()
        return done

    def end(self) -> List[Event]:
        """What is due at the end of the stream, before ``Done``."""
        events, self._pending = self._pending, []
        return events + self.finish()


def iter_events(stream: Any, chunks: Iterator[Chunk], translator: EventTranslator) -> Iterator[Event]:
    """The events of ``stream`` from its chunk iterator; ends with ``Done``. Leaving the
    loop early closes the chunk iterator, which closes the stream."""
    translate = translator.translate
    try:
        for chunk in chunks:
            for event in translate(chunk):
                yield event
        yield from translator.end()
        yield Done(stream.finish_reason, stream.usage)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
