"""The adapter protocol: the provider-specific part of a stream, with no I/O.

It lives in streamcoord, the lower layer; the ``adapters`` package builds on it (and
``adapters.base`` re-exports it), never the other way round.

An adapter does three things, all pure:

* ``build_request(messages, options, base_url=, api_key=)`` turns ``{"role", "content"}``
  messages and options into an :class:`HTTPRequest` (URL, headers, JSON body);
* ``new_parser(request)`` returns an :class:`EventParser`, the per-stream state that turns
  one decoded wire event (an SSE event, or one NDJSON line as an event's ``data``) into a
  :class:`~streamcoord.Chunk` or ``None``;
* ``build_continuation(request, partial_text)`` builds the request that continues an
  interrupted answer (stream recovery).

The coordinator does all the I/O: it sends the request, decodes the wire format named by
``wire_format`` ("sse" or "ndjson"), calls the parser, and ends the stream at the SSE
``[DONE]`` marker before the parser sees it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from streamcoord._chunk import Chunk, TextRun
from streamcoord._keys import check_api_key, is_secret_header
from streamcoord.errors import APIError, ConnectionLost, ProtocolError, api_error_for_status

__all__ = [
    "CONTINUE_INSTRUCTION",
    "REDACTED",
    "Adapter",
    "EventParser",
    "HTTPRequest",
    "ProviderSetting",
    "bearer_headers",
    "error_message",
    "json_object",
    "json_scan_once",
    "redact_headers",
    "validate_messages",
]

REDACTED = "[redacted]"

def redact_headers(headers: Mapping[str, str]) -> Dict[str, str]:
    """A copy of ``headers`` safe to log or show: secret values replaced by ``[redacted]``."""
    return {k: (REDACTED if is_secret_header(k) else v) for k, v in headers.items()}


@dataclasses.dataclass(frozen=True)
class HTTPRequest:
    """One HTTP request to a provider. ``repr`` never shows secret header values."""

    url: str
    json: Optional[Dict[str, Any]]  # None: a request without a body (GET)
    headers: Dict[str, str] = dataclasses.field(default_factory=dict)
    method: str = "POST"
    # The exact body bytes, when a signature covers them (SigV4): sent instead of ``json``.
    content: Optional[bytes] = None

    def __repr__(self) -> str:
        return f"HTTPRequest(method={self.method!r}, url={self.url!r}, headers={redact_headers(self.headers)!r})"

    def with_json(self, body: Dict[str, Any]) -> "HTTPRequest":
        return dataclasses.replace(self, json=body, content=None)

    def with_content(self, content: bytes, headers: Dict[str, str]) -> "HTTPRequest":
        """The request as sent: ``json`` serialized to ``content``, with the headers that go with it."""
        return dataclasses.replace(self, content=content, headers=headers)


class ProviderSetting(str):
    """The name of a provider setting (a ``Client`` keyword argument, compared and hashed as
    that str), with what the command line and ``python -m streamcoord providers`` say of it:
    ``help``, the environment variables read when it is not given (``env``), whether the
    command line can pass it (a str, not a callable) and whether it is a secret (a token:
    never echoed)."""

    help: str
    env: Tuple[str, ...]
    command_line: bool
    secret: bool

    def __new__(cls, name: str, help: str, *, env: Sequence[str] = (), command_line: bool = True,
                secret: bool = False) -> "ProviderSetting":
        setting = super().__new__(cls, name)
        setting.help, setting.env, setting.command_line, setting.secret = help, tuple(env), command_line, secret
        return setting


class EventParser:
    """Per-stream parsing state. Subclasses implement :meth:`parse`.

    ``parse(event)`` gets one event with ``.event`` (type), ``.data`` (payload string) and
    ``.id``; it returns a Chunk, or ``None`` to skip the event (pings, bookkeeping events).
    It raises an :class:`~streamcoord.APIError` subclass for an in-stream error event.
    It sets ``self.done = True`` when the provider has signalled the end of the answer;
    :meth:`finish`, called at a clean end of the body, raises :class:`ConnectionLost` when
    that signal never came, so a truncated stream is never taken for a complete one.
    """

    provider = "custom"

    # A parser may set this after parse_into when every chunk it appended in that call is
    # text only (no finish reason, usage, tool calls or metadata), which spares the worker
    # a look at each chunk. Leaving it False is always correct.
    plain = False

    # A parser class that sets fills_text_runs may be given a TextRun (text_run) by the
    # worker for the length of an attempt (recovery on, nothing to shape per chunk): its
    # parse_into then adds text-only chunks to the run instead of appending Chunks to
    # ``out``, but only while ``out`` is still empty in that call (the run's chunks come
    # before out's), and never from parse(). The worker offers no run to an instance whose
    # parse_into was replaced (a wrapper or a spy sees Chunks).
    fills_text_runs = False
    text_run: Optional[TextRun] = None

    # True when the provider sends more events after the one that sets ``done`` (OpenAI
    # chat completions: a usage chunk, then ``[DONE]``): the worker reads on for them, for
    # at most a second, until the end marker or the end of the body. False: the event that
    # sets ``done`` is the last of the answer, and the end reaches the consumer at once.
    trailing_events = False

    def __init__(self) -> None:
        self.done = False
        self.next_index = 0

    def parse(self, event: Any) -> Optional[Chunk]:  # pragma: no cover - abstract
        raise NotImplementedError

    def parse_into(self, events: List[Any], out: List[Chunk]) -> None:
        """Parse one network read's events, appending the chunks to ``out``. Appending (not
        returning) means the chunks parsed before an error are still there for the caller.
        Parsers may override this with a tighter loop; it runs for every event."""
        parse = self.parse
        append = out.append
        for event in events:
            chunk = parse(event)
            if chunk is not None:
                append(chunk)

    def resume_state(self) -> Optional[Dict[str, Any]]:
        """Where the provider could take this stream up again itself (JSON, e.g. a
        response id and the last event's sequence number), for ``Adapter.native_resume``;
        None when it cannot."""
        return None

    def finish(self) -> None:
        if not self.done:
            raise ConnectionLost(
                f"the {self.provider} stream ended before the provider signalled its end "
                "(a proxy or the server cut it short)"
            )


class Adapter:
    """Base class of provider adapters. Subclass it for a custom provider.

    Class attributes describe the provider: ``name``; ``wire_format`` ("sse" or
    "ndjson"); ``default_base_url``; ``api_key_env`` (environment variables tried in order);
    ``requires_api_key``; ``otel_provider_name`` (telemetry's ``gen_ai.provider.name``).
    """

    name = "custom"
    wire_format = "sse"
    default_base_url = ""
    api_key_env: Sequence[str] = ()
    requires_api_key = True
    # gen_ai.provider.name in telemetry: one of OpenTelemetry's well-known values ("openai",
    # "aws.bedrock", "gcp.vertex_ai", ...); empty: ``name`` as it is.
    otel_provider_name = ""
    # The provider settings this adapter takes as ``Client(...)`` keyword arguments
    # (bedrock: ``region``; vertex: ``project``, ``location``, ``access_token``;
    # azure_openai: ``api_version``, ``azure_ad_token_provider``).
    client_settings: Sequence[str] = ()
    # What ``python -m streamcoord providers`` shows beside the above: the environment
    # variables the address comes from (before ``default_base_url``), the address forms in
    # words where ``default_base_url`` does not say it all, credentials other than the key
    # variables, and the optional extra (setup.py) a part of the provider needs.
    base_url_env: Sequence[str] = ()
    address_help = ""
    other_credentials = ""
    extra: Optional[str] = None
    extra_for = ""

    # -- configuration -------------------------------------------------------------
    def configure(self, **settings: Any) -> "Adapter":
        """This adapter with its provider settings (a copy when it takes any, so an
        instance registered once serves clients with different settings)."""
        unknown = sorted(set(settings) - set(self.client_settings))
        if unknown:
            takes = f"it takes {', '.join(self.client_settings)}" if self.client_settings else "it takes none"
            raise TypeError(f"{unknown[0]!r} is not a setting of provider {self.name!r} ({takes})")
        if not self.client_settings:
            return self
        adapter = copy.copy(self)
        adapter.apply_settings(**settings)
        return adapter

    def apply_settings(self, **settings: Any) -> None:
        """Take the settings (each None when not given: read the environment then)."""

    def resolve_api_key(self, api_key: Optional[str]) -> Optional[str]:
        """The key from the argument, else from the provider's usual environment variables,
        without surrounding whitespace; a character HTTP cannot send is a ValueError that
        names its position, never the key."""
        if api_key is not None:
            key = check_api_key(api_key, "api_key")
            if key:
                return key
        for var in self.api_key_env:
            value = os.environ.get(var)
            if value:
                key = check_api_key(value, f"the environment variable {var}")
                if key:
                    return key
        if self.requires_api_key:
            names = " or ".join(self.api_key_env) or "api_key"
            raise ValueError(
                f"no API key for {self.name!r}: pass api_key=... or set {names} in the environment"
            )
        return None

    def resolve_base_url(self, base_url: Optional[str]) -> str:
        if base_url is not None and not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str such as 'http://localhost:8000/v1', got {type(base_url).__name__}")
        url = (base_url or self.default_base_url).rstrip("/")
        if url and not url.lower().startswith(("http://", "https://")):
            scheme, found, rest = url.partition("://")
            if found:  # another scheme (ftp://x): the same address over HTTPS is the likely meaning
                raise ValueError(f"base_url must start with http:// or https://, not {scheme}://: e.g. 'https://{rest}'")
            raise ValueError(f"base_url must start with http:// or https://, e.g. 'http://{url}'")
        return url

    # -- the three pure operations ------------------------------------------------------
    def build_request(
        self, messages: List[Dict[str, Any]], options: Dict[str, Any], *, base_url: str, api_key: Optional[str]
    ) -> HTTPRequest:  # pragma: no cover - abstract
        raise NotImplementedError

    def new_parser(self, request: HTTPRequest) -> EventParser:  # pragma: no cover - abstract
        raise NotImplementedError

    def before_send(self, request: HTTPRequest) -> HTTPRequest:
        """The request as it goes out, made just before each send (the first, every retry
        and every continuation): where a signature (SigV4) or a fresh token from a
        provider goes. The default sends the request as built."""
        return request

    def build_continuation(self, request: HTTPRequest, partial_text: str) -> HTTPRequest:
        """Default continuation: the partial answer as an assistant turn, then an instruction.

        Adapters whose provider continues an assistant prefix natively override this.
        """
        body = dict(request.json or {})
        messages = list(body.get("messages") or [])
        messages.append({"role": "assistant", "content": partial_text})
        messages.append({"role": "user", "content": CONTINUE_INSTRUCTION})
        body["messages"] = messages
        return request.with_json(body)

    def continuation_refused(self, request: HTTPRequest, exc: BaseException) -> Optional[HTTPRequest]:
        """The continuation ``request`` failed with ``exc``: if another form of the same
        continuation avoids that failure (Anthropic: a model that takes no prefill), that
        request; else None. The recovery tries it once per stream."""
        return None

    def native_resume(self, request: HTTPRequest, state: Optional[Dict[str, Any]]) -> Optional[HTTPRequest]:
        """After a break: the request that makes the provider replay the stream from
        ``state`` (the last parser's ``resume_state()``) on, with nothing lost or repeated
        (OpenAI's background responses); None where the provider cannot, and the recovery
        strategy continues instead."""
        return None

    def cancel_request(self, request: HTTPRequest, state: Optional[Dict[str, Any]]) -> Optional[HTTPRequest]:
        """The request that stops a generation the server runs on its own after the
        consumer gave up (a background response); sent best effort. None: nothing to stop."""
        return None

    def continuation_trims_space(self, request: HTTPRequest) -> bool:
        """Whether the continuation of ``request`` ends in a prefix the provider rejects
        with trailing whitespace (an Anthropic prefill): then the kept text is cut before
        its trailing whitespace and the model writes it again. A continuation through a
        fresh turn keeps it: a fresh turn does not start with the whitespace."""
        return False

    # Where each provider keeps its output-token limit in the request body, tried in order.
    max_tokens_paths: Sequence[Sequence[str]] = (("max_completion_tokens",), ("max_tokens",))

    def reduce_max_tokens(self, request: HTTPRequest, used: int) -> HTTPRequest:
        """The request with its output-token limit lowered by ``used`` (never below 1)."""
        for path in self.max_tokens_paths:
            body = dict(request.json or {})
            container: Dict[str, Any] = body
            for key in path[:-1]:
                inner = container.get(key)
                if not isinstance(inner, dict):
                    break
                container[key] = container = dict(inner)
            else:
                limit = container.get(path[-1])
                if isinstance(limit, int) and not isinstance(limit, bool):
                    container[path[-1]] = max(limit - used, 1)
                    return request.with_json(body)
        return request

    # -- errors ------------------------------------------------------------------------
    def error_from_response(self, status: int, body: Any, retry_after: Optional[float] = None) -> APIError:
        """The exception for a non-2xx answer; ``body`` is decoded JSON or text."""
        cls = api_error_for_status(status)
        return cls(
            f"{self.name} answered HTTP {status}: {error_message(body)}",
            status=status,
            body=body,
            provider=self.name,
            retry_after=retry_after,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly where it stopped, without "
    "repeating anything and without any preamble."
)


def bearer_headers(api_key: Optional[str], options: Dict[str, Any]) -> Dict[str, str]:
    """JSON in, an event stream out, ``Authorization: Bearer`` when there is a key, and
    the caller's ``extra_headers`` last (OpenAI-style APIs)."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(options.get("extra_headers") or {})
    return headers


def error_message(body: Any) -> str:
    """A short human message from a provider's error body (JSON or text)."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]  # Google's streaming methods answer an error as a one-element array
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("type") or err.get("status")
            if msg:
                return str(msg)[:500]
        elif isinstance(err, str):
            return err[:500]
    text = body if isinstance(body, str) else repr(body)
    return text[:500] if text else "(empty body)"


# The C scanner behind json.loads: (value, end) for the JSON value at an index.
# (Not in typeshed: JSONDecoder sets it in __init__.)
json_scan_once: Callable[[str, int], Tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def json_object(data: str, provider: str) -> Dict[str, Any]:
    """One event's JSON object. Calls the C scanner directly: ``json.loads`` spends as long
    again on its wrapper and two whitespace regexes, and this runs once per chunk."""
    try:
        obj, end = json_scan_once(data, 0)
        if end != len(data) and data[end:].strip():
            raise ValueError("extra data after the JSON value")
    except (StopIteration, ValueError):
        try:
            obj = json.loads(data)  # leading whitespace, or a real error with a good message
        except ValueError as exc:
            raise ProtocolError(f"{provider} sent an event that is not JSON: {data[:200]!r}") from exc
    if obj.__class__ is not dict:
        raise ProtocolError(f"{provider} sent an event that is not a JSON object: {data[:200]!r}")
    return obj


def validate_messages(messages: Any) -> List[Dict[str, Any]]:
    """Check ``messages`` up front so mistakes fail with a clear message, not a 400 later."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(
            'messages must be a list of {"role": ..., "content": ...} dicts, e.g. '
            '[{"role": "user", "content": "Hello"}]'
        )
    if not messages:
        raise ValueError('messages is empty: pass at least one {"role": "user", "content": ...}')
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message:
            raise TypeError(f'messages[{i}] must be a dict with "role" and "content", got {message!r:.80}')
        if message["role"] not in ("system", "user", "assistant", "tool", "developer"):
            raise ValueError(
                f'messages[{i}]["role"] is {message["role"]!r}: use "system", "user", "assistant" or "tool"'
            )
        content = message.get("content")
        if content is None and not (message["role"] == "assistant" and message.get("tool_calls")):
            raise TypeError(f'messages[{i}] needs "content" (a str, or a list of content parts)')
        if content is not None and not isinstance(content, (str, list)):
            raise TypeError(f'messages[{i}]["content"] must be a str or a list of content parts, got {type(content).__name__}')
    return [dict(m) for m in messages]
