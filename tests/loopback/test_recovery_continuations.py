"""Continuations as today's providers answer them, and the consumer gets the exact text
(what was kept plus the continuation, nothing twice):

* Anthropic models that take no assistant prefill (Claude 4.6: a final assistant turn is a
  400): the continuation goes through a user turn, known from the model table or learnt
  from the 400 (once, remembered for the process);
* Mistral's ``prefix: true``, whose answer may start by repeating the prefix."""

from __future__ import annotations

import uuid

import pytest

from adapters.base import CONTINUE_INSTRUCTION
from recovery_store import MemoryStore
from streamcoord.errors import APIError
from tests.support.fakeserver import anthropic_text, error, mistral_text

MESSAGES = [{"role": "user", "content": "Write two sentences."}]
PIECES = ["The first", " sentence. The sec", "ond one ", "goes on"]
KEPT = "The first sentence. The second one"  # exact strategy, trailing space trimmed
REST = " goes on and ends."
PREFILL_REFUSED = error(400, {"type": "error", "error": {
    "type": "invalid_request_error",
    "message": "This model does not support assistant message prefill. The conversation must end with a user message."}})


@pytest.fixture
def recovering(client):
    store = MemoryStore()

    def run(model, provider="anthropic", **options):
        stream = client(provider, recovery_store=store).stream_chat(
            MESSAGES, model=model, max_tokens=100, stream_recovery=True, recovery={"strategy": "exact"}, **options)
        chunks = list(stream)
        return stream, chunks

    yield run
    store.close()


def consumer_view(chunks):
    view = ""
    for chunk in chunks:
        view = view[: len(view) - (chunk.metadata.get("recovery") or {}).get("rewind", 0)] + chunk.content
    return view


@pytest.mark.parametrize("model, options", [
    ("claude-opus-4-6", {}),
    ("us.anthropic.claude-sonnet-4-6-v1", {}),
    ("claude-sonnet-4-5", {"thinking": {"type": "enabled", "budget_tokens": 1024}}),  # thinking takes none either
])
def test_a_model_known_to_take_no_prefill_is_continued_through_a_user_turn(server, recovering, model, options):
    server.enqueue(anthropic_text(PIECES, drop_after=3), anthropic_text([REST[:5], REST[5:]]))
    stream, chunks = recovering(model, **options)
    assert stream.text == consumer_view(chunks) == KEPT + REST
    assert len(server.requests) == 2
    assert server.requests[1].json["messages"] == MESSAGES + [
        {"role": "assistant", "content": KEPT}, {"role": "user", "content": CONTINUE_INSTRUCTION}]


def test_a_prefill_refused_with_400_is_retried_through_a_user_turn_and_remembered(server, recovering):
    model = f"claude-tomorrow-{uuid.uuid4().hex[:8]}"  # a model no table knows
    server.enqueue(anthropic_text(PIECES, drop_after=3), PREFILL_REFUSED, anthropic_text([REST]))
    stream, chunks = recovering(model)
    assert stream.text == consumer_view(chunks) == KEPT + REST
    assert stream.finish_reason == "stop"
    prefilled, retried = server.requests[1].json["messages"], server.requests[2].json["messages"]
    assert prefilled == MESSAGES + [{"role": "assistant", "content": KEPT}]
    assert retried == prefilled + [{"role": "user", "content": CONTINUE_INSTRUCTION}]

    # The next stream on that model continues through a user turn at once.
    server.enqueue(anthropic_text(PIECES, drop_after=3), anthropic_text([REST]))
    again, chunks = recovering(model)
    assert again.text == consumer_view(chunks) == KEPT + REST
    assert len(server.requests) == 5
    assert server.requests[4].json["messages"][-1] == {"role": "user", "content": CONTINUE_INSTRUCTION}


def test_a_continuation_refused_for_another_reason_is_not_retried(server, recovering):
    refused = error(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}})
    server.enqueue(anthropic_text(PIECES, drop_after=3), refused)
    with pytest.raises(APIError) as info:
        recovering("claude-sonnet-4-5")
    assert info.value.status == 400 and "too large" in str(info.value)
    assert len(server.requests) == 2


@pytest.mark.parametrize("echoed", [True, False])
def test_mistral_continuation_that_repeats_its_prefix_is_not_given_twice(server, recovering, echoed):
    kept = "".join(PIECES[:3])  # Mistral keeps the trailing space
    rest = REST.lstrip()
    answer = kept + rest if echoed else rest
    server.enqueue(mistral_text(PIECES, drop_after=3), mistral_text([answer[:7], answer[7:20], answer[20:]]))
    stream, chunks = recovering("mistral-small-latest", "mistral")
    assert stream.text == consumer_view(chunks) == kept + rest
    assert server.requests[1].json["messages"][-1] == {"role": "assistant", "content": kept, "prefix": True}
