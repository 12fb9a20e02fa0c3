"""The chunk-to-event translation on its own: tool-call arguments split anywhere give
partial dicts that only grow and a done call equal to the whole JSON; calls without an
index (sent whole) get the next free one; other choices stay out; a restart after a
recovery starts the open calls over; without jiter there are no partial arguments."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

import streamcoord._event_stream as event_stream
from streamcoord._chunk import Chunk
from streamcoord._event_stream import EventTranslator
from streamcoord._spec import Restart
from streamcoord.events import Rewind, TextDelta, ToolCallDelta, ToolCallDone

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
ARGUMENTS = st.dictionaries(st.text(min_size=1, max_size=6), JSON_VALUES, min_size=1, max_size=4)


def fragment_chunks(text, cuts, index=0):
    bounds = [0] + sorted(set(cuts)) + [len(text)]
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    first = Chunk(tool_calls=[{"index": index, "id": "call_1", "function": {"name": "f", "arguments": ""}}],
                  metadata={"x": 1})
    return [first] + [Chunk(tool_calls=[{"index": index, "function": {"arguments": p}}]) for p in pieces]


@settings(max_examples=60, deadline=None)
@given(ARGUMENTS, st.lists(st.integers(min_value=1, max_value=200), max_size=12))
def test_arguments_split_anywhere_grow_as_partial_dicts_and_end_as_the_whole_object(arguments, cuts):
    text = json.dumps(arguments)
    translator = EventTranslator()
    events = [e for chunk in fragment_chunks(text, [c for c in cuts if c < len(text)]) for e in translator.translate(chunk)]
    events += translator.finish()
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert "".join(d.arguments_delta for d in deltas) == text
    keys = [list(d.partial_arguments or {}) for d in deltas]
    # jiter may finish a trailing key's string early, so the last key seen can still grow;
    # every key before it is final.
    assert all(a[: len(a) - 1] == b[: max(len(a) - 1, 0)] for a, b in zip(keys, keys[1:]))
    assert deltas[-1].partial_arguments == arguments
    assert events[-1] == ToolCallDone(0, "call_1", "f", arguments, text)


def test_calls_sent_whole_get_the_next_free_index_and_other_choices_stay_out():
    translator = EventTranslator()
    whole = [{"function": {"name": "a", "arguments": '{"x": 1}'}}, {"function": {"name": "b", "arguments": "{}"}}]
    events = translator.translate(Chunk(tool_calls=whole, metadata={"raw": 1}))
    events += translator.translate(Chunk(content="other", metadata={"choice": 1}))
    events += translator.translate(Chunk(finish_reason="tool_calls"))
    assert [(e.index, e.name) for e in events if isinstance(e, ToolCallDelta)] == [(0, "a"), (1, "b")]
    assert [(e.index, e.arguments) for e in events if isinstance(e, ToolCallDone)] == [(0, {"x": 1}), (1, {})]
    assert not any(isinstance(e, TextDelta) for e in events)


def test_a_restart_drops_the_open_calls_and_announces_a_rewind_of_nothing_once():
    translator = EventTranslator()
    translator.translate(Chunk(tool_calls=[{"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a": "Pa'}}]))
    translator.restart(Restart(1, "exact", announced=False))
    events = translator.translate(Chunk(tool_calls=[{"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a": "Paris"}'}}]))
    assert events[0] == Rewind(0, 1, "exact")
    assert translator.finish() == [ToolCallDone(0, "c", "f", {"a": "Paris"}, '{"a": "Paris"}')]
    translator.restart(Restart(2, "paragraph", announced=True))  # its rewind chunk said it already
    assert translator.end() == []


def test_without_jiter_partial_arguments_are_none(monkeypatch):
    monkeypatch.setattr(event_stream, "_jiter", None)
    translator = EventTranslator()
    (delta,) = translator.translate(Chunk(tool_calls=[{"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a": 1}'}}]))
    assert delta.partial_arguments is None
    assert translator.finish()[0].arguments == {"a": 1}
