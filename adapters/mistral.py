"""Mistral chat completions (``POST {base_url}/chat/completions``, SSE, ``[DONE]``).

The wire format is OpenAI's with these differences, handled here on top of the OpenAI
parser:

* usage rides on the chunk that carries ``finish_reason`` (there is no ``stream_options``);
* a tool call arrives complete in one chunk, without ``index`` or ``type``: it is passed on
  without ``index`` so the stream's accumulator gives each call the next free one; its
  ``arguments`` may be a JSON object instead of a string (the schema allows both) and is
  serialized;
* reasoning models (Magistral) send ``delta.content`` as a LIST of typed parts:
  ``{"type": "text", "text"}`` is answer text, ``{"type": "thinking", "thinking": [parts]}``
  is reasoning and goes to ``metadata["reasoning"]``;
* a random-length ``p`` padding field (against length side channels) is ignored;
* an error can come as ``{"object": "error", "message", "type", "code"}``;
* a continuation (``"prefix": true``) may be answered starting with the prefix itself, which
  is then not given twice (see :class:`MistralParser`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Optional, Sequence

from adapters._options import check_options, require_model
from adapters.base import Adapter, EventParser, HTTPRequest, bearer_headers, error_message
from adapters.openai import FINISH_REASONS as OPENAI_FINISH_REASONS
from adapters.openai import OpenAIParser
from streamcoord._chunk import Chunk
from streamcoord.errors import api_error_for_type

__all__ = ["MistralAdapter", "MistralParser", "PrefixContinuation"]

FINISH_REASONS = dict(OPENAI_FINISH_REASONS, model_length="length", error="error")

# Request parameters passed through to the body unchanged.
# Request parameters passed through to the body unchanged: the body parameters of the
# official SDK's chat.stream().
PASSTHROUGH = (
    "temperature", "top_p", "stop", "tools", "tool_choice", "response_format", "n", "presence_penalty",
    "frequency_penalty", "parallel_tool_calls", "safe_prompt", "prediction", "prompt_mode", "random_seed",
    "metadata", "guardrails", "logprobs", "top_logprobs", "prompt_logprobs", "top_prompt_logprobs",
    "min_tokens", "prompt_cache_key", "reasoning_effort", "repetition_penalty", "service_tier", "top_k",
)


@dataclasses.dataclass(frozen=True, repr=False)  # repr=False: keep HTTPRequest's, which redacts keys
class PrefixContinuation(HTTPRequest):
    """A continuation request whose final assistant turn (``prefix``) the answer may
    begin by repeating: Mistral's documentation has the answer start with the prefix."""

    prefix: str = ""


class MistralParser(OpenAIParser):
    """Mistral's stream. On a continuation (``echo``: its prefix), an answer that starts by
    repeating the prefix is given without the repetition, so that the consumer's text is
    the kept text plus the continuation, nothing twice; an answer that does not is given
    as it comes."""

    finish_reasons = FINISH_REASONS
    fills_text_runs = False  # parse_into looks at what it parsed (the echo): Chunks only

    def __init__(self, provider: str = "mistral", echo: str = "") -> None:
        super().__init__(provider)
        self._echo: Optional[str] = echo or None  # None: decided
        self._held = ""  # answer text that may still turn out to be the echo

    def parse_into(self, events: Any, out: List[Chunk]) -> None:
        if self._echo is None:
            super().parse_into(events, out)
            return
        parsed: List[Chunk] = []
        try:
            super().parse_into(events, parsed)
        finally:
            out.extend(self._without_echo(parsed))
        self.plain = False

    def _without_echo(self, chunks: List[Chunk]) -> List[Chunk]:
        result = []
        for chunk in chunks:
            echo = self._echo
            if echo is None or "choice" in chunk.metadata or not (chunk.content or chunk.finish_reason):
                result.append(chunk)
                continue
            held = self._held + chunk.content
            if echo.startswith(held) and held != echo and not chunk.finish_reason:
                self._held = held  # could still be the echo: wait for more
                rest = ""
            else:
                rest = held[len(echo):] if held.startswith(echo) else held
                self._echo, self._held = None, ""
            if rest or chunk.finish_reason or chunk.usage or chunk.tool_calls or chunk.metadata:
                result.append(dataclasses.replace(chunk, content=rest))
        return result

    def parse_object(self, obj: Dict[str, Any], out: List[Chunk]) -> None:
        if obj.get("object") == "error":
            cls, status = api_error_for_type(str(obj.get("type") or obj.get("code") or ""))
            raise cls(f"mistral sent an error event: {error_message(obj)}", status=status, body=obj, provider=self.provider)
        choices = obj.get("choices")
        if not choices or not isinstance(choices, list) or not _needs_reshaping(choices):
            super().parse_object(obj, out)
            return
        # Rare events (typed content parts, tool calls): parse a reshaped copy, keep the
        # original as chunk.raw.
        reasoning: List[str] = []
        reshaped = dict(obj, choices=[_reshape(choice, reasoning) for choice in choices])
        parsed: List[Chunk] = []
        super().parse_object(reshaped, parsed)
        parsed = [dataclasses.replace(chunk, raw=obj) for chunk in parsed]
        if reasoning:
            thought = "".join(reasoning)
            main = next((i for i, c in enumerate(parsed) if "choice" not in c.metadata), None)
            if main is None:
                parsed.insert(0, self._chunk(obj, "", None, None, None, {"reasoning": thought}))
            else:
                parsed[main] = dataclasses.replace(parsed[main], metadata=dict(parsed[main].metadata, reasoning=thought))
        out.extend(parsed)


def _needs_reshaping(choices: List[Any]) -> bool:
    for choice in choices:
        delta = (choice.get("delta") if isinstance(choice, dict) else None) or {}
        if isinstance(delta.get("content"), list) or delta.get("tool_calls"):
            return True
    return False


def _reshape(choice: Any, reasoning: List[str]) -> Any:
    """A choice whose list content is flattened to text (thinking parts go to
    ``reasoning``, for choice 0 only) and whose tool calls get ``type`` and arguments as
    a JSON string (the schema allows an object)."""
    if not isinstance(choice, dict):
        return choice
    delta = choice.get("delta") or {}
    new_delta = dict(delta)
    content = delta.get("content")
    if isinstance(content, list):
        texts: List[str] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(part.get("text") or "")
            elif kind == "thinking" and not choice.get("index"):
                for inner in part.get("thinking") or ():
                    if isinstance(inner, dict) and inner.get("type") == "text":
                        reasoning.append(inner.get("text") or "")
                    elif isinstance(inner, str):
                        reasoning.append(inner)
        new_delta["content"] = "".join(texts)
    calls = delta.get("tool_calls")
    if calls:
        new_delta["tool_calls"] = [_tool_call(call) for call in calls if isinstance(call, dict)]
    return dict(choice, delta=new_delta)


def _tool_call(call: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(call, type=call.get("type") or "function")
    function = call.get("function")
    if isinstance(function, dict) and not isinstance(function.get("arguments"), (str, type(None))):
        out["function"] = dict(function, arguments=json.dumps(function["arguments"], ensure_ascii=False))
    return out


class MistralAdapter(Adapter):
    max_tokens_paths = (("max_tokens",),)
    name = "mistral"
    otel_provider_name = "mistral_ai"
    wire_format = "sse"
    default_base_url = "https://api.mistral.ai/v1"
    api_key_env: Sequence[str] = ("MISTRAL_API_KEY",)
    requires_api_key = True
    example_model = "mistral-small-latest"

    def build_request(
        self, messages: List[Dict[str, Any]], options: Dict[str, Any], *, base_url: str, api_key: Optional[str]
    ) -> HTTPRequest:
        check_options(self.name, options, PASSTHROUGH + ("max_tokens", "seed"))
        body: Dict[str, Any] = {
            "model": require_model(self.name, options, self.example_model),
            "messages": messages,
            "stream": True,
        }
        for key in PASSTHROUGH:
            if options.get(key) is not None:
                body[key] = options[key]
        if options.get("seed") is not None:
            body["random_seed"] = options["seed"]  # Mistral's name for it
        if options.get("max_tokens") is not None:
            body["max_tokens"] = options["max_tokens"]
        body.update(options.get("extra_body") or {})
        return HTTPRequest(url=f"{base_url}/chat/completions", json=body, headers=bearer_headers(api_key, options))

    def new_parser(self, request: HTTPRequest) -> EventParser:
        return MistralParser(self.name, request.prefix if isinstance(request, PrefixContinuation) else "")

    def build_continuation(self, request: HTTPRequest, partial_text: str) -> HTTPRequest:
        """Continue natively: the partial answer as a final assistant turn with
        ``"prefix": true``, which Mistral extends instead of answering anew. A prefix of the
        user's own (a last assistant message) is extended, not repeated."""
        body = dict(request.json or {})
        messages = list(body.get("messages") or [])
        prefix = partial_text
        last = messages[-1] if messages else None
        if last is not None and last.get("role") == "assistant" and isinstance(last.get("content"), str):
            prefix = messages.pop()["content"] + partial_text
        messages.append({"role": "assistant", "content": prefix, "prefix": True})
        body["messages"] = messages
        return PrefixContinuation(request.url, body, request.headers, request.method, prefix=prefix)
