"""The chunk model: one piece of a streamed answer, the same for every provider."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from typing import Any, Dict, List, Optional

__all__ = ["FINISH_REASONS", "Chunk", "RawJSON", "ToolCallAccumulator", "content_chunk", "normalize_usage"]

# The one finish_reason vocabulary all providers are mapped to.
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "error"})


# slots=True exists from Python 3.10; on 3.9 the class is the same, only a little larger.
@dataclasses.dataclass(frozen=True, **({"slots": True} if sys.version_info >= (3, 10) else {}))
class Chunk:
    """One piece of a streamed answer.

    ``content`` is the assistant text of this piece ("" when the piece carries only a finish
    reason, usage, tool-call deltas or reasoning). ``finish_reason`` uses the normalized
    vocabulary (``stop``, ``length``, ``tool_calls``, ``content_filter``, ``error``); the
    provider's own value is in ``metadata["raw_finish_reason"]``. ``usage`` uses
    ``prompt_tokens``/``completion_tokens``/``total_tokens``. ``tool_calls`` holds tool-call
    deltas in OpenAI form (``{"index", "id", "type", "function": {"name", "arguments"}}``);
    the stream assembles them into ``stream.tool_calls``. Reasoning/thinking text is in
    ``metadata["reasoning"]``, never in ``content``. ``raw`` is the provider's decoded event.
    """

    content: str = ""
    finish_reason: Optional[str] = None
    model: Optional[str] = None
    id: Optional[str] = None
    index: int = 0
    usage: Optional[Dict[str, Any]] = None
    tool_calls: Optional[List[Dict[str, Any]]] = None
    metadata: Dict[str, Any] = dataclasses.field(default_factory=dict)
    raw: Any = dataclasses.field(default=None, repr=False, compare=False)


class RawJSON(str):
    """The JSON text of a provider event, standing in for the decoded event in
    ``Chunk.raw`` until someone reads ``chunk.raw``; then it is decoded, once.

    Why: a decoded event is three or four dicts and lists, and while a batch of chunks
    waits for the consumer they keep Python's cyclic garbage collector busy, promoting them
    and, in an application with a large heap, rescanning everything. A str is not tracked
    by the collector at all. Measured in benchmarks/: this is the difference between
    falling behind a plain ``requests`` loop and beating it.
    """

    __slots__ = ()


def _lazy_raw() -> None:
    """Make ``Chunk.raw`` decode a RawJSON on first read (and keep the result)."""
    slot = Chunk.__dict__.get("raw")
    if slot is not None and hasattr(slot, "__set__"):  # a slot (3.10+)
        read, write = slot.__get__, slot.__set__
    else:  # no slots (3.9): the value lives in the instance's __dict__
        def read(chunk: "Chunk", _owner: Any = None) -> Any:
            return chunk.__dict__.get("raw")

        def write(chunk: "Chunk", value: Any) -> None:
            chunk.__dict__["raw"] = value

    def get(chunk: "Chunk") -> Any:
        value = read(chunk, Chunk)
        if value.__class__ is RawJSON:
            value = json.loads(value)
            write(chunk, value)
        return value

    Chunk.raw = property(get, write, doc="the provider's decoded event")  # type: ignore[assignment]


_lazy_raw()


def _content_chunk_factory():
    """A constructor for the most common chunk, text only, about twice as fast as
    ``Chunk(...)``: a frozen dataclass's ``__init__`` goes through ``object.__setattr__``
    once per field, while the slot descriptors set a field directly. It runs once per
    chunk, which makes it worth having. (Python 3.9 has no slotted dataclasses: there it
    is the plain constructor.)"""
    slots = getattr(Chunk, "__slots__", ())
    if tuple(slots) != ("content", "finish_reason", "model", "id", "index", "usage", "tool_calls", "metadata", "raw"):
        def content_chunk(content: str, model: Any, id: Any, index: int, raw: Any) -> Chunk:  # noqa: A002
            return Chunk(content, None, model, id, index, None, None, {}, raw)

        return content_chunk
    new = object.__new__
    set_content, set_finish, set_model, set_id, set_index, set_usage, set_tools, set_meta, set_raw = (
        getattr(Chunk, name).__set__ for name in slots
    )

    def content_chunk(content: str, model: Any, id: Any, index: int, raw: Any) -> Chunk:  # noqa: A002
        chunk = new(Chunk)
        set_content(chunk, content)
        set_finish(chunk, None)
        set_model(chunk, model)
        set_id(chunk, id)
        set_index(chunk, index)
        set_usage(chunk, None)
        set_tools(chunk, None)
        set_meta(chunk, {})
        set_raw(chunk, raw)
        return chunk

    return content_chunk


content_chunk = _content_chunk_factory()


def normalize_usage(
    prompt_tokens: Optional[int], completion_tokens: Optional[int], total_tokens: Optional[int] = None
) -> Dict[str, int]:
    """Usage in the normalized vocabulary; total is derived when the provider omits it."""
    prompt = int(prompt_tokens or 0)
    completion = int(completion_tokens or 0)
    total = int(total_tokens) if total_tokens is not None else prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


class ToolCallAccumulator:
    """Assembles tool-call deltas (OpenAI form) into complete calls, keyed by ``index``.

    The first delta of a call brings ``id`` and ``function.name``; later ones append to
    ``function.arguments``. A delta without ``index`` is a complete call (Mistral, Gemini)
    and gets the next free index.
    """

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: Dict[int, Dict[str, Any]] = {}

    def add(self, deltas: List[Dict[str, Any]]) -> None:
        for delta in deltas:
            index = delta.get("index")
            if index is None:
                index = max(self._calls, default=-1) + 1
            call = self._calls.get(index)
            function = delta.get("function") or {}
            if call is None:
                call = {
                    "index": index,
                    "id": delta.get("id"),
                    "type": delta.get("type") or "function",
                    "function": {"name": function.get("name") or "", "arguments": ""},
                }
                self._calls[index] = call
            else:
                if delta.get("id") and not call["id"]:
                    call["id"] = delta["id"]
                if function.get("name") and not call["function"]["name"]:
                    call["function"]["name"] = function["name"]
            arguments = function.get("arguments")
            if arguments:
                call["function"]["arguments"] += arguments
            for key, value in delta.items():
                # Provider extras (e.g. Gemini's thought signature) ride along unchanged.
                if key not in ("index", "id", "type", "function"):
                    call[key] = value

    def result(self) -> List[Dict[str, Any]]:
        """Copies: the worker goes on adding to its own while the caller reads these."""
        return copy.deepcopy([self._calls[i] for i in sorted(self._calls)])
