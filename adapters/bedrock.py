"""AWS Bedrock Runtime ConverseStream (``POST {base_url}/model/{modelId}/converse-stream``).

The body is an AWS event stream (``application/vnd.amazon.eventstream``, decoded by
``streamcoord._eventstream``); each message's ``:event-type`` names a ConverseStream
event and its payload is that event's JSON: ``messageStart``, ``contentBlockStart``
(``start.toolUse``), ``contentBlockDelta`` (``delta.text``, ``delta.toolUse.input``
fragments, ``delta.reasoningContent``), ``contentBlockStop``, ``messageStop``
(``stopReason``) and then ``metadata`` (``usage``, ``metrics``). A message with
``:message-type: exception`` is an error (``:exception-type`` throttlingException,
modelStreamErrorException, ...), mapped into the error tree by its type.

Auth: a Bedrock API key (``api_key=`` or ``AWS_BEARER_TOKEN_BEDROCK``) as a Bearer token;
without one, SigV4 through botocore (``adapters._sigv4``), signed just before each send.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import quote

from adapters._bedrock_request import converse_body, max_tokens_path
from adapters._options import check_options, require_model
from adapters._place_names import AWS_REGION
from adapters._sigv4 import INSTALL_HINT, SigV4Signer, botocore_available, request_body
from adapters.base import (
    CONTINUE_INSTRUCTION,
    Adapter,
    EventParser,
    HTTPRequest,
    ProviderSetting,
    error_message,
    json_object,
)
from streamcoord._chunk import Chunk, normalize_usage
from streamcoord.errors import APIError, api_error_for_status

__all__ = ["EXCEPTION_STATUS", "FINISH_REASONS", "BedrockAdapter", "BedrockParser"]

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "error",
    "malformed_tool_use": "error",
}

# ConverseStream exception types and the HTTP status each stands for (the API reference's
# error table). modelStreamErrorException (424 there) is the model failing mid-answer:
# counted as a 500 so that it is retried before the first chunk and recovered after it.
EXCEPTION_STATUS = {
    "throttlingexception": 429,
    "servicequotaexceededexception": 429,
    "modelnotreadyexception": 429,
    "serviceunavailableexception": 503,
    "internalserverexception": 500,
    "modelstreamerrorexception": 500,
    "modeltimeoutexception": 408,
    "validationexception": 400,
    "modelerrorexception": 424,
    "accessdeniedexception": 403,
    "unrecognizedclientexception": 403,
    "resourcenotfoundexception": 404,
}

REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")


class BedrockParser(EventParser):
    provider = "bedrock"
    trailing_events = True  # metadata (usage) follows messageStop

    def __init__(self) -> None:
        super().__init__()
        self._tool_blocks: Dict[int, bool] = {}  # block index -> input fragments seen

    def parse(self, event: Any) -> Optional[Chunk]:
        headers = event.headers
        kind = headers.get(":message-type", "event")
        if kind != "event":
            raise _exception(headers, event.data)
        name = headers.get(":event-type")
        if name == "contentBlockDelta":
            return self._delta(json_object(event.data, "bedrock"))
        if name == "contentBlockStart":
            return self._block_start(json_object(event.data, "bedrock"))
        if name == "contentBlockStop":
            index = json_object(event.data, "bedrock").get("contentBlockIndex", 0)
            if self._tool_blocks.get(index) is False:  # a tool without parameters: "{}"
                self._tool_blocks[index] = True
                return self._chunk(tool_calls=[{"index": index, "function": {"arguments": "{}"}}])
            return None
        if name == "messageStop":
            obj = json_object(event.data, "bedrock")
            raw = obj.get("stopReason") or ""
            self.done = True
            metadata: Dict[str, Any] = {"raw_finish_reason": raw}
            if obj.get("additionalModelResponseFields"):
                metadata["additional_model_response_fields"] = obj["additionalModelResponseFields"]
            return self._chunk(finish_reason=FINISH_REASONS.get(raw, "stop"), metadata=metadata, raw=obj)
        if name == "metadata":
            obj = json_object(event.data, "bedrock")
            raw_usage = obj.get("usage") or {}
            usage = normalize_usage(raw_usage.get("inputTokens"), raw_usage.get("outputTokens"),
                                    raw_usage.get("totalTokens")) if raw_usage else None
            metadata = {k: obj[k] for k in ("metrics", "trace", "performanceConfig") if obj.get(k)}
            if raw_usage:
                metadata["raw_usage"] = raw_usage
            if not (usage or metadata):
                return None
            return self._chunk(usage=usage, metadata=metadata, raw=obj)
        return None  # messageStart, and event types added later

    def _delta(self, obj: Dict[str, Any]) -> Optional[Chunk]:
        delta = obj.get("delta") or {}
        index = obj.get("contentBlockIndex", 0)
        text = delta.get("text")
        if text:
            return self._chunk(text, raw=obj)
        tool = delta.get("toolUse")
        if tool is not None:
            fragment = tool.get("input") or ""
            if not fragment:
                return None
            self._tool_blocks[index] = True
            return self._chunk(tool_calls=[{"index": index, "function": {"arguments": fragment}}], raw=obj)
        if delta.get("citation") is not None:
            return self._chunk(metadata={"citations": [delta["citation"]]}, raw=obj)
        reasoning = delta.get("reasoningContent")
        if reasoning is not None:
            if reasoning.get("text"):
                return self._chunk(metadata={"reasoning": reasoning["text"]}, raw=obj)
            if reasoning.get("signature"):
                return self._chunk(metadata={"reasoning_signature": reasoning["signature"]}, raw=obj)
            if reasoning.get("redactedContent"):
                return self._chunk(metadata={"redacted_reasoning": reasoning["redactedContent"]}, raw=obj)
        return None

    def _block_start(self, obj: Dict[str, Any]) -> Optional[Chunk]:
        tool = (obj.get("start") or {}).get("toolUse")
        if tool is None:
            return None
        index = obj.get("contentBlockIndex", 0)
        self._tool_blocks[index] = False
        call = {"index": index, "id": tool.get("toolUseId"), "type": "function",
                "function": {"name": tool.get("name") or "", "arguments": ""}}
        return self._chunk(tool_calls=[call], raw=obj)

    def _chunk(
        self,
        content: str = "",
        finish_reason: Optional[str] = None,
        usage: Optional[Dict[str, int]] = None,
        tool_calls: Optional[List[Dict[str, Any]]] = None,
        metadata: Optional[Dict[str, Any]] = None,
        raw: Any = None,
    ) -> Chunk:
        index = self.next_index
        self.next_index = index + 1
        return Chunk(content, finish_reason, None, None, index, usage, tool_calls, metadata or {}, raw)


def _exception(headers: Dict[str, Any], data: str) -> APIError:
    """An exception (or error) message as the error class its type stands for."""
    kind = headers.get(":exception-type") or headers.get(":error-code") or "unknownException"
    try:
        body: Any = json.loads(data) if data else {}
    except ValueError:
        body = data
    if not isinstance(body, dict):
        body = {"message": str(body)}
    body = dict(body, type=kind)
    if headers.get(":error-message") and not body.get("message"):
        body["message"] = headers[":error-message"]
    status = EXCEPTION_STATUS.get(kind.lower(), 500)
    cls = api_error_for_status(status)
    return cls(f"bedrock sent {kind}: {error_message(body)}", status=status, body=body, provider="bedrock")


class BedrockAdapter(Adapter):
    name = "bedrock"
    otel_provider_name = "aws.bedrock"
    wire_format = "eventstream"
    api_key_env: Sequence[str] = ("AWS_BEARER_TOKEN_BEDROCK",)
    requires_api_key = False  # SigV4 with AWS credentials otherwise
    client_settings = (ProviderSetting("region", "the AWS region, e.g. us-east-1", env=REGION_ENV),)
    address_help = "https://bedrock-runtime.{region}.amazonaws.com (amazonaws.com.cn in the China regions)"
    other_credentials = (
        "without a Bedrock API key: AWS credentials through botocore, signed with SigV4 (AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, an instance or container role)"
    )
    extra = "bedrock"
    extra_for = "SigV4 with AWS credentials (not needed with a Bedrock API key)"
    example_model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    max_tokens_paths = (max_tokens_path,)

    def __init__(self) -> None:
        self.region: Optional[str] = None
        self._signer: Optional[SigV4Signer] = None
        self._has_key = False

    # configure() calls this with the names in client_settings only, by keyword: narrower
    # than the base's **settings on purpose.
    def apply_settings(self, region: Optional[str] = None) -> None:  # type: ignore[override]
        # The region makes the host the key or signature goes to: checked, from wherever it came.
        self.region = AWS_REGION.resolve("region", region, REGION_ENV)
        self._signer = None

    @property
    def default_base_url(self) -> str:  # type: ignore[override]
        if not self.region:
            return ""
        # The China regions (cn-north-1, cn-northwest-1) are a partition of their own, with
        # its own DNS suffix; every other region Bedrock runs in is under amazonaws.com.
        suffix = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
        return f"https://bedrock-runtime.{self.region}.{suffix}"

    def resolve_api_key(self, api_key: Optional[str]) -> Optional[str]:
        key = super().resolve_api_key(api_key)
        self._has_key = key is not None
        if key is None and not botocore_available():
            raise ValueError(
                f"bedrock needs a Bedrock API key (api_key= or AWS_BEARER_TOKEN_BEDROCK) or botocore for "
                f"AWS credentials: {INSTALL_HINT}"
            )
        return key

    def resolve_base_url(self, base_url: Optional[str]) -> str:
        if not self.region and (base_url is None or not self._has_key):
            # The default address names the region, and so does every SigV4 signature.
            raise ValueError("bedrock needs a region: pass region='us-east-1' or set AWS_REGION")
        return super().resolve_base_url(base_url)

    def build_request(
        self, messages: List[Dict[str, Any]], options: Dict[str, Any], *, base_url: str, api_key: Optional[str]
    ) -> HTTPRequest:
        from adapters._bedrock_request import OPTIONS

        check_options(self.name, options, OPTIONS)
        model = require_model(self.name, options, self.example_model)
        body = converse_body(messages, options)
        headers = {"Content-Type": "application/json", "Accept": "application/vnd.amazon.eventstream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        headers.update(options.get("extra_headers") or {})
        # modelId is one path segment: an ARN's ':' and '/' are percent-encoded.
        url = f"{base_url}/model/{quote(model, safe='')}/converse-stream"
        return HTTPRequest(url=url, json=body, headers=headers)

    def before_send(self, request: HTTPRequest) -> HTTPRequest:
        """SigV4 over the exact body bytes, unless the request already authenticates
        (a Bedrock API key, or an Authorization in extra_headers)."""
        if any(name.lower() == "authorization" for name in request.headers):
            return request
        if self._signer is None:
            self._signer = SigV4Signer(self.region or "")
        content = request_body(request.json or {})
        headers = self._signer.sign(request.method, request.url, request.headers, content)
        return request.with_content(content, headers)

    def new_parser(self, request: HTTPRequest) -> EventParser:
        return BedrockParser()

    def build_continuation(self, request: HTTPRequest, partial_text: str) -> HTTPRequest:
        """The partial answer as an assistant turn, then a user turn asking to go on."""
        body = dict(request.json or {})
        messages = list(body.get("messages") or [])
        messages.append({"role": "assistant", "content": [{"text": partial_text}]})
        messages.append({"role": "user", "content": [{"text": CONTINUE_INSTRUCTION}]})
        body["messages"] = messages
        return request.with_json(body)
