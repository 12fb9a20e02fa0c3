"""Checking the request options an adapter accepts, so a typo fails loudly and early."""

from __future__ import annotations

import difflib
import inspect
import re
from typing import Any, Dict, Iterable, List

from streamcoord._options import STREAM_OPTIONS

__all__ = ["check_options", "merge_stream_options", "require_model"]

# Accepted by every adapter: the body's own model, and the escape hatches of the official
# SDKs (extra_body, extra_headers; extra_query is not accepted: no adapter needs a query).
COMMON_OPTIONS = frozenset({"model", "extra_body", "extra_headers", "stream"})

# Words (whole words of a snake_case, kebab-case or camelCase name) that make an option
# look like a credential or an account header: no request option is like it, so no
# closest name is suggested, only where it goes. "token" is a credential except next to
# a word that makes it a count (max_token, maxTokens, budget_tokens are limits).
_CREDENTIAL_WORDS = frozenset({
    "apikey", "auth", "authorization", "bearer", "credential", "credentials", "key", "organization",
    "passwd", "password", "secret", "token",
})
_COUNT_WORDS = frozenset({"budget", "count", "limit", "max", "min", "num"})
# A lower-case letter or digit followed by an upper-case one: a camelCase word boundary.
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def check_options(provider: str, options: Dict[str, Any], allowed: Iterable[str]) -> None:
    """Raise a TypeError that says what to do for an option the provider does not take.

    ``stream`` is accepted as the official SDKs take it (``stream=True``) and ignored:
    streamcoord always streams.
    """
    allowed = set(allowed) | COMMON_OPTIONS
    stream = options.get("stream", True)
    if stream is not True:
        raise ValueError(f"stream={stream!r}: streamcoord always streams; leave stream= out")
    for name in options:
        if name in allowed:
            continue
        if name in _client_arguments(provider):
            raise TypeError(
                f"{name!r} is an argument of the client, not of one request: pass it as "
                f"streamcoord.Client({provider!r}, {name}=...) (or to streamcoord.stream_chat)"
            )
        takers = _providers_taking(name)
        if takers:
            raise TypeError(
                f"{name!r} is a setting of provider {' and '.join(map(repr, takers))}, not an option of "
                f"{provider!r}: it goes to that provider's client, streamcoord.Client({takers[0]!r}, {name}=...)"
            )
        words = _words(name)
        if _looks_like_credential(words):
            raise TypeError(
                f"unknown option {name!r} for provider {provider!r}: credentials are not request "
                f"options. Pass the key to streamcoord.Client({provider!r}, api_key=...); any other "
                "account header to extra_headers={...}, never into the request body."
            )
        # camelCase compared as snake_case: topP is top_p, not stop.
        close = difflib.get_close_matches("_".join(words), sorted(allowed) + sorted(STREAM_OPTIONS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"unknown option {name!r} for provider {provider!r}.{hint} To send a provider "
            f"parameter streamcoord does not know, pass extra_body={{{name!r}: ...}}."
        )


def _words(name: str) -> List[str]:
    """The lower-case words of an option name: ``maxTokens`` and ``max-tokens`` are
    ``['max', 'tokens']``."""
    return [word for word in re.split(r"[_\-\s]+", _CAMEL_BOUNDARY.sub("_", name).lower()) if word]


def _looks_like_credential(words: List[str]) -> bool:
    credential = _CREDENTIAL_WORDS.intersection(words)
    if credential == {"token"}:
        return not _COUNT_WORDS.intersection(words)
    return bool(credential)


def _client_arguments(provider: str) -> List[str]:
    """The keyword arguments of ``streamcoord.Client`` (read from its signature: one
    source), and the provider's own settings (``Adapter.client_settings``). Imported
    here, not at module level: only an error path needs it."""
    from streamcoord._client import Client
    from streamcoord._registry import get

    names = [
        name for name, parameter in inspect.signature(Client.__init__).parameters.items()
        if name not in ("self", "provider") and parameter.kind is not parameter.VAR_KEYWORD
    ]
    try:
        names += list(get(provider).client_settings)
    except ValueError:  # an adapter that is not registered under its name: no settings known
        pass
    return names


def _providers_taking(setting: str) -> List[str]:
    """The registered providers that take ``setting`` as a client setting (an error path only)."""
    from streamcoord._registry import get, names

    return [name for name in names() if setting in get(name).client_settings]


def merge_stream_options(options: Dict[str, Any], ours: Dict[str, Any]) -> Dict[str, Any]:
    """The caller's ``stream_options`` (OpenAI's parameter) with ours added; a value the
    caller gave wins."""
    given = options.get("stream_options")
    if given is None:
        return dict(ours)
    if not isinstance(given, dict):
        raise TypeError(f"stream_options must be a dict such as {{'include_usage': True}}, got {given!r:.80}")
    return dict(ours, **given)


def require_model(provider: str, options: Dict[str, Any], example: str) -> str:
    model = options.get("model")
    if not model or not isinstance(model, str):
        raise ValueError(f"{provider} needs a model: pass model=..., e.g. model={example!r}")
    return model
