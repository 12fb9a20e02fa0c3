"""Provider adapters and their registry.

``adapters.get("openai")`` returns the adapter registered under a name;
``adapters.register("myprovider", MyAdapter())`` adds one (see ``adapters.base.Adapter``).
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, List, Union

# streamcoord first: adapters.base needs streamcoord's chunk model, and streamcoord's
# package init imports adapters.base; in this order ``import adapters`` alone works too.
import streamcoord  # noqa: F401  isort: skip
from adapters.anthropic import AnthropicAdapter
from adapters.base import Adapter, EventParser, HTTPRequest
from adapters.gemini import GeminiAdapter
from adapters.mistral import MistralAdapter
from adapters.ollama import OllamaAdapter
from adapters.openai import OpenAIAdapter, OpenAICompatibleAdapter

__all__ = ["Adapter", "EventParser", "HTTPRequest", "get", "names", "register"]

_lock = threading.Lock()
_registry: Dict[str, Callable[[], Adapter]] = {}


def register(name: str, adapter: Union[Adapter, Callable[[], Adapter]], *, replace: bool = False) -> None:
    """Register ``adapter`` (an instance, a subclass, or a factory) under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError("an adapter name must be a non-empty string")
    if isinstance(adapter, Adapter):
        instance = adapter
        factory: Callable[[], Adapter] = lambda: instance  # noqa: E731
    elif callable(adapter):
        factory = adapter
    else:
        raise TypeError(f"register() needs an Adapter instance or a factory, got {adapter!r}")
    with _lock:
        if name in _registry and not replace:
            raise ValueError(f"an adapter is already registered as {name!r}; pass replace=True to replace it")
        _registry[name] = factory


def get(name: str) -> Adapter:
    """The adapter registered as ``name``; ``ValueError`` listing the known names otherwise."""
    with _lock:
        factory = _registry.get(name)
    if factory is None:
        raise ValueError(
            f"unknown provider {name!r}: use one of {', '.join(names())}, "
            "or pass an Adapter instance (see adapters.base.Adapter)"
        )
    adapter = factory()
    if not isinstance(adapter, Adapter):
        raise TypeError(f"the factory registered as {name!r} returned {adapter!r}, not an Adapter")
    return adapter


def names() -> List[str]:
    with _lock:
        return sorted(_registry)


def _register_builtin() -> None:
    register("openai", OpenAIAdapter)
    register("anthropic", AnthropicAdapter)
    register("gemini", GeminiAdapter)
    register("ollama", OllamaAdapter)
    register("mistral", MistralAdapter)
    compatible = {
        # name: (default base_url, key variables, key required)
        "groq": ("https://api.groq.com/openai/v1", ("GROQ_API_KEY",), True),
        "openrouter": ("https://openrouter.ai/api/v1", ("OPENROUTER_API_KEY",), True),
        "deepseek": ("https://api.deepseek.com/v1", ("DEEPSEEK_API_KEY",), True),
        "together": ("https://api.together.xyz/v1", ("TOGETHER_API_KEY",), True),
        "lmstudio": ("http://localhost:1234/v1", (), False),
        "vllm": ("http://localhost:8000/v1", ("VLLM_API_KEY",), False),
        "openai_compatible": ("", ("OPENAI_COMPATIBLE_API_KEY",), False),
    }
    for name, (url, env, required) in compatible.items():
        register(name, lambda n=name, u=url, e=env, r=required: OpenAICompatibleAdapter(n, u, e, r))


_register_builtin()
