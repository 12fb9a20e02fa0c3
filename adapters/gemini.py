"""Google Gemini API (``POST {base_url}/models/{model}:streamGenerateContent?alt=sse``).

Each SSE event is a whole ``GenerateContentResponse``: ``candidates[0].content.parts``
(text, ``thought: true`` text, ``functionCall``), an optional ``finishReason``, and a
cumulative ``usageMetadata``. There is no ``[DONE]``: the end of the body after a
``finishReason`` (or a ``promptFeedback.blockReason``) ends the stream. An error inside a
200 stream arrives as an ``{"error": {"code", "message", "status"}}`` event.

Messages are mapped to ``contents`` (assistant -> ``model``), system messages to
``systemInstruction``; OpenAI-style tools to ``functionDeclarations``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple, cast
from urllib.parse import quote

from adapters._options import check_options, require_model
from adapters.base import CONTINUE_INSTRUCTION, Adapter, EventParser, HTTPRequest, error_message, json_object
from streamcoord._chunk import Chunk, normalize_usage
from streamcoord.errors import api_error_for_type

__all__ = ["GeminiAdapter", "GeminiParser"]

# STOP is the one normal end; it becomes "tool_calls" when the answer called functions.
# Unknown (future) reasons count as "error": Gemini adds new abnormal reasons, not new
# normal ones.
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "error",
    "OTHER": "error",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "FINISH_REASON_UNSPECIFIED": "error",
}

# Option name -> generationConfig field.
GENERATION_CONFIG = {
    "max_tokens": "maxOutputTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "stop": "stopSequences",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "response_mime_type": "responseMimeType",
    "response_schema": "responseSchema",
    "thinking_config": "thinkingConfig",
    # The official SDK's GenerateContentConfig names for the same and further fields.
    "max_output_tokens": "maxOutputTokens",
    "stop_sequences": "stopSequences",
    "candidate_count": "candidateCount",
    "response_json_schema": "responseJsonSchema",
    "response_logprobs": "responseLogprobs",
    "logprobs": "logprobs",
    "response_modalities": "responseModalities",
    "media_resolution": "mediaResolution",
    "speech_config": "speechConfig",
    "image_config": "imageConfig",
}
# Option name -> top-level body field.
TOP_LEVEL = {
    "safety_settings": "safetySettings", "cached_content": "cachedContent", "tool_config": "toolConfig",
    "labels": "labels",
}

_MODES = {"auto": "AUTO", "required": "ANY", "any": "ANY", "none": "NONE"}


class GeminiParser(EventParser):
    provider = "gemini"

    def __init__(self) -> None:
        super().__init__()
        self.called_functions = False  # a functionCall turns STOP into "tool_calls"
        self._tool_index = 0

    def parse(self, event: Any) -> Optional[Chunk]:
        provider = self.provider  # "vertex" for Gemini on Vertex AI
        obj = json_object(event.data, provider)
        if obj.get("error"):
            err = obj["error"]
            kind = err.get("status") if isinstance(err, dict) else None
            code = err.get("code") if isinstance(err, dict) and isinstance(err.get("code"), int) else None
            cls, status = api_error_for_type(kind, code)
            raise cls(f"{provider} sent an error event: {error_message(obj)}", status=status, body=obj, provider=provider)
        texts: List[str] = []
        thoughts: List[str] = []
        tool_calls: List[Dict[str, Any]] = []
        metadata: Dict[str, Any] = {}
        finish_reason = None
        candidates = obj.get("candidates") or ()
        if candidates:
            candidate = candidates[0]
            for part in (candidate.get("content") or {}).get("parts") or ():
                call = part.get("functionCall")
                if call is not None:
                    tool_calls.append(self._tool_call(call, part.get("thoughtSignature")))
                    continue
                text = part.get("text")
                if text:
                    (thoughts if part.get("thought") else texts).append(text)
                if part.get("thoughtSignature") and not part.get("thought"):
                    metadata["thought_signature"] = part["thoughtSignature"]
            raw_finish = candidate.get("finishReason")
            if raw_finish:
                finish_reason = FINISH_REASONS.get(raw_finish, "error")
                if finish_reason == "stop" and self.called_functions:
                    finish_reason = "tool_calls"
                metadata["raw_finish_reason"] = raw_finish
                self.done = True
            if candidate.get("groundingMetadata"):
                metadata["grounding_metadata"] = candidate["groundingMetadata"]
            if candidate.get("safetyRatings") and finish_reason == "content_filter":
                metadata["safety_ratings"] = candidate["safetyRatings"]
        else:
            block = (obj.get("promptFeedback") or {}).get("blockReason")
            if block:
                # The prompt itself was refused: no candidates will come.
                finish_reason = "content_filter"
                metadata["raw_finish_reason"] = block
                metadata["block_reason"] = block
                self.done = True
        if thoughts:
            metadata["reasoning"] = "".join(thoughts)
        usage = None
        raw_usage = obj.get("usageMetadata")
        if raw_usage:
            usage = gemini_usage(raw_usage)
            metadata["raw_usage"] = raw_usage
        content = "".join(texts)
        if not (content or finish_reason or usage or tool_calls or metadata):
            return None
        index = self.next_index
        self.next_index = index + 1
        return Chunk(content, finish_reason, obj.get("modelVersion"), obj.get("responseId"), index, usage,
                     tool_calls or None, metadata, obj)

    def _tool_call(self, call: Dict[str, Any], signature: Optional[str]) -> Dict[str, Any]:
        """A functionCall part, which Gemini sends complete, as one OpenAI-form delta."""
        self.called_functions = True
        delta = {
            "index": self._tool_index,
            "id": call.get("id"),
            "type": "function",
            "function": {"name": call.get("name") or "", "arguments": json.dumps(call.get("args") or {}, ensure_ascii=False)},
        }
        self._tool_index += 1
        if signature:
            # Gemini 3 requires the signature back with the call in the next turn.
            delta["thought_signature"] = signature
        return delta


def gemini_usage(raw: Dict[str, Any]) -> Dict[str, int]:
    """Normalized usage: completion_tokens counts the thinking tokens (``thoughtsTokenCount``,
    billed as output, like OpenAI's reasoning tokens) and prompt_tokens the tool-use prompt
    (``toolUsePromptTokenCount``, e.g. search results), so that prompt + completion equals
    Gemini's ``totalTokenCount``."""
    prompt = (raw.get("promptTokenCount") or 0) + (raw.get("toolUsePromptTokenCount") or 0)
    completion = (raw.get("candidatesTokenCount") or 0) + (raw.get("thoughtsTokenCount") or 0)
    return normalize_usage(prompt, completion, raw.get("totalTokenCount"))


class GeminiAdapter(Adapter):
    max_tokens_paths = (("generationConfig", "maxOutputTokens"),)
    name = "gemini"
    otel_provider_name = "gcp.gemini"
    wire_format = "sse"
    default_base_url = "https://generativelanguage.googleapis.com/v1beta"
    api_key_env: Sequence[str] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    requires_api_key = True
    example_model = "gemini-2.5-flash"

    def build_request(
        self, messages: List[Dict[str, Any]], options: Dict[str, Any], *, base_url: str, api_key: Optional[str]
    ) -> HTTPRequest:
        check_options(self.name, options, tuple(GENERATION_CONFIG) + tuple(TOP_LEVEL) + ("tools", "tool_choice"))
        model = require_model(self.name, options, self.example_model)
        system, contents = _contents(messages)
        body: Dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: Dict[str, Any] = {}
        for option, field in GENERATION_CONFIG.items():
            value = options.get(option)
            if value is not None:
                config[field] = [value] if field == "stopSequences" and isinstance(value, str) else value
        if config:
            body["generationConfig"] = config
        for option, field in TOP_LEVEL.items():
            if options.get(option) is not None:
                body[field] = options[option]
        if options.get("tools") is not None:
            body["tools"] = _tools(options["tools"])
        if options.get("tool_choice") is not None:
            body["toolConfig"] = _tool_config(options["tool_choice"])
        body.update(options.get("extra_body") or {})
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        headers.update(options.get("extra_headers") or {})
        # "models/gemini-2.5-flash" and "gemini-2.5-flash" both work; "tunedModels/x" too.
        path = model if "/" in model else f"models/{model}"
        url = f"{base_url}/{quote(path, safe='/')}:streamGenerateContent?alt=sse"
        return HTTPRequest(url=url, json=body, headers=headers)

    def new_parser(self, request: HTTPRequest) -> EventParser:
        return GeminiParser()

    def build_continuation(self, request: HTTPRequest, partial_text: str) -> HTTPRequest:
        """The partial answer as a ``model`` turn, then a ``user`` turn asking to go on."""
        body = dict(request.json or {})
        contents = list(body.get("contents") or [])
        contents.append({"role": "model", "parts": [{"text": partial_text}]})
        contents.append({"role": "user", "parts": [{"text": CONTINUE_INSTRUCTION}]})
        body["contents"] = contents
        return request.with_json(body)


def _contents(messages: List[Dict[str, Any]]) -> Tuple[str, List[Dict[str, Any]]]:
    """``(system text, contents)`` from chat messages.

    Assistant ``tool_calls`` become ``functionCall`` parts (with their thought signature,
    which Gemini 3 requires back) and ``tool`` messages ``functionResponse`` parts, named
    after the call they answer.
    """
    system: List[str] = []
    contents: List[Dict[str, Any]] = []
    call_names: Dict[str, str] = {}
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(content if isinstance(content, str) else "".join(_texts(content)))
            continue
        if role == "tool":
            name = message.get("name") or call_names.get(message.get("tool_call_id") or "", "")
            try:
                response = json.loads(content) if isinstance(content, str) else content
            except ValueError:
                response = content
            if not isinstance(response, dict):
                response = {"result": response}
            part = {"functionResponse": {"name": name, "response": response}}
            if message.get("tool_call_id"):
                part["functionResponse"]["id"] = message["tool_call_id"]
            if contents and contents[-1]["role"] == "user" and "functionResponse" in contents[-1]["parts"][-1]:
                contents[-1]["parts"].append(part)  # parallel calls: one turn of responses
            else:
                contents.append({"role": "user", "parts": [part]})
            continue
        parts = _parts(content)
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            arguments = function.get("arguments") or "{}"
            fc = {"name": function.get("name"), "args": json.loads(arguments) if isinstance(arguments, str) else arguments}
            if call.get("id"):
                fc["id"] = call["id"]
                call_names[call["id"]] = function.get("name") or ""
            part = {"functionCall": fc}
            if call.get("thought_signature"):
                part["thoughtSignature"] = call["thought_signature"]
            parts.append(part)
        contents.append({"role": "model" if role == "assistant" else "user", "parts": parts})
    return "\n\n".join(system), contents


def _texts(content: Any) -> List[str]:
    return [p.get("text", "") for p in content or () if isinstance(p, dict) and p.get("type") == "text"]


def _parts(content: Any) -> List[Dict[str, Any]]:
    """Gemini parts from a string, or from a list of OpenAI-style (``{"type": "text"}``) or
    Gemini-style parts (passed through)."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"text": content}]
    return [{"text": p.get("text", "")} if p.get("type") == "text" else p for p in content]


def _tools(tools: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """OpenAI-style function tools become one ``functionDeclarations`` tool; Gemini-style
    tools (``functionDeclarations``, ``googleSearch``, ...) pass through."""
    declarations = []
    native = []
    for tool in tools:
        if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
            function = tool["function"]
            declaration = {"name": function.get("name")}
            if function.get("description"):
                declaration["description"] = function["description"]
            if function.get("parameters"):
                declaration["parameters"] = function["parameters"]
            declarations.append(declaration)
        else:
            native.append(tool)
    return ([{"functionDeclarations": declarations}] if declarations else []) + native


def _tool_config(choice: Any) -> Dict[str, Any]:
    if isinstance(choice, str):
        return {"functionCallingConfig": {"mode": _MODES.get(choice, choice.upper())}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return cast(Dict[str, Any], choice)  # Gemini's own toolConfig, passed through
