"""``Client`` and the one-call ``stream_chat``."""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Union

import requests
from requests.adapters import HTTPAdapter

import adapters
from adapters.base import Adapter, validate_messages
from streamcoord._config import Retry, Timeout, TimeoutTypes
from streamcoord._options import StreamOptions, split_options
from streamcoord._stream import ChatStream
from streamcoord._worker import StreamSpec

__all__ = ["Client", "new_session", "stream_chat"]

# Connections kept per host: enough for many concurrent streams from one process.
POOL_MAXSIZE = 256


def new_session() -> requests.Session:
    """A Session whose pool holds many concurrent streams; urllib3 retries off (tenacity retries)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=16, pool_maxsize=POOL_MAXSIZE, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


_shared_session: Optional[requests.Session] = None
_shared_lock = threading.Lock()


def _default_session() -> requests.Session:
    """One pooled session per process for clients that were not given one."""
    global _shared_session
    with _shared_lock:
        if _shared_session is None:
            _shared_session = new_session()
        return _shared_session


class Client:
    """A provider, its key and address, and the defaults for its streams.

    ``provider`` is a registered name (``adapters.names()``) or an ``Adapter`` instance.
    The key comes from ``api_key`` or the provider's usual environment variable.
    """

    def __init__(
        self,
        provider: Union[str, Adapter],
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        session: Optional[requests.Session] = None,
        timeout: TimeoutTypes = 300.0,
        max_retries: Union[int, Retry] = 2,
        recovery_store: Any = None,
    ) -> None:
        if isinstance(provider, Adapter):
            self.adapter = provider
        elif isinstance(provider, str):
            self.adapter = adapters.get(provider)
        else:
            raise TypeError(
                f"provider must be a registered name such as 'openai' or an Adapter instance, got {provider!r:.80}"
            )
        self.provider = self.adapter.name
        self.__api_key = self.adapter.resolve_api_key(api_key)
        self.base_url = self.adapter.resolve_base_url(base_url)
        if session is not None and not isinstance(session, requests.Session):
            raise TypeError(f"session must be a requests.Session, got {session!r:.80}")
        self.session = session if session is not None else _default_session()
        self.timeout = Timeout.coerce(timeout)
        self.retry = Retry.coerce(max_retries)
        self.recovery_store = recovery_store

    def stream_chat(self, messages: List[Dict[str, Any]], **options: Any) -> ChatStream:
        """Start streaming an answer. Returns at once; the request goes out on iteration."""
        stream_options, request_options = split_options(options)
        opts = StreamOptions(stream_options, self.timeout)
        request = self.adapter.build_request(
            validate_messages(messages), request_options, base_url=self.base_url, api_key=self.__api_key
        )
        spec = StreamSpec(
            stream_id=opts.stream_id,
            provider=self.provider,
            adapter=self.adapter,
            request=request,
            new_parser=self.adapter.new_parser,
            session=self.session,
            timeout=opts.timeout,
            retry=self.retry,
            wire_format=self.adapter.wire_format,
            on_metrics=opts.on_metrics,
            transform_chunk=opts.transform_chunk,
            validate_chunk=opts.validate_chunk,
            on_invalid=opts.on_invalid,
            buffer_chunks=opts.buffer_chunks,
            on_error=opts.on_error,
            max_line_bytes=opts.max_line_bytes,
        )
        return ChatStream(spec)

    def __repr__(self) -> str:
        return f"<streamcoord.Client provider={self.provider!r} base_url={self.base_url!r}>"


def stream_chat(
    provider: Union[str, Adapter],
    messages: List[Dict[str, Any]],
    *,
    api_key: Optional[str] = None,
    base_url: Optional[str] = None,
    session: Optional[requests.Session] = None,
    max_retries: Union[int, Retry] = 2,
    recovery_store: Any = None,
    **options: Any,
) -> ChatStream:
    """One call: ``for chunk in streamcoord.stream_chat("openai", messages, model=...)``."""
    client = Client(
        provider, api_key=api_key, base_url=base_url, session=session,
        max_retries=max_retries, recovery_store=recovery_store,
    )
    return client.stream_chat(messages, **options)
