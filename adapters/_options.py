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

# Names that look like a credential: never suggest sending them in the request body.
_CREDENTIAL = re.compile(r"key|token|secret|password|passwd|auth|credential|bearer", re.IGNORECASE)


def check_options(provider: str, options: Dict[str, Any], allowed: Iterable[str]) -> None:
    """Raise a TypeError that says what to do for an option the provider does not take.

    ``stream`` is accepted as the official SDKs take it (``stream=True``) and ignored:
    streamcoord always streams.
    """
    allowed = set(allowed) | COMMON_OPTIONS
    stream = options.get("stream", True)
    if stream is not True:
        raise ValueError(f"stream={stream!r}: streamcoord always streams; leave stream= out")
    client_arguments = _client_arguments()
    for name in options:
        if name in allowed:
            continue
        if name in client_arguments:
            raise TypeError(
                f"{name!r} is an argument of the client, not of one request: pass it as "
                f"streamcoord.Client({provider!r}, {name}=...) (or to streamcoord.stream_chat)"
            )
        close = difflib.get_close_matches(name, sorted(allowed) + sorted(STREAM_OPTIONS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        if _CREDENTIAL.search(name):
            raise TypeError(
                f"unknown option {name!r} for provider {provider!r}.{hint} Credentials go to "
                f"streamcoord.Client({provider!r}, api_key=...) or to extra_headers, never into "
                "the request body."
            )
        raise TypeError(
            f"unknown option {name!r} for provider {provider!r}.{hint} To send a provider "
            f"parameter streamcoord does not know, pass extra_body={{{name!r}: ...}}."
        )


def _client_arguments() -> List[str]:
    """The keyword arguments of ``streamcoord.Client`` (read from its signature: one
    source). Imported here, not at module level: only an error path needs it."""
    from streamcoord._client import Client

    return [name for name in inspect.signature(Client.__init__).parameters if name not in ("self", "provider")]


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
