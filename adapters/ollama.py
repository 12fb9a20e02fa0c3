"""Ollama (``POST {base_url}/api/chat``, newline-delimited JSON, no API key).

Each line is one JSON object: ``message.content`` (text), ``message.thinking`` (reasoning
of thinking models), ``message.tool_calls`` (complete calls with ``arguments`` as an
object); the last line has ``done: true``, ``done_reason`` and the token counts and
durations. An ``{"error": "..."}`` line reports a failure inside a 200 stream.
``/api/generate`` lines (text in a top-level ``response``) are understood as well, so the
same parser serves a proxy or test server that answers in that shape.

The address comes from ``base_url``, else ``OLLAMA_HOST`` (``host:port`` without a scheme
is accepted, as the Ollama CLI does), else ``http://localhost:11434``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

from adapters._options import check_options, require_model
from adapters.base import Adapter, EventParser, HTTPRequest, json_object
from streamcoord._chunk import Chunk, normalize_usage
from streamcoord.errors import APIError, api_error_for_status

__all__ = ["OllamaAdapter", "OllamaParser", "ollama_host"]

DEFAULT_PORT = 11434
OLLAMA_HOST_ENV = "OLLAMA_HOST"

FINISH_REASONS = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}

# Option name -> key of the request's "options" object (the model's runtime parameters).
MODEL_OPTIONS = {
    "max_tokens": "num_predict", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
    "stop": "stop", "seed": "seed", "num_ctx": "num_ctx", "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
}
# Options copied into the body under the same name.
PASSTHROUGH = ("tools", "format", "keep_alive", "think", "logprobs", "top_logprobs")

# Token counts and durations (ns) of the final line: the raw usage.
USAGE_KEYS = ("prompt_eval_count", "eval_count", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def ollama_host(value: Optional[str]) -> Optional[str]:
    """``OLLAMA_HOST`` as a URL: ``host:port`` or ``host`` get ``http://`` (and port 11434
    when none is given); ``:port`` means localhost; a full URL stays as it is."""
    if not value:
        return None
    value = value.strip().rstrip("/")
    if "://" in value:
        return value
    host, _, port = value.rpartition(":") if ":" in value and not value.endswith("]") else (value, "", "")
    if not host:
        host = "localhost"
    return f"http://{host}:{port or DEFAULT_PORT}"


class OllamaParser(EventParser):
    provider = "ollama"

    def __init__(self) -> None:
        super().__init__()
        self.called_tools = False  # tool calls turn done_reason "stop" into "tool_calls"

    def parse(self, event: Any) -> Optional[Chunk]:
        obj = json_object(event.data, "ollama")
        if obj.get("error"):
            raise _error(obj)
        message = obj.get("message")
        metadata: Dict[str, Any] = {}
        tool_calls = None
        if message is not None:
            content = message.get("content") or ""
            thinking = message.get("thinking")
            calls = message.get("tool_calls")
            if calls:
                tool_calls = [_tool_call(call) for call in calls]
                self.called_tools = True
        else:  # /api/generate
            content = obj.get("response") or ""
            thinking = obj.get("thinking")
        if thinking:
            metadata["reasoning"] = thinking
        finish_reason = None
        usage = None
        if obj.get("done"):
            raw_finish = obj.get("done_reason")
            finish_reason = FINISH_REASONS.get(raw_finish, "stop") if raw_finish else "stop"
            if finish_reason == "stop" and self.called_tools:
                finish_reason = "tool_calls"
            metadata["raw_finish_reason"] = raw_finish
            raw_usage = {key: obj[key] for key in USAGE_KEYS if key in obj}
            if raw_usage:
                usage = normalize_usage(obj.get("prompt_eval_count"), obj.get("eval_count"))
                metadata["raw_usage"] = raw_usage
            self.done = True
        if not (content or finish_reason or tool_calls or metadata):
            return None
        index = self.next_index
        self.next_index = index + 1
        return Chunk(content, finish_reason, obj.get("model"), None, index, usage, tool_calls, metadata, obj)


def _tool_call(call: Dict[str, Any]) -> Dict[str, Any]:
    """An Ollama tool call (complete, arguments an object) as an OpenAI-form delta. It has
    no ``index`` key: the stream's accumulator gives each complete call the next one."""
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)
    return {"id": call.get("id"), "type": "function", "function": {"name": function.get("name") or "", "arguments": arguments}}


def _error(obj: Dict[str, Any]) -> APIError:
    """Ollama's error lines carry only a message: "not found" (an unknown model) is a 404,
    anything else a server failure."""
    message = str(obj.get("error"))
    status = 404 if "not found" in message.lower() else 500
    cls = api_error_for_status(status)
    return cls(f"ollama sent an error: {message[:500]}", status=status, body=obj, provider="ollama")


class OllamaAdapter(Adapter):
    max_tokens_paths = (("options", "num_predict"),)
    name = "ollama"
    otel_provider_name = "ollama"
    wire_format = "ndjson"
    default_base_url = "http://localhost:11434"
    api_key_env: Sequence[str] = ("OLLAMA_API_KEY",)  # only for a proxy in front of Ollama
    requires_api_key = False
    example_model = "llama3.2"
    base_url_env: Sequence[str] = (OLLAMA_HOST_ENV,)

    def resolve_base_url(self, base_url: Optional[str]) -> str:
        return (base_url or ollama_host(os.environ.get(OLLAMA_HOST_ENV)) or self.default_base_url).rstrip("/")

    def build_request(
        self, messages: List[Dict[str, Any]], options: Dict[str, Any], *, base_url: str, api_key: Optional[str]
    ) -> HTTPRequest:
        check_options(self.name, options, tuple(MODEL_OPTIONS) + PASSTHROUGH + ("options", "tool_choice"))
        body: Dict[str, Any] = {
            "model": require_model(self.name, options, self.example_model),
            "messages": [_message(m) for m in messages],
            "stream": True,
        }
        model_options = dict(options.get("options") or {})
        for option, key in MODEL_OPTIONS.items():
            if options.get(option) is not None:
                model_options[key] = options[option]
        if model_options:
            body["options"] = model_options
        for key in PASSTHROUGH:
            if options.get(key) is not None:
                body[key] = options[key]
        # tool_choice is accepted for portability; Ollama has no such parameter.
        body.update(options.get("extra_body") or {})
        headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        headers.update(options.get("extra_headers") or {})
        return HTTPRequest(url=f"{base_url}/api/chat", json=body, headers=headers)

    def new_parser(self, request: HTTPRequest) -> EventParser:
        return OllamaParser()


def _message(message: Dict[str, Any]) -> Dict[str, Any]:
    """Ollama wants tool-call arguments as objects; OpenAI-style messages carry strings."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    out = dict(message)
    out["tool_calls"] = []
    for call in calls:
        function = dict(call.get("function") or {})
        if isinstance(function.get("arguments"), str):
            function["arguments"] = json.loads(function["arguments"] or "{}")
        out["tool_calls"].append({"function": function})
    return out
