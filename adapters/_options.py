"""Checking the request options an adapter accepts, so a typo fails loudly and early."""

from __future__ import annotations

import difflib
from typing import Any, Dict, Iterable

from streamcoord._options import STREAM_OPTIONS

__all__ = ["check_options", "require_model"]


def check_options(provider: str, options: Dict[str, Any], allowed: Iterable[str]) -> None:
    allowed = set(allowed) | {"model", "extra_body", "extra_headers"}
    for name in options:
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed) + sorted(STREAM_OPTIONS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"unknown option {name!r} for provider {provider!r}.{hint} To send a provider "
                f"parameter streamcoord does not know, pass extra_body={{{name!r}: ...}}."
            )


def require_model(provider: str, options: Dict[str, Any], example: str) -> str:
    model = options.get("model")
    if not model or not isinstance(model, str):
        raise ValueError(f"{provider} needs a model: pass model=..., e.g. model={example!r}")
    return model
