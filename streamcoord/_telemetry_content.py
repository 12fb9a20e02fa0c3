"""Message content on a GenAI span, opt-in: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``
records the prompt, the answer and tool-call arguments as the span attributes
``gen_ai.system_instructions``, ``gen_ai.input.messages`` and ``gen_ai.output.messages``
(JSON in the conventions' parts form). Keys and headers are never recorded."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

__all__ = ["CAPTURE_CONTENT_ENV", "capture_content", "content_attributes"]

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def capture_content() -> bool:
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("true", "span_only", "span_and_event")


def _parts(content: Any) -> List[Dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts = []
    for item in content if isinstance(content, list) else ():
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            parts.append({"type": "text", "content": item["text"]})
        elif isinstance(item, dict):
            parts.append({"type": str(item.get("type") or "unknown")})
    return parts


def _tool_call_parts(calls: Any) -> List[Dict[str, Any]]:
    parts = []
    for call in calls or ():
        function = call.get("function") or {}
        arguments: Any = function.get("arguments")
        try:
            arguments = json.loads(arguments) if isinstance(arguments, str) and arguments else arguments
        except ValueError:
            pass  # kept as the text the model sent
        parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name"), "arguments": arguments})
    return parts


def content_attributes(messages: List[Dict[str, Any]], answer: Any) -> Dict[str, str]:
    """The opt-in content attributes, JSON in the conventions' parts form."""
    system: List[Dict[str, Any]] = []
    inputs: List[Dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(message.get("content")))
        elif role == "tool":
            inputs.append({"role": "tool", "parts": [
                {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": message.get("content")}]})
        else:
            inputs.append({"role": role, "parts": _parts(message.get("content")) + _tool_call_parts(message.get("tool_calls"))})
    output: List[Dict[str, Any]] = []
    reasoning = "".join(answer.reasoning_parts)
    if reasoning:
        output.append({"type": "reasoning", "content": reasoning})
    if answer.text:
        output.append({"type": "text", "content": answer.text})
    output += _tool_call_parts(answer.tool_calls.result())
    attributes = {
        "gen_ai.input.messages": json.dumps(inputs, ensure_ascii=False, default=str),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": output, "finish_reason": answer.finish_reason or "error"}],
            ensure_ascii=False, default=str,
        ),
    }
    if system:
        attributes["gen_ai.system_instructions"] = json.dumps(system, ensure_ascii=False, default=str)
    return attributes
