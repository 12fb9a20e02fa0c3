"""OpenAI chat completions (``POST {base_url}/chat/completions``, SSE, ``[DONE]``).

Also the adapter for every OpenAI-compatible server (Groq, OpenRouter, vLLM, LM Studio,
DeepSeek, Together, ...): same wire format, another ``base_url`` and key variable.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from adapters._options import check_options, merge_stream_options, require_model
from adapters.base import Adapter, EventParser, HTTPRequest, bearer_headers, error_message, json_object, json_scan_once
from streamcoord._chunk import Chunk, RawJSON, content_chunk, new_chunk, normalize_usage
from streamcoord.errors import api_error_for_type

__all__ = ["OpenAIAdapter", "OpenAICompatibleAdapter", "OpenAIParser"]

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

# The accumulator slot of a legacy ``delta.function_call`` (never a real tool-call index).
LEGACY_FUNCTION_CALL = "function_call"

# Request parameters passed through to the body unchanged: the body parameters of the
# official SDK's chat.completions.create() (functions and function_call are deprecated but
# still served).
PASSTHROUGH = (
    "temperature", "top_p", "stop", "seed", "tools", "tool_choice", "response_format", "n",
    "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "logit_bias", "user",
    "parallel_tool_calls", "reasoning_effort", "metadata", "service_tier", "store",
    "prediction", "modalities", "audio", "verbosity", "functions", "function_call", "moderation",
    "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "safety_identifier",
    "web_search_options",
)


def raise_error_event(provider: str, obj: Dict[str, Any]) -> None:
    """An ``{"error": ...}`` event inside a 200 stream, classified by its type or code."""
    err = obj.get("error")
    kind = None
    if isinstance(err, dict):
        kind = err.get("type") or err.get("code")
        status_hint = err.get("status") if isinstance(err.get("status"), int) else None
    else:
        status_hint = None
    cls, status = api_error_for_type(str(kind) if kind is not None else None, status_hint)
    raise cls(f"{provider} sent an error event: {error_message(obj)}", status=status, body=obj, provider=provider)


class OpenAIParser(EventParser):
    provider = "openai"
    trailing_events = True  # the usage chunk and [DONE] come after the finish_reason
    takes_data_strings = True  # parse_into reads only an event's data: the SSE decoder may pass the str
    fills_text_runs = True  # see EventParser (a subclass with its own parse_into gets none: parse_into)
    # Raw finish_reason -> normalized; unknown values count as "stop". Subclasses (Mistral)
    # extend it.
    finish_reasons: Dict[str, str] = FINISH_REASONS
    # The keys a choice may have for the inline path of parse_into to stand in for
    # parse_object; None: any (this class's parse_object reads no other key of a choice).
    # A subclass whose parse_object reads more of a choice (Azure's filter results) names
    # them here, so only its streams pay for the check.
    inline_choice_keys: Optional[FrozenSet[str]] = None

    def __init__(self, provider: str = "openai") -> None:
        super().__init__()
        self.provider = provider

    def parse(self, event: Any) -> Optional[Chunk]:
        """The first chunk of one event (an event with several choices makes several:
        the stream uses :meth:`parse_into`, which keeps them all)."""
        out: List[Chunk] = []
        run, self.text_run = self.text_run, None  # a Chunk, even while the worker holds a run
        try:
            self.parse_into((event,), out)
        finally:
            self.text_run = run
        return out[0] if out else None

    def parse_into(self, events: Any, out: List[Chunk]) -> None:
        # The hot loop of an OpenAI-format stream. A plain content delta of choice 0 (by far
        # the most common event) is handled inline; anything else, or anything unusual about
        # one, takes parse_object.
        provider = self.provider
        append = out.append
        parse_object = self.parse_object
        scan = json_scan_once
        inline_keys = self.inline_choice_keys
        # A subclass with a parse_into of its own may look at what this one appends
        # (Mistral's echo): it gets Chunks.
        run = self.text_run if self.__class__.parse_into is _OWN_PARSE_INTO else None
        plain = True
        for event in events:
            data = event if event.__class__ is str else event.data
            try:
                obj, end = scan(data, 0)
            except (StopIteration, ValueError):
                end = -1
            if end != len(data) or obj.__class__ is not dict:
                obj = json_object(data, provider)  # whitespace around it, or a clear error
            choices = obj.get("choices")
            if choices.__class__ is list and len(choices) == 1:
                choice = choices[0]
                delta = choice.get("delta")
                if (delta.__class__ is dict and len(delta) == 1 and choice.get("finish_reason") is None
                        and (inline_keys is None or choice.keys() <= inline_keys)):
                    text = delta.get("content")
                    if text and text.__class__ is str and not choice.get("index") and not obj.get("usage") and "error" not in obj:
                        index = self.next_index
                        self.next_index = index + 1
                        if run is not None and not out:
                            if not run.texts:
                                run.first_index = index
                            run.texts.append(text)
                            run.models.append(obj.get("model"))
                            run.ids.append(obj.get("id"))
                            run.raws.append(data)  # a str; RawJSON (a tracked subclass) when read
                        else:
                            append(content_chunk(text, obj.get("model"), obj.get("id"), index, RawJSON(data)))
                        continue
            before = len(out)
            parse_object(obj, out)
            if len(out) != before:
                plain = False
        self.plain = plain

    def parse_object(self, obj: Dict[str, Any], out: List[Chunk]) -> None:
        """One decoded ``chat.completion.chunk``, appended to ``out`` as chunks; separate
        from :meth:`parse_into` so that OpenAI-like parsers (Mistral) can reshape the object
        first.

        Choice 0 (with the event's usage) makes one chunk. With ``n > 1`` an event can hold
        several choices: every other choice makes a chunk of its own, tagged
        ``metadata["choice"]`` (its index), which stays out of ``stream.text``,
        ``stream.tool_calls`` and ``stream.finish_reason``.
        """
        if "error" in obj and obj["error"]:
            raise_error_event(self.provider, obj)
        main: Optional[Dict[str, Any]] = None
        others: List[Dict[str, Any]] = []
        choices = obj.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            if choice.get("index") or 0:
                others.append(choice)
            elif main is None:
                main = choice
        content, finish_reason, tool_calls, metadata = self._choice(main) if main is not None else ("", None, None, {})
        usage = None
        raw_usage = obj.get("usage")
        if raw_usage and isinstance(raw_usage, dict):
            usage = normalize_usage(
                raw_usage.get("prompt_tokens"), raw_usage.get("completion_tokens"), raw_usage.get("total_tokens")
            )
            metadata["raw_usage"] = raw_usage
        if finish_reason is not None:
            self.done = True
        if content or finish_reason or usage or tool_calls or metadata:
            out.append(self._chunk(obj, content, finish_reason, usage, tool_calls, metadata))
        # (else: a role-only first delta, Azure prompt_filter_results, a keep-alive)
        for choice in others:
            content, finish_reason, tool_calls, metadata = self._choice(choice)
            if content or finish_reason or tool_calls or metadata:
                metadata["choice"] = choice["index"]
                out.append(self._chunk(obj, content, finish_reason, None, tool_calls, metadata))

    def _choice(
        self, choice: Dict[str, Any]
    ) -> Tuple[str, Optional[str], Optional[List[Dict[str, Any]]], Dict[str, Any]]:
        """(content, finish_reason, tool-call deltas, metadata) of one choice's delta."""
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}
        metadata: Dict[str, Any] = {}
        text = delta.get("content")
        content = text if isinstance(text, str) else ""
        calls = delta.get("tool_calls")
        tool_calls = list(calls) if isinstance(calls, list) and calls else None
        legacy = delta.get("function_call")
        if isinstance(legacy, dict) and legacy:
            # The deprecated single function call: assembled as a tool call without id,
            # in a slot of its own.
            tool_calls = (tool_calls or []) + [{"index": LEGACY_FUNCTION_CALL, "type": "function", "function": legacy}]
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            metadata["refusal"] = refusal
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            metadata["reasoning"] = reasoning
        finish_reason = None
        raw_finish = choice.get("finish_reason")
        if raw_finish:
            finish_reason = self.finish_reasons.get(raw_finish, "stop")
            metadata["raw_finish_reason"] = raw_finish
        return content, finish_reason, tool_calls, metadata

    def _chunk(
        self,
        obj: Dict[str, Any],
        content: str,
        finish_reason: Optional[str],
        usage: Optional[Dict[str, int]],
        tool_calls: Optional[List[Dict[str, Any]]],
        metadata: Dict[str, Any],
    ) -> Chunk:
        index = self.next_index
        self.next_index = index + 1
        return new_chunk(content, finish_reason, obj.get("model"), obj.get("id"), index, usage, tool_calls, metadata, obj)


# The parse_into above, which fills the worker's text run (see parse_into).
_OWN_PARSE_INTO = OpenAIParser.parse_into


class OpenAIAdapter(Adapter):
    name = "openai"
    otel_provider_name = "openai"
    wire_format = "sse"
    default_base_url = "https://api.openai.com/v1"
    api_key_env: Sequence[str] = ("OPENAI_API_KEY",)
    requires_api_key = True
    example_model = "gpt-4o-mini"
    # OpenAI proper takes stream_options and max_completion_tokens; compatible servers
    # vary, so they get the older, more widely accepted spelling.
    include_usage = True
    max_tokens_field = "max_completion_tokens"

    def build_request(
        self, messages: List[Dict[str, Any]], options: Dict[str, Any], *, base_url: str, api_key: Optional[str]
    ) -> HTTPRequest:
        check_options(self.name, options, PASSTHROUGH + ("max_tokens", "max_completion_tokens", "stream_options"))
        body: Dict[str, Any] = {"model": require_model(self.name, options, self.example_model), "messages": messages, "stream": True}
        stream_options = merge_stream_options(options, {"include_usage": True} if self.include_usage else {})
        if stream_options:
            body["stream_options"] = stream_options
        for key in PASSTHROUGH:
            if options.get(key) is not None:
                body[key] = options[key]
        max_tokens = options.get("max_tokens", options.get("max_completion_tokens"))
        if max_tokens is not None:
            body[self.max_tokens_field] = max_tokens
        body.update(options.get("extra_body") or {})
        return HTTPRequest(url=f"{base_url}/chat/completions", json=body, headers=bearer_headers(api_key, options))

    def new_parser(self, request: HTTPRequest) -> EventParser:
        return OpenAIParser(self.name)


class OpenAICompatibleAdapter(OpenAIAdapter):
    """An OpenAI-compatible server: ``OpenAICompatibleAdapter("vllm", "http://localhost:8000/v1")``."""

    include_usage = False
    otel_provider_name = ""  # not OpenAI: the server's own name (groq, deepseek, vllm, ...)
    max_tokens_field = "max_tokens"
    example_model = "the server's model name"

    def __init__(
        self, name: str, base_url: str = "", api_key_env: Sequence[str] = (), requires_api_key: bool = False
    ) -> None:
        self.name = name
        self.default_base_url = base_url
        self.api_key_env = tuple(api_key_env)
        self.requires_api_key = requires_api_key

    def resolve_base_url(self, base_url: Optional[str]) -> str:
        url = super().resolve_base_url(base_url)
        if not url:
            raise ValueError(f"provider {self.name!r} needs base_url=..., e.g. base_url='http://localhost:8000/v1'")
        return url
