"""Provider adapters and their registry.

``adapters.get("openai")`` returns the adapter registered under a name;
``adapters.register("myprovider", MyAdapter())`` adds one (see ``streamcoord.Adapter``).
The registry itself lives in ``streamcoord._registry``; importing this package registers
the built-in adapters there.
"""

from __future__ import annotations

import functools

from adapters.anthropic import AnthropicAdapter
from adapters.azure_openai import AzureOpenAIAdapter, AzureResponsesAdapter
from adapters.bedrock import BedrockAdapter
from adapters.gemini import GeminiAdapter
from adapters.mistral import MistralAdapter
from adapters.ollama import OllamaAdapter
from adapters.openai import OpenAIAdapter, OpenAICompatibleAdapter
from adapters.openai_responses import OpenAIResponsesAdapter
from adapters.vertex import VertexAdapter
from streamcoord._adapter import Adapter, EventParser, HTTPRequest
from streamcoord._registry import get, names, register

__all__ = ["Adapter", "EventParser", "HTTPRequest", "get", "names", "register"]


def _register_builtin() -> None:
    register("openai", OpenAIAdapter)
    register("anthropic", AnthropicAdapter)
    register("gemini", GeminiAdapter)
    register("ollama", OllamaAdapter)
    register("mistral", MistralAdapter)
    register("openai_responses", OpenAIResponsesAdapter)
    register("azure_openai", AzureOpenAIAdapter)
    register("azure_openai_responses", AzureResponsesAdapter)
    register("bedrock", BedrockAdapter)
    register("vertex", VertexAdapter)
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
        register(name, functools.partial(OpenAICompatibleAdapter, name, url, env, required))


_register_builtin()
