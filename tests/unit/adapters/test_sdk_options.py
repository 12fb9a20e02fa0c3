"""Every body parameter of each official SDK's streaming call is a request option the
adapter takes (the SDK's signature is the oracle: a new SDK parameter fails this test
until the adapter knows it), and the SDK's own client knobs say where they belong."""

from __future__ import annotations

import importlib
import inspect

import pytest

import adapters

MESSAGES = [{"role": "user", "content": "Hi"}]
# Parameters of the SDK call that are not request-body fields: the SDKs' own plumbing,
# or what streamcoord takes elsewhere (messages, stream options, Client arguments).
NOT_BODY = {
    "self", "messages", "model", "stream", "timeout", "extra_headers", "extra_query", "extra_body",
    "http_headers", "retries", "server_url", "timeout_ms", "betas",
}


def sdk_parameters(modules: str, owner: str, method: str):
    """The parameters of ``owner.method`` in the first of ``modules`` (space-separated:
    where the SDK's versions keep it) that imports."""
    for module in modules.split():
        try:
            sdk = importlib.import_module(module)
        except ImportError:
            continue
        break
    else:
        pytest.skip(f"none of {modules} imports (install the differential extra)")
    function = getattr(getattr(sdk, owner), method)
    return sorted(set(inspect.signature(function).parameters) - NOT_BODY)


@pytest.mark.parametrize("provider, modules, owner, method", [
    ("openai", "openai.resources.chat.completions", "Completions", "create"),
    ("anthropic", "anthropic.resources.messages", "Messages", "create"),
    ("mistral", "mistralai.client.chat mistralai.chat", "Chat", "stream"),
    ("ollama", "ollama", "Client", "chat"),
])
def test_every_body_parameter_of_the_official_sdk_is_accepted(provider, modules, owner, method):
    adapter = adapters.get(provider)
    for name in sdk_parameters(modules, owner, method):
        adapter.build_request(MESSAGES, {"model": "m", name: None}, base_url="http://x", api_key="k")


def test_anthropic_system_option_or_system_messages_but_not_both():
    adapter = adapters.get("anthropic")
    request = adapter.build_request(MESSAGES, {"model": "m", "system": "Be brief."}, base_url="http://x", api_key="k")
    assert request.json["system"] == "Be brief." and request.json["messages"] == MESSAGES
    with pytest.raises(ValueError, match="not both"):
        adapter.build_request([{"role": "system", "content": "A"}] + MESSAGES, {"model": "m", "system": "B"},
                              base_url="http://x", api_key="k")


@pytest.mark.parametrize("provider", ["openai", "anthropic", "mistral", "gemini", "ollama"])
def test_stream_true_is_accepted_and_stream_false_is_refused(provider):
    adapter = adapters.get(provider)
    adapter.build_request(MESSAGES, {"model": "m", "stream": True}, base_url="http://x", api_key="k")
    with pytest.raises(ValueError, match="always streams"):
        adapter.build_request(MESSAGES, {"model": "m", "stream": False}, base_url="http://x", api_key="k")
