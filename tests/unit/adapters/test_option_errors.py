"""What an option the adapter does not take is told: the closest name (camelCase read as
snake_case), or, for a name that looks like a credential, only where credentials go."""

from __future__ import annotations

import pytest

import adapters

MESSAGES = [{"role": "user", "content": "Hi"}]


def refusal(provider, name):
    with pytest.raises(TypeError) as info:
        adapters.get(provider).build_request(MESSAGES, {"model": "m", name: 1}, base_url="http://x", api_key="k")
    return str(info.value)


@pytest.mark.parametrize("provider, name, suggestion", [
    (provider, name, suggestion)
    for provider in ("openai", "anthropic", "gemini")
    for name, suggestion in (("max_token", "max_tokens"), ("maxTokens", "max_tokens"), ("topP", "top_p"),
                             ("temprature", "temperature"))
    if not (provider == "gemini" and suggestion == "max_tokens")  # gemini's is max_output_tokens
])
def test_a_misspelt_option_is_told_its_closest_name_and_not_about_credentials(provider, name, suggestion):
    message = refusal(provider, name)
    assert f"Did you mean {suggestion!r}?" in message
    assert "credential" not in message.lower()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("name", ["Authorization", "authorization", "x_api_key", "apiKey", "token", "accessToken",
                                  "organization", "client_secret"])
def test_a_credential_like_option_is_told_to_go_to_the_client_with_no_closest_name(provider, name):
    message = refusal(provider, name)
    assert f"streamcoord.Client({provider!r}, api_key=...)" in message
    assert "Did you mean" not in message
