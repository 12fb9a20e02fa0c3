"""The Responses adapter's request options, with openai-python's ``responses.create`` as
the oracle, and what it refuses."""

from __future__ import annotations

import json

import pytest

import adapters
import streamcoord
from tests.unit.adapters.test_sdk_options import MESSAGES, sdk_parameters

# Built from the messages, not passed through.
FROM_MESSAGES = {"input"}


@pytest.mark.parametrize("provider", ["openai_responses", "azure_openai_responses"])
def test_every_body_parameter_of_responses_create_is_accepted(provider):
    adapter = adapters.get(provider)
    names = set(sdk_parameters("openai.resources.responses", "Responses", "create")) - FROM_MESSAGES
    for name in sorted(names):
        request = adapter.build_request(MESSAGES, {"model": "m", name: "x"}, base_url="http://x/openai/v1", api_key="k")
        assert request.json[name] == "x", name


def test_input_is_built_from_messages_and_a_typo_is_refused():
    adapter = adapters.get("openai_responses")
    with pytest.raises(TypeError, match="unknown option 'input'"):
        adapter.build_request(MESSAGES, {"model": "m", "input": "Hi"}, base_url="http://x", api_key="k")
    with pytest.raises(TypeError, match="Did you mean 'max_output_tokens'"):
        adapter.build_request(MESSAGES, {"model": "m", "max_output_token": 5}, base_url="http://x", api_key="k")
    with pytest.raises(ValueError, match="not both"):
        adapter.build_request([{"role": "system", "content": "A"}] + MESSAGES, {"model": "m", "instructions": "B"},
                              base_url="http://x", api_key="k")


def new_parser():
    adapter = adapters.get("openai_responses")
    return adapter.new_parser(adapter.build_request(MESSAGES, {"model": "m"}, base_url="http://x", api_key="k"))


def event(obj):
    from streamcoord._decoders import ServerSentEvent

    return ServerSentEvent(json.dumps(obj), obj.get("type", "message"))


def test_an_event_without_sequence_number_still_makes_its_chunk():
    parser = new_parser()
    chunk = parser.parse(event({"type": "response.reasoning_text.delta", "delta": "Hmm"}))
    assert chunk.metadata == {"reasoning": "Hmm"} and parser.resume_state() is None


@pytest.mark.parametrize("obj", [
    {"type": "response.failed", "sequence_number": 3, "response": "not an object"},
    {"type": "error", "sequence_number": 3, "message": "boom"},
])
def test_malformed_failure_events_are_still_errors_of_our_tree(obj):
    parser = new_parser()
    with pytest.raises(streamcoord.APIError):
        parser.parse(event(obj))
