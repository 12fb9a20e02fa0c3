"""OpenAI Responses API event streams, as the API reference documents them: every event an
``event: <type>`` line and a JSON ``data:`` line with ``type`` and ``sequence_number``; the
stream ends at ``response.completed`` / ``response.incomplete`` / ``response.failed`` (no
``[DONE]``)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

from tests.support.fakeserver import Drop, Response

__all__ = ["ResponsesStream"]


class ResponsesStream:
    """Builds one response's events with consecutive sequence numbers.

    ``stream = ResponsesStream("resp_1")``; ``stream.text(["Hel", "lo"])``;
    ``stream.completed()``; ``stream.response(drop_after=n)`` (a Response of the first n
    events, then a dropped connection) or ``stream.response(start_after=k)`` (the events
    after sequence number k, as a native resume GET answers).
    """

    def __init__(self, response_id: str = "resp_test", model: str = "gpt-5-mini", background: bool = False) -> None:
        self.id = response_id
        self.model = model
        self.events: List[Dict[str, Any]] = []
        self.output: List[Dict[str, Any]] = []
        self.add("response.created", response=self._response("queued" if background else "in_progress"))
        self.add("response.in_progress", response=self._response("in_progress"))

    def _response(self, status: str, **extra: Any) -> Dict[str, Any]:
        return dict({"id": self.id, "object": "response", "created_at": 1760000000, "status": status,
                     "model": self.model, "output": list(self.output), "usage": None}, **extra)

    def add(self, kind: str, **fields: Any) -> "ResponsesStream":
        self.events.append(dict({"type": kind, "sequence_number": len(self.events)}, **fields))
        return self

    def text(self, pieces: Sequence[str], item_id: str = "msg_1") -> "ResponsesStream":
        index = len(self.output)
        item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        self.add("response.output_item.added", output_index=index, item=item)
        self.add("response.content_part.added", item_id=item_id, output_index=index, content_index=0,
                 part={"type": "output_text", "text": "", "annotations": []})
        for piece in pieces:
            self.add("response.output_text.delta", item_id=item_id, output_index=index, content_index=0,
                     delta=piece, logprobs=[])
        text = "".join(pieces)
        self.add("response.output_text.done", item_id=item_id, output_index=index, content_index=0, text=text)
        done = dict(item, status="completed", content=[{"type": "output_text", "text": text, "annotations": []}])
        self.add("response.output_item.done", output_index=index, item=done)
        self.output.append(done)
        return self

    def reasoning(self, pieces: Sequence[str], item_id: str = "rs_1") -> "ResponsesStream":
        index = len(self.output)
        item = {"id": item_id, "type": "reasoning", "summary": []}
        self.add("response.output_item.added", output_index=index, item=item)
        for piece in pieces:
            self.add("response.reasoning_summary_text.delta", item_id=item_id, output_index=index,
                     summary_index=0, delta=piece)
        self.output.append(item)
        return self

    def function_call(self, name: str, arguments: Sequence[str], call_id: str, item_id: str) -> "ResponsesStream":
        index = len(self.output)
        item = {"id": item_id, "type": "function_call", "status": "in_progress", "arguments": "",
                "call_id": call_id, "name": name}
        self.add("response.output_item.added", output_index=index, item=item)
        for piece in arguments:
            self.add("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=piece)
        self.add("response.function_call_arguments.done", item_id=item_id, output_index=index,
                 arguments="".join(arguments))
        done = dict(item, status="completed", arguments="".join(arguments))
        self.add("response.output_item.done", output_index=index, item=done)
        self.output.append(done)
        return self

    def completed(self, input_tokens: int = 12, output_tokens: int = 7) -> "ResponsesStream":
        usage = {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": input_tokens + output_tokens}
        return self.add("response.completed", response=self._response("completed", usage=usage))

    def incomplete(self, reason: str) -> "ResponsesStream":
        return self.add("response.incomplete",
                        response=self._response("incomplete", incomplete_details={"reason": reason}))

    def failed(self, code: str, message: str) -> "ResponsesStream":
        return self.add("response.failed",
                        response=self._response("failed", error={"code": code, "message": message}))

    def error(self, code: str, message: str) -> "ResponsesStream":
        return self.add("error", code=code, message=message, param=None)

    def seq_of(self, kind: str, nth: int = 0) -> int:
        """The sequence number of the nth event of ``kind``."""
        return [e["sequence_number"] for e in self.events if e["type"] == kind][nth]

    def response(self, drop_after: Optional[int] = None, start_after: Optional[int] = None, **kw: Any) -> Response:
        events = self.events
        if start_after is not None:
            events = [e for e in events if e["sequence_number"] > start_after]
        if drop_after is not None:
            events = [e for e in events if e["sequence_number"] <= drop_after]
        parts: List[Any] = [
            ("event: %s\ndata: %s\n\n" % (e["type"], json.dumps(e, separators=(",", ":")))).encode() for e in events
        ]
        if drop_after is not None:
            parts.append(Drop())
        return Response(parts=tuple(parts), **kw)
