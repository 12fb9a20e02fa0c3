"""The conformance corpus (recorded provider streams) and what each file must decode to.

Shared by the pure decode tests (tests/unit/adapters/test_conformance_decode.py) and the
full-stack loopback tests (tests/loopback/test_conformance.py). The expected normalized
values are derived here from the manifest's RAW values with tables written independently
of the adapters, so an adapter's mapping is checked, not copied.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any, Dict, List, Optional

import pytest

import adapters
from streamcoord._chunk import ToolCallAccumulator
from streamcoord._decoders import NDJSONDecoder, SSEDecoder
from tests.support.environment import CONFORMANCE_DIR

CONFORMANCE = str(CONFORMANCE_DIR)


def manifest_entries() -> List[Dict[str, Any]]:
    with open(os.path.join(CONFORMANCE, "MANIFEST.json"), encoding="utf-8") as f:
        return json.load(f)["files"]


ENTRIES = manifest_entries()


def entry_params(errors: bool = True):
    """pytest params over every manifest file (one skipped param when the corpus is absent);
    ``errors=False`` leaves out the files that end in an error event."""
    if not ENTRIES:
        return [pytest.param(None, marks=pytest.mark.skip(reason="conformance corpus not found "
                                                           "(set STREAMCOORD_CONFORMANCE_DIR)"))]
    return [pytest.param(e, id=e["file"]) for e in ENTRIES if errors or not e.get("error")]


def path_of(entry: Dict[str, Any]) -> str:
    return os.path.join(CONFORMANCE, entry["file"])


def body_of(entry: Dict[str, Any]) -> bytes:
    with open(path_of(entry), "rb") as f:
        return f.read()


# -- expected normalized values, from the raw ones -------------------------------------------
_FINISH = {
    "openai": {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"},
    "mistral": {"stop": "stop", "length": "length", "model_length": "length", "tool_calls": "tool_calls",
                "error": "error"},
    "anthropic": {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
                  "tool_use": "tool_calls", "refusal": "content_filter"},
    "gemini": {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
               "OTHER": "error", "MALFORMED_FUNCTION_CALL": "error"},
    "ollama": {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"},
}


def expected_finish(entry: Dict[str, Any]) -> Optional[str]:
    raw = entry["finish_reason"]
    if raw is None:
        return None
    normalized = _FINISH[entry["provider"]][raw]
    # Gemini and Ollama say STOP/stop after function calls; the normalized value says why.
    if normalized == "stop" and entry["tool_calls"] and entry["provider"] in ("gemini", "ollama"):
        return "tool_calls"
    return normalized


def expected_usage(entry: Dict[str, Any]) -> Optional[Dict[str, int]]:
    raw = entry["usage"]
    if raw is None:
        return None
    provider = entry["provider"]
    if provider in ("openai", "mistral"):
        return {k: raw[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if provider == "anthropic":
        # prompt_tokens is input_tokens alone (cache tokens stay in raw_usage).
        p, c = raw["input_tokens"], raw["output_tokens"]
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    if provider == "gemini":
        # thinking tokens count as completion, tool-use prompt tokens as prompt: p + c == total.
        p = raw["promptTokenCount"] + raw.get("toolUsePromptTokenCount", 0)
        c = raw.get("candidatesTokenCount", 0) + raw.get("thoughtsTokenCount", 0)
        assert p + c == raw["totalTokenCount"]
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": raw["totalTokenCount"]}
    if provider == "ollama":
        p, c = raw["prompt_eval_count"], raw["eval_count"]
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    raise AssertionError(provider)


# -- decoding a body the way the worker does -------------------------------------------------
class Outcome:
    """What a stream accumulates: the worker's view (text, finish, usage, tool calls,
    reasoning) plus the chunk metadata the manifest also pins down."""

    def __init__(self) -> None:
        self.chunks: List[Any] = []
        self.text_parts: List[str] = []
        self.by_choice: Dict[str, List[str]] = {}
        self.finish_by_choice: Dict[str, str] = {}
        self.finish_reason: Optional[str] = None
        self.raw_finish_reason: Any = None
        self.usage: Optional[Dict[str, int]] = None
        self.raw_usage: Any = None
        self.tools = ToolCallAccumulator()
        self.reasoning_parts: List[str] = []
        self.refusal_parts: List[str] = []

    def add(self, chunk: Any) -> None:
        self.chunks.append(chunk)
        meta = chunk.metadata
        if "choice" in meta:
            key = str(meta["choice"])
            self.by_choice.setdefault(key, []).append(chunk.content)
            if chunk.finish_reason:
                self.finish_by_choice[key] = meta.get("raw_finish_reason")
            return
        self.text_parts.append(chunk.content)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
            self.raw_finish_reason = meta.get("raw_finish_reason")
        if chunk.usage is not None:
            self.usage = chunk.usage
            self.raw_usage = meta.get("raw_usage")
        if chunk.tool_calls:
            self.tools.add(chunk.tool_calls)
        if meta.get("reasoning"):
            self.reasoning_parts.append(meta["reasoning"])
        if meta.get("refusal"):
            self.refusal_parts.append(meta["refusal"])

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    @property
    def tool_calls(self) -> List[Dict[str, Any]]:
        return self.tools.result()


def pieces(data: bytes, split=None, seed: int = 0) -> List[bytes]:
    if split is None:
        return [data]
    lo, hi = split
    rng, out, i = random.Random(seed), [], 0
    while i < len(data):
        n = rng.randint(lo, hi)
        out.append(data[i:i + n])
        i += n
    return out


def decode(provider: str, data: bytes, split=None, seed: int = 0) -> Outcome:
    """Feed ``data`` to the provider's decoder and parser as the worker does: stop at
    ``[DONE]`` (SSE) before the parser, else flush the decoder at the end, then
    ``parser.finish()``."""
    adapter = adapters.get(provider)
    parser = adapter.new_parser(None)
    decoder = SSEDecoder() if adapter.wire_format == "sse" else NDJSONDecoder()
    sse = adapter.wire_format == "sse"
    outcome = Outcome()
    done = False
    for piece in pieces(data, split, seed):
        for event in decoder.feed(piece):
            if sse and event.data == "[DONE]":
                parser.done = done = True
                break
            chunk = parser.parse(event)
            if chunk is not None:
                outcome.add(chunk)
        if done:
            break
    if not done:
        for event in decoder.flush():
            chunk = parser.parse(event)
            if chunk is not None:
                outcome.add(chunk)
    parser.finish()
    return outcome


# -- the assertions ----------------------------------------------------------------------
def check_tool_calls(entry: Dict[str, Any], calls: List[Dict[str, Any]]) -> None:
    expected = entry["tool_calls"]
    assert len(calls) == len(expected), calls
    for got, want in zip(calls, expected):
        assert got["type"] == "function"
        assert got["function"]["name"] == want["name"]
        assert got["id"] == want.get("id")
        parsed = want["arguments_parsed"] if "arguments_parsed" in want else want["args"]
        assert json.loads(got["function"]["arguments"]) == parsed
        if "has_thought_signature" in want:
            assert bool(got.get("thought_signature")) is want["has_thought_signature"]


def check_outcome(entry: Dict[str, Any], outcome: Outcome) -> None:
    """Everything the manifest says about ``entry``, checked against ``outcome``."""
    assert outcome.text == entry["expected_text"]
    assert outcome.raw_finish_reason == entry["finish_reason"]
    assert outcome.finish_reason == expected_finish(entry)
    assert outcome.usage == expected_usage(entry)
    if entry["usage"] is not None:
        assert outcome.raw_usage == entry["usage"]
    check_tool_calls(entry, outcome.tool_calls)
    assert outcome.reasoning == entry.get("reasoning_text", "")
    assert "".join(outcome.refusal_parts) == entry.get("refusal", "")
    by_choice = entry.get("expected_text_by_choice")
    if by_choice:
        for key, text in by_choice.items():
            if key != "0":
                assert "".join(outcome.by_choice[key]) == text
                assert outcome.finish_by_choice[key] == entry["finish_reason_by_choice"][key]
    else:
        assert outcome.by_choice == {}
    model = entry.get("model")
    if model and outcome.chunks and entry["provider"] != "openai":
        assert outcome.chunks[-1].model == model
    assert [c.index for c in outcome.chunks] == list(range(len(outcome.chunks)))
