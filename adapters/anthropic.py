"""Anthropic Messages API (``POST {base_url}/v1/messages``, SSE with named events).

The stream is a sequence of typed events: ``message_start`` (model, id, input usage),
``content_block_start``/``_delta``/``_stop`` per content block (text, thinking, tool_use),
``message_delta`` (stop reason and cumulative usage), ``message_stop``, ``ping`` and
``error``. There is no ``[DONE]``: ``message_stop`` is the end signal.

Only ``tool_use`` blocks are the caller's tool calls (``stream.tool_calls``). What the
server tools (web search, web fetch, code execution, MCP) do is kept in chunk metadata:

* ``metadata["server_tool_use"]``: a ``server_tool_use`` / ``mcp_tool_use`` block as sent
  (``type``, ``id``, ``name``) with its streamed ``input`` parsed, on the chunk of the
  block's end;
* ``metadata["server_tool_result"]``: a ``*_tool_result`` block as sent (e.g.
  ``web_search_tool_result`` with its ``content`` list of results, or an error);
* ``metadata["citations"]``: a list of the citations of the text that follows (from a
  ``citations_delta``, or a text block that starts with citations).

Chat messages in the common ``{"role", "content"}`` form are mapped here: ``system`` (and
``developer``) messages go to the top-level ``system`` field, OpenAI-style assistant
``tool_calls`` become ``tool_use`` blocks and ``tool`` messages ``tool_result`` blocks.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from adapters._anthropic_prefill import (
    NO_PREFILL_MODELS,
    continuation_body,
    prefills,
    refused_prefill_body,
    takes_prefill,
)
from adapters._options import check_options, require_model
from adapters.base import Adapter, EventParser, HTTPRequest, error_message, json_object, json_scan_once
from streamcoord._chunk import Chunk, RawJSON, content_chunk, new_chunk, normalize_usage
from streamcoord.errors import api_error_for_type

__all__ = ["DEFAULT_MAX_TOKENS", "MIN_THINKING_BUDGET", "NO_PREFILL_MODELS", "AnthropicAdapter", "AnthropicParser", "takes_prefill"]

API_VERSION = "2023-06-01"
# The API requires max_tokens; this is what a request without max_tokens= asks for.
DEFAULT_MAX_TOKENS = 4096

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Blocks in which the model calls a tool that Anthropic's side runs (web search, web
# fetch, code execution, an MCP server): not calls for the caller to make, so they go to
# metadata["server_tool_use"], never to stream.tool_calls.
SERVER_TOOL_USES = frozenset({"server_tool_use", "mcp_tool_use"})

# Extended thinking's smallest budget_tokens (the API refuses less).
MIN_THINKING_BUDGET = 1024

# Options copied into the body under the same name: the body parameters of the official
# SDK's messages.create() that need no mapping.
PASSTHROUGH = (
    "temperature", "top_p", "top_k", "thinking", "metadata", "service_tier", "cache_control", "container",
    "diagnostics", "inference_geo", "output_config", "speed", "user_profile_id", "workspace_id",
)

_TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "any": {"type": "any"}, "none": {"type": "none"}}


class AnthropicParser(EventParser):
    """Turns Messages stream events into chunks.

    ``message_start`` returns no chunk: its model, id and usage are remembered and ride on
    the later chunks. (A chunk without content would count as delivered output, and the
    coordinator only retries a failed stream plainly before anything was delivered.)
    """

    provider = "anthropic"
    fills_text_runs = True  # see EventParser (a subclass with its own parse_into gets none: parse_into)

    def __init__(self) -> None:
        super().__init__()
        self.model: Optional[str] = None
        self.message_id: Optional[str] = None
        self.usage: Dict[str, Any] = {}  # message_start usage, overlaid by message_delta's
        self._tool_blocks: Dict[int, bool] = {}  # block index -> arguments seen
        # block index -> (the server_tool_use / mcp_tool_use block, its input fragments)
        self._server_uses: Dict[int, Tuple[Dict[str, Any], List[str]]] = {}

    def parse(self, event: Any) -> Optional[Chunk]:
        data = event.data
        return self._parse_object(json_object(data, "anthropic"), data, event.event)

    def parse_into(self, events: Any, out: List[Chunk]) -> None:
        # The hot loop of an Anthropic stream: a text delta (nearly every event) is made
        # inline, anything else takes _parse_object, and a read of text deltas only is
        # marked ``plain`` (the pipeline then skips its look at each chunk). Against the
        # generic loop (parse() per event): 38,400 -> 36,700 instructions per chunk of a
        # whole stream, worker and consumer (callgrind, the Anthropic workload of
        # benchmarks/bench_throughput.py).
        if getattr(self.parse, "__func__", None) is not _OWN_PARSE:
            # A subclass's parse(), or one patched on the class or the instance (a spy, a
            # wrapper): it sees every event, as before this loop.
            EventParser.parse_into(self, events, out)
            return
        append = out.append
        scan = json_scan_once
        run = self.text_run if self.__class__.parse_into is _OWN_PARSE_INTO else None  # see OpenAIParser's
        plain = True
        for event in events:
            data = event.data
            try:
                obj, end = scan(data, 0)
            except (StopIteration, ValueError):
                end = -1
            if end != len(data) or obj.__class__ is not dict:
                obj = json_object(data, "anthropic")  # whitespace around it, or a clear error
            if obj.get("type") == "content_block_delta":
                delta = obj.get("delta")
                if delta.__class__ is dict and delta.get("type") == "text_delta":
                    text = delta.get("text")
                    if text and text.__class__ is str:
                        index = self.next_index
                        self.next_index = index + 1
                        if run is not None and not out:
                            if not run.texts:
                                run.first_index = index
                            run.texts.append(text)
                            run.models.append(self.model)
                            run.ids.append(self.message_id)
                            run.raws.append(data)  # a str; RawJSON (a tracked subclass) when read
                        else:
                            append(content_chunk(text, self.model, self.message_id, index, RawJSON(data)))
                        continue
            chunk = self._parse_object(obj, data, event.event)
            if chunk is not None:
                append(chunk)
                plain = False
        self.plain = plain

    def _parse_object(self, obj: Dict[str, Any], data: str, event_type: str) -> Optional[Chunk]:
        """One decoded event (``data`` its JSON text, ``event_type`` its SSE type)."""
        kind = obj.get("type") or event_type
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            text = delta.get("text")
            if text and delta.get("type") == "text_delta":
                # The common event: its raw stays JSON text until read (see RawJSON).
                index = self.next_index
                self.next_index = index + 1
                return content_chunk(text, self.model, self.message_id, index, RawJSON(data))
            return self._delta(obj)
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "content_block_stop":
            return self._block_stop(obj)
        if kind == "message_start":
            message = obj.get("message") or {}
            self.model = message.get("model")
            self.message_id = message.get("id")
            self.usage = dict(message.get("usage") or {})
            return None
        if kind == "message_delta":
            return self._message_delta(obj)
        if kind == "message_stop":
            self.done = True
            return None
        if kind == "error":
            err = obj.get("error")
            err_type = err.get("type") if isinstance(err, dict) else None
            cls, status = api_error_for_type(err_type)
            raise cls(f"anthropic sent an error event: {error_message(obj)}", status=status, body=obj, provider="anthropic")
        return None  # ping, and event types added after this adapter was written

    def _delta(self, obj: Dict[str, Any]) -> Optional[Chunk]:
        delta = obj.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return self._chunk(obj, text) if text else None
        if kind == "thinking_delta":
            thinking = delta.get("thinking")
            return self._chunk(obj, metadata={"reasoning": thinking}) if thinking else None
        if kind == "input_json_delta":
            partial = delta.get("partial_json")
            if not partial or not isinstance(partial, str):
                return None  # the first fragment is often ""
            index = obj.get("index", 0)
            server_use = self._server_uses.get(index)
            if server_use is not None:
                server_use[1].append(partial)  # reported whole at the block's end
                return None
            if index not in self._tool_blocks:
                return None  # a block that is not a tool_use: not a call of the caller's
            self._tool_blocks[index] = True
            return self._chunk(obj, tool_calls=[{"index": index, "function": {"arguments": partial}}])
        if kind == "signature_delta":
            # Needed to send a thinking block back in a later turn; not text.
            return self._chunk(obj, metadata={"thinking_signature": delta.get("signature")})
        if kind == "citations_delta" and delta.get("citation") is not None:
            return self._chunk(obj, metadata={"citations": [delta["citation"]]})
        return None  # future delta types

    def _block_start(self, obj: Dict[str, Any]) -> Optional[Chunk]:
        block = obj.get("content_block") or {}
        kind = block.get("type")
        index = obj.get("index", 0)
        if kind == "tool_use":
            given = block.get("input")
            # Streamed input starts as {} and comes in fragments; input given whole at the
            # start (not seen in streams so far) is taken as it is.
            arguments = json.dumps(given, ensure_ascii=False) if isinstance(given, dict) and given else ""
            self._tool_blocks[index] = bool(arguments)
            call = {"index": index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name") or "", "arguments": arguments}}
            return self._chunk(obj, tool_calls=[call])
        if kind in SERVER_TOOL_USES:
            self._server_uses[index] = (block, [])
            return None
        if kind and kind.endswith("_tool_result"):
            return self._chunk(obj, metadata={"server_tool_result": block})
        if kind == "text":
            metadata = {"citations": list(block["citations"])} if block.get("citations") else None
            if block.get("text") or metadata:
                return self._chunk(obj, block.get("text") or "", metadata=metadata)
            return None
        if kind == "thinking" and block.get("thinking"):
            return self._chunk(obj, metadata={"reasoning": block["thinking"]})
        if kind == "redacted_thinking":
            return self._chunk(obj, metadata={"redacted_thinking": block.get("data")})
        return None

    def _block_stop(self, obj: Dict[str, Any]) -> Optional[Chunk]:
        index = obj.get("index", 0)
        server_use = self._server_uses.pop(index, None)
        if server_use is not None:
            block, fragments = server_use
            given = block.get("input")
            text = "".join(fragments)
            try:
                tool_input = json.loads(text) if text else (given if given is not None else {})
            except ValueError:
                tool_input = text  # as the model wrote it
            return self._chunk(obj, metadata={"server_tool_use": dict(block, input=tool_input)})
        if self._tool_blocks.get(index) is False:
            # A tool without parameters streams no argument fragments: make its
            # arguments the JSON object "{}" (as OpenAI does), not an empty string.
            self._tool_blocks[index] = True
            return self._chunk(obj, tool_calls=[{"index": index, "function": {"arguments": "{}"}}])
        return None

    def _message_delta(self, obj: Dict[str, Any]) -> Chunk:
        delta = obj.get("delta") or {}
        metadata: Dict[str, Any] = {}
        finish_reason = None
        raw_finish = delta.get("stop_reason")
        if raw_finish:
            finish_reason = FINISH_REASONS.get(raw_finish, "stop")
            metadata["raw_finish_reason"] = raw_finish
        if delta.get("stop_sequence"):
            metadata["stop_sequence"] = delta["stop_sequence"]
        usage = None
        delta_usage = obj.get("usage")
        if delta_usage and isinstance(delta_usage, dict):
            # message_delta usage is cumulative; fields it leaves out (cache_creation,
            # service_tier, ...) keep their message_start values.
            # Nulls ("input_tokens": null) leave the message_start value too.
            self.usage.update({k: v for k, v in delta_usage.items() if v is not None})
        if self.usage:
            # prompt_tokens is input_tokens alone: cache reads/writes are reported apart
            # (cache_read_input_tokens, cache_creation_input_tokens, in raw_usage).
            usage = normalize_usage(self.usage.get("input_tokens"), self.usage.get("output_tokens"))
            metadata["raw_usage"] = dict(self.usage)
        return self._chunk(obj, finish_reason=finish_reason, usage=usage, metadata=metadata)

    def _chunk(
        self,
        obj: Dict[str, Any],
        content: str = "",
        finish_reason: Optional[str] = None,
        usage: Optional[Dict[str, int]] = None,
        tool_calls: Optional[List[Dict[str, Any]]] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> Chunk:
        index = self.next_index
        self.next_index = index + 1
        return new_chunk(content, finish_reason, self.model, self.message_id, index, usage, tool_calls,
                         metadata if metadata is not None else {}, obj)



# The parse() parse_into's own loop stands in for (see parse_into).
_OWN_PARSE = AnthropicParser.parse
# The parse_into that fills the worker's text run (see parse_into).
_OWN_PARSE_INTO = AnthropicParser.parse_into

class AnthropicAdapter(Adapter):
    max_tokens_paths = (("max_tokens",),)
    name = "anthropic"
    otel_provider_name = "anthropic"
    wire_format = "sse"
    default_base_url = "https://api.anthropic.com"
    api_key_env: Sequence[str] = ("ANTHROPIC_API_KEY",)
    requires_api_key = True
    example_model = "claude-sonnet-4-5"

    def build_request(
        self, messages: List[Dict[str, Any]], options: Dict[str, Any], *, base_url: str, api_key: Optional[str]
    ) -> HTTPRequest:
        check_options(self.name, options, PASSTHROUGH + ("max_tokens", "stop", "stop_sequences", "tools", "tool_choice", "system"))
        model = require_model(self.name, options, self.example_model)
        system, turns = _split_system(messages)
        if options.get("system") is not None:
            if system is not None:
                raise ValueError("pass the system prompt either as a system message or as system=..., not both")
            system = options["system"]
        max_tokens = options.get("max_tokens")
        body: Dict[str, Any] = {
            "model": model,
            "messages": turns,
            "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
            "stream": True,
        }
        if system is not None:
            body["system"] = system
        for key in PASSTHROUGH:
            if options.get(key) is not None:
                body[key] = options[key]
        stop = options.get("stop_sequences", options.get("stop"))
        if stop is not None:
            body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if options.get("tools") is not None:
            body["tools"] = [_tool(t) for t in options["tools"]]
        if options.get("tool_choice") is not None:
            body["tool_choice"] = _tool_choice(options["tool_choice"])
        body.update(options.get("extra_body") or {})
        headers = {"content-type": "application/json", "accept": "text/event-stream", "anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        headers.update(options.get("extra_headers") or {})
        return HTTPRequest(url=f"{base_url}/v1/messages", json=body, headers=headers)

    def new_parser(self, request: HTTPRequest) -> EventParser:
        return AnthropicParser()

    def continuation_trims_space(self, request: HTTPRequest) -> bool:
        """Only a prefill (a final assistant turn) must not end in whitespace."""
        return prefills(request.json or {})

    def build_continuation(self, request: HTTPRequest, partial_text: str) -> HTTPRequest:
        """Continue natively: the partial answer becomes a final assistant turn (a prefill),
        or, for a model that takes none, an assistant turn followed by a user turn that
        asks to go on (the rules: :mod:`adapters._anthropic_prefill`)."""
        return request.with_json(continuation_body(request.json or {}, partial_text))

    def reduce_max_tokens(self, request: HTTPRequest, used: int) -> HTTPRequest:
        """As for every provider, but with extended thinking the API requires
        ``1024 <= budget_tokens < max_tokens``: the budget is lowered with the limit, down
        to its minimum, and the limit stays above the budget."""
        reduced = super().reduce_max_tokens(request, used)
        reduced_body = reduced.json or {}
        thinking = reduced_body.get("thinking")
        limit = reduced_body.get("max_tokens")
        budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
        if not (isinstance(thinking, dict) and isinstance(budget, int) and isinstance(limit, int)) or budget < limit:
            return reduced
        budget = max(min(budget, limit - 1), MIN_THINKING_BUDGET)
        body = dict(reduced_body, thinking=dict(thinking, budget_tokens=budget), max_tokens=max(limit, budget + 1))
        return reduced.with_json(body)

    def continuation_refused(self, request: HTTPRequest, exc: BaseException) -> Optional[HTTPRequest]:
        """A prefill refused by a model that takes none: the same continuation through a
        user turn (:func:`adapters._anthropic_prefill.refused_prefill_body`)."""
        body = refused_prefill_body(request.json or {}, exc)
        return None if body is None else request.with_json(body)


def _split_system(messages: List[Dict[str, Any]]) -> Tuple[Any, List[Dict[str, Any]]]:
    """The top-level ``system`` value and the remaining turns in Anthropic's form.

    Several system messages are joined with a blank line; if any has a list of content
    blocks (e.g. with ``cache_control``), ``system`` becomes the list of all blocks.
    """
    system_parts: List[Any] = []
    turns: List[Dict[str, Any]] = []
    results: Optional[List[Dict[str, Any]]] = None  # the tool_result blocks of the current user turn
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system_parts.append(content)
        elif role == "tool":
            block = {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": content}
            if results is not None:
                results.append(block)  # parallel calls: all results in one user turn
            else:
                results = [block]
                turns.append({"role": "user", "content": results})
            continue
        elif role == "assistant" and message.get("tool_calls"):
            blocks: List[Dict[str, Any]] = [{"type": "text", "text": content}] if content else []
            for call in message["tool_calls"]:
                function = call.get("function") or {}
                arguments = function.get("arguments") or "{}"
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                               "input": json.loads(arguments) if isinstance(arguments, str) else arguments})
            turns.append({"role": "assistant", "content": blocks})
        else:
            turns.append({k: v for k, v in message.items() if k in ("role", "content")})
        results = None
    if not system_parts:
        return None, turns
    if all(isinstance(p, str) for p in system_parts):
        return "\n\n".join(system_parts), turns
    blocks = []
    for part in system_parts:
        blocks.extend([{"type": "text", "text": part}] if isinstance(part, str) else part)
    return blocks, turns


def _tool(tool: Dict[str, Any]) -> Dict[str, Any]:
    """An OpenAI-style ``{"type": "function", "function": {...}}`` tool in Anthropic's form;
    a tool already in Anthropic's form (or a server tool) passes through."""
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        function = tool["function"]
        out = {"name": function.get("name"), "input_schema": function.get("parameters") or {"type": "object"}}
        if function.get("description"):
            out["description"] = function["description"]
        return out
    return tool


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return _TOOL_CHOICE.get(choice, {"type": choice})
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    return choice
