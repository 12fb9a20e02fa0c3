"""OpenAI's Responses API (``POST {base_url}/responses``, SSE, no ``[DONE]``).

Request: system messages become ``instructions``, the other messages ``input`` (chat-form
tool calls and tool results become ``function_call`` / ``function_call_output`` items),
``max_tokens`` becomes ``max_output_tokens``; the body parameters of the official SDK's
``responses.create`` pass through.

Events: ``response.output_text.delta`` is content; reasoning summary and reasoning text
deltas go to ``metadata["reasoning"]``, refusal deltas to ``metadata["refusal"]``; a
``function_call`` output item and its argument deltas become tool-call deltas (id =
``call_id``, slot = ``output_index``), completed from the ``.done`` events (final text and
arguments) where deltas were missing; ``response.completed`` / ``response.incomplete``
end the answer with its finish reason and usage; ``response.failed`` and ``error`` are
errors classified by their code. Every chunk keeps ``metadata["sequence_number"]``.

Native resume: a background response (``background=True``) that breaks is taken up again
by ``GET {base_url}/responses/{id}?stream=true&starting_after={n}``, which replays the
events after ``n`` (the server goes on generating meanwhile: nothing is generated twice).
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from adapters._options import check_options, require_model
from adapters.base import (
    CONTINUE_INSTRUCTION,
    Adapter,
    EventParser,
    HTTPRequest,
    bearer_headers,
    error_message,
    json_object,
)
from streamcoord._chunk import Chunk, normalize_usage
from streamcoord.errors import api_error_for_type

__all__ = ["OpenAIResponsesAdapter", "ResponsesParser", "to_input"]

# The body parameters of openai-python's client.responses.create() passed through as given
# (input, instructions and max_output_tokens are built from messages and max_tokens).
PASSTHROUGH = (
    "access_programs", "background", "background_options", "context_management", "conversation", "image",
    "include", "max_tool_calls", "metadata", "moderation", "parallel_tool_calls", "previous_response_id",
    "prompt", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "reasoning",
    "safety_identifier", "service_tier", "store", "stream_options", "temperature", "text", "tool_choice",
    "tools", "top_logprobs", "top_p", "truncation", "user",
)

# response.incomplete's incomplete_details.reason -> the normalized finish reason.
INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}

# Events that carry reasoning text, and where metadata keeps each kind of side text.
REASONING_EVENTS = frozenset({"response.reasoning_summary_text.delta", "response.reasoning_text.delta"})
REFUSAL_EVENT = "response.refusal.delta"


def _part(part: Any, role: str) -> Any:
    """A chat content part in the Responses form (text and image parts; others as given)."""
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    if kind == "text":
        return {"type": "output_text" if role == "assistant" else "input_text", "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return {"type": "input_image", "image_url": url}
    return part


def to_input(messages: List[Dict[str, Any]]) -> "tuple[Optional[str], List[Any]]":
    """(instructions, input items) from chat messages: system messages are the
    instructions; tool calls and tool results become Responses items."""
    system: List[str] = []
    items: List[Any] = []
    for message in messages:
        role, content = message["role"], message.get("content")
        if role == "system" and isinstance(content, str):
            system.append(content)
            continue
        if role == "tool":
            items.append({"type": "function_call_output", "call_id": message.get("tool_call_id"),
                          "output": content if isinstance(content, str) else str(content)})
            continue
        if content:
            parts = [_part(p, role) for p in content] if isinstance(content, list) else content
            items.append({"role": role, "content": parts})
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            items.append({"type": "function_call", "call_id": call.get("id"), "name": function.get("name"),
                          "arguments": function.get("arguments") or "{}"})
    return ("\n\n".join(system) if system else None), items


class ResponsesParser(EventParser):
    """Responses events to chunks. ``response_id`` and ``sequence_number`` (the last event
    parsed) are where a native resume starts."""

    provider = "openai_responses"

    def __init__(self, provider: str = "openai_responses", response_id: Optional[str] = None,
                 sequence_number: Optional[int] = None) -> None:
        super().__init__()
        self.provider = provider
        self.response_id = response_id
        self.sequence_number = sequence_number
        self.model: Optional[str] = None
        # The .done events carry each item's final text and arguments: where deltas were
        # missing, they give the rest. Trusted for every item by a parser that has seen the
        # stream from its start, and after a native resume only for the items begun since
        # (the parser before it gave an earlier item's deltas: they are not counted here).
        self._from_start = sequence_number is None
        self._begun: Set[Any] = set()  # output_index of the items begun in this parser
        self._text_given: Dict[Tuple[Any, Any], int] = {}  # (output_index, content_index) -> chars
        self._arguments_given: Dict[Any, int] = {}  # output_index of an announced call -> chars

    def resume_state(self) -> Optional[Dict[str, Any]]:
        if self.response_id is None or self.sequence_number is None:
            return None
        return {"response_id": self.response_id, "sequence_number": self.sequence_number}

    def parse(self, event: Any) -> Optional[Chunk]:
        obj = json_object(event.data, self.provider)
        kind = obj.get("type") or event.event
        seq = obj.get("sequence_number")
        metadata: Dict[str, Any] = {}
        if isinstance(seq, int) and not isinstance(seq, bool):
            metadata["sequence_number"] = seq
        if kind == "error":
            self._raise(obj, obj.get("code") or obj.get("type"))
        response = obj.get("response") if isinstance(obj.get("response"), dict) else None
        if response is not None:
            if isinstance(response.get("id"), str):
                self.response_id = response["id"]
            if isinstance(response.get("model"), str):
                self.model = response["model"]
        content, finish, usage, tool_calls = "", None, None, None
        delta = obj.get("delta")
        if kind == "response.output_text.delta" and isinstance(delta, str):
            content = delta
            key = (obj.get("output_index"), obj.get("content_index") or 0)
            self._text_given[key] = self._text_given.get(key, 0) + len(delta)
        elif kind in REASONING_EVENTS and isinstance(delta, str) and delta:
            metadata["reasoning"] = delta
        elif kind == REFUSAL_EVENT and isinstance(delta, str) and delta:
            metadata["refusal"] = delta
        elif kind == "response.output_item.added" and isinstance(obj.get("item"), dict):
            self._begun.add(obj.get("output_index"))
            tool_calls = self._announce_call(obj.get("output_index"), obj["item"])
        elif kind == "response.function_call_arguments.delta" and isinstance(delta, str) and delta:
            tool_calls = [{"index": obj.get("output_index"), "function": {"arguments": delta}}]
            index = obj.get("output_index")
            if index in self._arguments_given:
                self._arguments_given[index] += len(delta)
        elif kind == "response.output_text.done" and isinstance(obj.get("text"), str):
            content = self._rest_of_text(obj.get("output_index"), obj.get("content_index") or 0, obj["text"])
        elif kind == "response.function_call_arguments.done" and isinstance(obj.get("arguments"), str):
            tool_calls = self._rest_of_call(obj.get("output_index"), obj, announce=False)
        elif kind == "response.output_item.done" and isinstance(obj.get("item"), dict):
            content, tool_calls = self._rest_of_item(obj.get("output_index"), obj["item"])
        elif kind == "response.failed":
            error = (response or {}).get("error")
            self._raise(obj, error.get("code") if isinstance(error, dict) else None)
        elif kind in ("response.completed", "response.incomplete") and response is not None:
            finish, usage = self._finish(kind, response, metadata)
        if isinstance(seq, int) and not isinstance(seq, bool):
            self.sequence_number = seq  # parsed: a resume starts after it
        if not (content or finish or usage or tool_calls or len(metadata) > ("sequence_number" in metadata)):
            return None
        index = self.next_index
        self.next_index = index + 1
        return Chunk(content, finish, self.model, self.response_id, index, usage, tool_calls, metadata, obj)

    def _announce_call(self, index: Any, item: Dict[str, Any]) -> Optional[List[Dict[str, Any]]]:
        if item.get("type") != "function_call":
            return None
        arguments = _text(item.get("arguments"))
        self._arguments_given[index] = len(arguments)
        return [{"index": index, "id": item.get("call_id"), "type": "function",
                 "function": {"name": item.get("name") or "", "arguments": arguments}}]

    def _trusted(self, index: Any) -> bool:
        return self._from_start or index in self._begun

    def _rest_of_text(self, index: Any, content_index: Any, text: str) -> str:
        """What of an output text's final ``text`` its deltas did not give."""
        key = (index, content_index)
        given = self._text_given.get(key, 0)
        if not self._trusted(index) or len(text) <= given:
            return ""
        self._text_given[key] = len(text)
        return text[given:]

    def _rest_of_call(self, index: Any, item: Dict[str, Any], announce: bool) -> Optional[List[Dict[str, Any]]]:
        """A function call's final arguments where its deltas fell short; with ``announce``
        (an output item, which has the call's id and name) the whole call if it was never
        announced."""
        if not self._trusted(index):
            return None
        arguments = _text(item.get("arguments"))
        if index not in self._arguments_given:
            return self._announce_call(index, item) if announce else None
        given = self._arguments_given[index]
        if len(arguments) <= given:
            return None
        self._arguments_given[index] = len(arguments)
        return [{"index": index, "function": {"arguments": arguments[given:]}}]

    def _rest_of_item(self, index: Any, item: Dict[str, Any]) -> Tuple[str, Optional[List[Dict[str, Any]]]]:
        if item.get("type") == "function_call":
            return "", self._rest_of_call(index, item, announce=True)
        if item.get("type") != "message":
            return "", None
        content = item.get("content")
        if not isinstance(content, list):
            return "", None
        rest = "".join(
            self._rest_of_text(index, position, part["text"]) for position, part in enumerate(content)
            if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str)
        )
        return rest, None

    def _finish(
        self, kind: str, response: Dict[str, Any], metadata: Dict[str, Any]
    ) -> Tuple[str, Optional[Dict[str, int]]]:
        self.done = True
        if kind == "response.incomplete":
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            finish = INCOMPLETE_REASONS.get(str(reason), "length")
            metadata["raw_finish_reason"] = reason or "incomplete"
        else:
            output = response.get("output")
            called = any(isinstance(i, dict) and i.get("type") == "function_call" for i in output or ())
            finish = "tool_calls" if called else "stop"
            metadata["raw_finish_reason"] = response.get("status") or "completed"
        usage = None
        raw_usage = response.get("usage")
        if isinstance(raw_usage, dict):
            usage = normalize_usage(raw_usage.get("input_tokens"), raw_usage.get("output_tokens"),
                                    raw_usage.get("total_tokens"))
            metadata["raw_usage"] = raw_usage
        return finish, usage

    def _raise(self, obj: Dict[str, Any], code: Any) -> None:
        cls, status = api_error_for_type(str(code) if code else None)
        response = obj.get("response")
        error = response.get("error") if isinstance(response, dict) else None
        message = error_message({"error": error}) if isinstance(error, dict) else error_message(obj)
        raise cls(f"{self.provider} sent an error event: {message}", status=status, body=obj, provider=self.provider)


class OpenAIResponsesAdapter(Adapter):
    name = "openai_responses"
    otel_provider_name = "openai"
    wire_format = "sse"
    default_base_url = "https://api.openai.com/v1"
    api_key_env: Sequence[str] = ("OPENAI_API_KEY",)
    requires_api_key = True
    example_model = "gpt-5-mini"
    max_tokens_paths: Sequence[Sequence[str]] = (("max_output_tokens",),)

    def build_request(
        self, messages: List[Dict[str, Any]], options: Dict[str, Any], *, base_url: str, api_key: Optional[str]
    ) -> HTTPRequest:
        check_options(self.name, options, PASSTHROUGH + ("max_tokens", "max_output_tokens", "instructions"))
        instructions, items = to_input(messages)
        if instructions is not None and options.get("instructions") is not None:
            raise ValueError("pass the instructions as system messages or as instructions=..., not both")
        body: Dict[str, Any] = {"model": require_model(self.name, options, self.example_model), "input": items,
                                "stream": True}
        instructions = options.get("instructions") if instructions is None else instructions
        if instructions is not None:
            body["instructions"] = instructions
        for key in PASSTHROUGH:
            if options.get(key) is not None:
                body[key] = options[key]
        max_tokens = options.get("max_tokens", options.get("max_output_tokens"))
        if max_tokens is not None:
            body["max_output_tokens"] = max_tokens
        body.update(options.get("extra_body") or {})
        return HTTPRequest(url=self.url(base_url, "responses"), json=body, headers=self.headers(api_key, options))

    def url(self, base_url: str, path: str, query: Optional[Dict[str, Any]] = None) -> str:
        """``{base_url}/{path}`` with ``query``; Azure adds its api-version here."""
        return f"{base_url}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def headers(self, api_key: Optional[str], options: Dict[str, Any]) -> Dict[str, str]:
        return bearer_headers(api_key, options)

    def new_parser(self, request: HTTPRequest) -> EventParser:
        response_id, seq = _resume_point(request)
        return ResponsesParser(self.name, response_id, seq)

    def build_continuation(self, request: HTTPRequest, partial_text: str) -> HTTPRequest:
        body = dict(request.json or {})
        items = list(body.get("input") or [])
        items.append({"role": "assistant", "content": partial_text})
        items.append({"role": "user", "content": CONTINUE_INSTRUCTION})
        body["input"] = items
        return request.with_json(body)

    def native_resume(self, request: HTTPRequest, state: Optional[Dict[str, Any]]) -> Optional[HTTPRequest]:
        """A background response is replayed by the server from after the last event parsed."""
        target = _background_response(request, state)
        if target is None:
            return None
        base_url, path = target
        url = self.url(base_url, path, {"stream": "true", "starting_after": state["sequence_number"]})  # type: ignore[index]
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
        return HTTPRequest(url=url, json=None, headers=headers, method="GET")

    def cancel_request(self, request: HTTPRequest, state: Optional[Dict[str, Any]]) -> Optional[HTTPRequest]:
        """``POST /responses/{id}/cancel`` for a background response the consumer gave up on."""
        target = _background_response(request, state)
        if target is None:
            return None
        base_url, path = target
        return HTTPRequest(url=self.url(base_url, path + "/cancel"), json={}, headers=dict(request.headers))


def _background_response(request: HTTPRequest, state: Optional[Dict[str, Any]]) -> "Optional[tuple[str, str]]":
    """(base_url, ``responses/{id}``) of the background response ``request`` started, if
    ``state`` (the parser's resume state) knows where it stands; else None."""
    if not request.json or not request.json.get("background") or not state:
        return None
    response_id, seq = state.get("response_id"), state.get("sequence_number")
    if not isinstance(response_id, str) or not response_id or isinstance(seq, bool) or not isinstance(seq, int):
        return None
    base_url = urllib.parse.urlsplit(request.url)._replace(query="").geturl().rsplit("/", 1)[0]
    return base_url, "responses/" + urllib.parse.quote(response_id, safe="")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _query(url: str) -> Dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _resume_point(request: HTTPRequest) -> "tuple[Optional[str], Optional[int]]":
    """(response id, starting_after) of a native-resume GET; (None, None) otherwise."""
    if request.method != "GET":
        return None, None
    parts = urllib.parse.urlsplit(request.url)
    response_id = urllib.parse.unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    after = _query(request.url).get("starting_after")
    return response_id, int(after) if after and after.isdigit() else None
