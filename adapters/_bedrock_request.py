"""The ConverseStream request body from chat messages and options (Bedrock's Converse API).

Messages become ``messages`` of content blocks (``{"text"}``, ``{"toolUse"}``,
``{"toolResult"}``), system messages ``system``; ``max_tokens``/``temperature``/``top_p``/
``stop`` go to ``inferenceConfig``; OpenAI-style tools to ``toolConfig.tools[].toolSpec``
and ``tool_choice`` to ``toolConfig.toolChoice`` (``"none"``, which Converse lacks, by
sending no tools). The Converse API's own top-level fields
(``additionalModelRequestFields``, ``guardrailConfig``, ...) are options in snake_case.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

__all__ = ["OPTIONS", "converse_body", "max_tokens_path"]

# Option name -> inferenceConfig field.
INFERENCE_CONFIG = {
    "max_tokens": "maxTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "stop": "stopSequences",
    "stop_sequences": "stopSequences",
}
# Option name -> top-level Converse field.
TOP_LEVEL = {
    "additional_model_request_fields": "additionalModelRequestFields",
    "additional_model_response_field_paths": "additionalModelResponseFieldPaths",
    "guardrail_config": "guardrailConfig",
    "performance_config": "performanceConfig",
    "prompt_variables": "promptVariables",
    "request_metadata": "requestMetadata",
    "service_tier": "serviceTier",
}
OPTIONS = tuple(INFERENCE_CONFIG) + tuple(TOP_LEVEL) + ("tools", "tool_choice", "tool_config")
max_tokens_path: Tuple[str, ...] = ("inferenceConfig", "maxTokens")


def converse_body(messages: List[Dict[str, Any]], options: Dict[str, Any]) -> Dict[str, Any]:
    system, turns = _messages(messages)
    body: Dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = system
    config: Dict[str, Any] = {}
    for option, field in INFERENCE_CONFIG.items():
        value = options.get(option)
        if value is not None:
            config[field] = [value] if field == "stopSequences" and isinstance(value, str) else value
    if config:
        body["inferenceConfig"] = config
    for option, field in TOP_LEVEL.items():
        if options.get(option) is not None:
            body[field] = options[option]
    tool_config = dict(options.get("tool_config") or {})  # Converse's own form, as given
    if options.get("tools") is not None:
        tool_config["tools"] = [_tool(t) for t in options["tools"]]
    if options.get("tool_choice") == "none":
        # Converse's toolChoice has no "none" (auto, any, tool): the tools are withheld, so
        # that the model cannot call them. Bedrock refuses a conversation holding toolUse or
        # toolResult blocks without its toolConfig, and with it the model could call a tool.
        if _has_tool_blocks(turns):
            raise ValueError(
                "bedrock cannot honour tool_choice='none' here: Converse has no 'none', and messages holding "
                "tool calls or tool results must be sent with their tools, which the model may then call; "
                "leave tool_choice out (the model decides), or send the conversation without its tool messages"
            )
        tool_config = {}
    elif options.get("tool_choice") is not None:
        tool_config["toolChoice"] = _tool_choice(options["tool_choice"])
    if tool_config:
        body["toolConfig"] = tool_config
    body.update(options.get("extra_body") or {})
    return body


def _messages(messages: List[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """``(system blocks, turns)``. Consecutive turns of one role are merged (Converse wants
    user and assistant to alternate); tool results are user turns of ``toolResult`` blocks."""
    system: List[Dict[str, Any]] = []
    turns: List[Dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_blocks(content))
            continue
        if role == "tool":
            blocks = [_tool_result(message)]
            role = "user"
        else:
            blocks = _blocks(content)
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                arguments = function.get("arguments") or "{}"
                tool_input = json.loads(arguments) if isinstance(arguments, str) else arguments
                blocks.append({"toolUse": {"toolUseId": call.get("id"), "name": function.get("name"),
                                           "input": tool_input}})
            role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _blocks(content: Any) -> List[Dict[str, Any]]:
    """Content blocks from a string, or from OpenAI-style (``{"type": "text"}``) or
    Converse-style blocks (passed through)."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"text": content}]
    return [{"text": p.get("text", "")} if p.get("type") == "text" else p for p in content]


def _tool_result(message: Dict[str, Any]) -> Dict[str, Any]:
    content = message.get("content")
    try:
        value = json.loads(content) if isinstance(content, str) else content
    except ValueError:
        value = None
    result = [{"json": value}] if isinstance(value, dict) else _blocks(content)
    return {"toolResult": {"toolUseId": message.get("tool_call_id"), "content": result}}


def _tool(tool: Dict[str, Any]) -> Dict[str, Any]:
    """An OpenAI-style function tool as a ``toolSpec``; Converse-style tools pass through."""
    if tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        return tool
    function = tool["function"]
    spec: Dict[str, Any] = {"name": function.get("name")}
    if function.get("description"):
        spec["description"] = function["description"]
    spec["inputSchema"] = {"json": function.get("parameters") or {"type": "object", "properties": {}}}
    return {"toolSpec": spec}


def _has_tool_blocks(turns: List[Dict[str, Any]]) -> bool:
    return any("toolUse" in block or "toolResult" in block
               for turn in turns for block in turn["content"] if isinstance(block, dict))


def _tool_choice(choice: Any) -> Any:
    if choice == "auto":
        return {"auto": {}}
    if choice in ("required", "any"):
        return {"any": {}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"tool": {"name": (choice.get("function") or {}).get("name")}}
    return choice
