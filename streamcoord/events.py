"""Typed stream events: what ``stream.events()`` yields, the same for every provider.

    for event in client.stream_chat(messages, model="gpt-4o-mini", tools=tools).events():
        if isinstance(event, TextDelta):
            print(event.text, end="")
        elif isinstance(event, ToolCallDelta):
            show_growing(event.index, event.partial_arguments)   # None without jiter
        elif isinstance(event, ToolCallDone):
            run_tool(event.name, event.arguments)                # the parsed dict
        elif isinstance(event, Rewind):
            drop_last_characters(event.chars)                    # a recovery cut back
        elif isinstance(event, Done):
            print(event.finish_reason, event.usage)

A stream is read either as chunks (``for chunk in stream``) or as events, not both.
Breaking out of the loop closes the stream, as with chunks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Union

__all__ = ["Done", "Event", "ReasoningDelta", "Rewind", "TextDelta", "ToolCallDelta", "ToolCallDone"]


@dataclasses.dataclass(frozen=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str


@dataclasses.dataclass(frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning (thinking) text; never part of ``stream.text``."""

    text: str


@dataclasses.dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of tool call ``index``'s arguments (the first one also brings ``id``
    and ``name``; later ones repeat them). ``partial_arguments`` is the dict parsed so
    far from the incomplete JSON when jiter is installed (extra ``partial-json``), else
    None; it grows with each fragment."""

    index: int
    id: Optional[str]
    name: str
    arguments_delta: str
    partial_arguments: Optional[Dict[str, Any]] = None


@dataclasses.dataclass(frozen=True)
class ToolCallDone:
    """Tool call ``index`` is complete. ``arguments`` is the parsed JSON object; when the
    model's arguments are not a JSON object (malformed or cut short), ``arguments`` is
    None and ``raw_arguments`` holds the text as received, so the caller decides."""

    index: int
    id: Optional[str]
    name: str
    arguments: Optional[Dict[str, Any]]
    raw_arguments: str = ""


@dataclasses.dataclass(frozen=True)
class Rewind:
    """A recovery cut the answer back: drop the last ``chars`` characters of the text
    received so far. Tool calls not yet done start over (their fragments come again)."""

    chars: int
    attempt: int
    strategy: str


@dataclasses.dataclass(frozen=True)
class Done:
    """The end of the answer: the final ``finish_reason`` and ``usage`` (as ``stream.usage``)."""

    finish_reason: Optional[str]
    usage: Optional[Dict[str, Any]]


Event = Union[TextDelta, ReasoningDelta, ToolCallDelta, ToolCallDone, Rewind, Done]
