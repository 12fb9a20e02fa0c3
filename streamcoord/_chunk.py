"""The chunk model: one piece of a streamed answer, the same for every provider."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from typing import Any, Dict, Iterator, List, Optional

__all__ = [
    "FINISH_REASONS", "Chunk", "RawJSON", "TextRun", "ToolCallAccumulator", "content_chunk", "new_chunk", "normalize_usage",
]

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

    Chunk.raw = property(get, write, doc="the provider's decoded event")


_lazy_raw()


class _Draft:
    """A ``Chunk`` under construction: the same fields in the same layout, not frozen.

    A frozen dataclass's ``__init__`` sets each of its nine fields through
    ``object.__setattr__``; a draft's fields are plain attribute stores, and the finished
    draft becomes a ``Chunk`` by one ``__class__`` assignment (allowed because the two
    layouts are identical). ``new_chunk`` runs once per chunk: 0.38 us against 2.8 us for
    the slot setters it replaced and 4.7 us for ``Chunk(...)`` (timeit, Python 3.11).
    """

    if hasattr(Chunk, "__slots__"):  # 3.10+; on 3.9 both classes keep fields in __dict__
        __slots__ = Chunk.__slots__


def new_chunk(
    content: str, finish_reason: Optional[str], model: Any, id: Any, index: int,  # noqa: A002
    usage: Optional[Dict[str, Any]], tool_calls: Optional[List[Dict[str, Any]]], metadata: Dict[str, Any], raw: Any,
) -> Chunk:
    """``Chunk(content, finish_reason, ..., raw)``, the same object, built faster (``_Draft``)."""
    chunk: Any = _Draft()
    chunk.content = content
    chunk.finish_reason = finish_reason
    chunk.model = model
    chunk.id = id
    chunk.index = index
    chunk.usage = usage
    chunk.tool_calls = tool_calls
    chunk.metadata = metadata
    chunk.raw = raw
    chunk.__class__ = Chunk
    return chunk  # type: ignore[no-any-return]


def content_chunk(content: str, model: Any, id: Any, index: int, raw: Any) -> Chunk:  # noqa: A002
    """The most common chunk, text only (``new_chunk`` with the other fields empty)."""
    chunk: Any = _Draft()
    chunk.content = content
    chunk.finish_reason = None
    chunk.model = model
    chunk.id = id
    chunk.index = index
    chunk.usage = None
    chunk.tool_calls = None
    chunk.metadata = {}
    chunk.raw = raw
    chunk.__class__ = Chunk
    return chunk  # type: ignore[no-any-return]


class TextRun:
    """Consecutive text-only chunks kept as columns of strings, without a ``Chunk`` each:
    what a parser makes of plain text deltas while recovery holds them for their store
    write (``ReadLoop._read``), and the queue item that hands them over; the consumer makes
    each ``Chunk`` as it yields it (``chunks()``), the same object ``content_chunk`` makes.

    Why: with recovery on, a flood's chunks wait for their write (a slice of up to ~10 ms,
    ~700 chunks) and then for the consumer, and held ``Chunk`` objects are what the cyclic
    garbage collector counts, scans and promotes; promoted to the oldest generation, they
    bring full collections, which in an application with a large heap cost more than the
    store writes. Strings and lists of them are not tracked at all. Measured with the
    official SDKs imported (~200k objects): two full collections, 307 ms per 100k chunks,
    before; none after (gc.callbacks around one stream of bench_throughput's workload).
    """

    __slots__ = ("first_index", "ids", "models", "raws", "texts")

    def __init__(self) -> None:
        self.texts: List[str] = []
        self.models: List[Any] = []
        self.ids: List[Any] = []
        # The events' JSON texts as plain str: a str subclass (RawJSON) is tracked by the
        # collector, a str is not (gc.is_tracked), so RawJSON is made as each chunk is.
        self.raws: List[str] = []
        self.first_index = 0  # the index of the first chunk; the others follow it one by one

    def __len__(self) -> int:
        return len(self.texts)

    def chunks(self) -> Iterator[Chunk]:
        """The chunks, each made when it is asked for."""
        start = self.first_index
        return map(content_chunk, self.texts, self.models, self.ids, range(start, start + len(self.texts)),
                   map(RawJSON, self.raws))


def normalize_usage(
    prompt_tokens: Optional[int], completion_tokens: Optional[int], total_tokens: Optional[int] = None
) -> Dict[str, int]:
    """Usage in the normalized vocabulary; total is derived when the provider omits it."""
    prompt = int(prompt_tokens or 0)
    completion = int(completion_tokens or 0)
    total = int(total_tokens) if total_tokens is not None else prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


class ToolCallAccumulator:
    """Assembles tool-call deltas (OpenAI form) into complete calls.

    A delta's ``index`` names the slot it continues: the first delta of a call brings
    ``id`` and ``function.name``, later ones append to ``function.arguments``. What real
    servers do beyond that is handled too:

    * a delta without ``index`` is a complete call of its own (Mistral, Gemini, Ollama);
    * a delta with another ``id`` than the call open at its index starts a new call there
      (OpenAI-compatible servers that send every call at ``"index": 0``), and so does a
      delta that names a function after the open call's arguments are already complete
      JSON (the same, without ids);
    * a repeated ``id`` or name (servers that send them in every fragment) is not
      appended to itself;
    * ``arguments`` given as a JSON object (allowed by Mistral's schema) is serialized.

    ``result()[i]["index"]`` is ``i``, the call's position in the list, whatever slot
    numbers the provider used (Anthropic's are content-block indexes).
    """

    __slots__ = ("_calls", "_open")

    def __init__(self) -> None:
        self._calls: List[Dict[str, Any]] = []
        self._open: Dict[Any, Dict[str, Any]] = {}  # provider's index -> the call it continues

    def add(self, deltas: List[Dict[str, Any]]) -> None:
        for delta in deltas:
            if not isinstance(delta, dict):
                continue
            function = delta.get("function")
            if not isinstance(function, dict):
                function = {}
            call_id = delta.get("id") if isinstance(delta.get("id"), str) else None
            name = function.get("name") if isinstance(function.get("name"), str) else None
            arguments = _arguments_text(function.get("arguments"))
            slot = delta.get("index")
            call = None if slot is None else self._open.get(slot)
            if call is not None and _starts_new_call(call, call_id, name, arguments):
                call = None
            if call is None:
                call = {
                    "index": len(self._calls),
                    "id": call_id,
                    "type": delta.get("type") or "function",
                    "function": {"name": name or "", "arguments": ""},
                }
                self._calls.append(call)
                if slot is not None:
                    self._open[slot] = call
            else:
                if call_id and not call["id"]:
                    call["id"] = call_id
                if name and not call["function"]["name"]:
                    call["function"]["name"] = name
            if arguments:
                call["function"]["arguments"] += arguments
            for key, value in delta.items():
                # Provider extras (e.g. Gemini's thought signature) ride along unchanged.
                if key not in ("index", "id", "type", "function"):
                    call[key] = value

    def result(self) -> List[Dict[str, Any]]:
        """Copies: the worker goes on adding to its own while the caller reads these."""
        return copy.deepcopy(self._calls)


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return ""
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


def _starts_new_call(call: Dict[str, Any], call_id: Optional[str], name: Optional[str], arguments: str) -> bool:
    """Whether a delta at the index of ``call`` is the start of another call."""
    if call_id and call["id"]:
        return bool(call_id != call["id"])
    if name and arguments and call["function"]["arguments"]:
        return _is_complete_json(call["function"]["arguments"])
    return False


def _is_complete_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
