"""What the Flask and Django examples share: the chat page and the model they stream from.

With no key in the environment, the model is streamcoord's embedded demo provider,
started in this process (no key, no network); it drops its first connection part-way
through the answer, so the page shows a recovery. With a key, a real provider:

    OPENAI_API_KEY=sk-...          OpenAI, model gpt-4o-mini
    ANTHROPIC_API_KEY=sk-ant-...   Anthropic, model claude-sonnet-4-5
    STREAMCOORD_PROVIDER=ollama    any registered provider (its key from its usual variable)
    STREAMCOORD_MODEL=...          another model; STREAMCOORD_BASE_URL=... another server

Answers are detached from the browser's connection (``web.open_stream(detach=True)``): one
generation per answer, followed by every connection of the page, in whichever server
process it lands. The processes share the recovery store:

    REDIS_URL=redis://host:6379/0      a RedisStore (several machines); needs the redis extra
    STREAMCOORD_RECOVERY_DIR=/path     else a DiskStore in this directory (processes of one machine)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import streamcoord
from streamcoord._demo import DemoProvider

PAGE_PATH = Path(__file__).with_name("chat_page.html")
MAX_PROMPT_CHARS = 4000
# Seconds between metrics events while an answer streams (the page shows them live).
METRICS_INTERVAL = 1.0
# Answers outlive the browser's connection (see the module docstring). False ties each
# answer to its connection instead: a reconnect resumes it (one process, or sticky sessions).
DETACH = True

DEFAULT_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.0-flash",
    "mistral": "mistral-small-latest",
    "ollama": "llama3",
}


def page_html() -> bytes:
    return PAGE_PATH.read_bytes()


class Backend:
    """The client an example app streams from, and the options of every stream."""

    def __init__(
        self,
        client: streamcoord.Client,
        options: Dict[str, Any],
        description: str,
        demo: Optional[DemoProvider] = None,
    ) -> None:
        self.client = client
        self.options = options
        self.description = description
        self._demo = demo

    def stop(self, stream_id: str) -> None:
        """The page's Stop button: end the answer's generation, wherever it runs."""
        self.client.cancel_stream(stream_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, recovery_store: Any = None) -> "Backend":
        if recovery_store is None:
            recovery_store = shared_store(env)
        provider = env.get("STREAMCOORD_PROVIDER") or (
            "openai" if env.get("OPENAI_API_KEY") else "anthropic" if env.get("ANTHROPIC_API_KEY") else None
        )
        options: Dict[str, Any] = {"track_metrics": True, "recovery": {"strategy": "paragraph"}}
        if provider is None:
            return cls.demo(recovery_store=recovery_store)
        model = env.get("STREAMCOORD_MODEL") or DEFAULT_MODELS.get(provider)
        if model is None:
            raise ValueError(f"set STREAMCOORD_MODEL: there is no default model for provider {provider!r}")
        client = streamcoord.Client(
            provider, base_url=env.get("STREAMCOORD_BASE_URL") or None, recovery_store=recovery_store
        )
        return cls(client, dict(options, model=model), f"{provider} ({model})")

    @classmethod
    def demo(cls, delay: float = 0.03, drops: int = 1, recovery_store: Any = None) -> "Backend":
        """The embedded demo provider, started now and stopped by ``close()``."""
        demo = DemoProvider(delay=delay, drops=drops).__enter__()
        client = streamcoord.Client(
            "openai", api_key="demo-key", base_url=demo.base_url, recovery_store=recovery_store,
            # The demo's drop is a local event: recover from it without a long back-off.
            max_retries=streamcoord.Retry(2, backoff=0.05, max_backoff=0.2),
        )
        options = {"model": "demo-model", "track_metrics": True, "recovery": {"strategy": "paragraph"}}
        return cls(client, options, "the embedded demo provider (no key set)", demo)

    def close(self) -> None:
        if self._demo is not None:
            self._demo.__exit__(None, None, None)
            self._demo = None


def shared_store(env: Mapping[str, str] = os.environ) -> Any:
    """The store every server process shares: a RedisStore for ``REDIS_URL``; else None,
    which is the default DiskStore (``STREAMCOORD_RECOVERY_DIR`` or the user's cache)."""
    url = env.get("REDIS_URL")
    if not url:
        return None
    from recovery_store import RedisStore

    return RedisStore(url)


_backend: Optional[Backend] = None
_backend_lock = threading.Lock()


def backend() -> Backend:
    """The process's backend, made on first use (so importing an app starts nothing)."""
    global _backend
    with _backend_lock:
        if _backend is None:
            _backend = Backend.from_env()
        return _backend


def prompt_messages(prompt: Optional[str]) -> list:
    """The messages of a new answer; ValueError (answer 400) for a missing or huge prompt."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValueError("the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt is longer than {MAX_PROMPT_CHARS} characters")
    return [{"role": "user", "content": prompt}]
