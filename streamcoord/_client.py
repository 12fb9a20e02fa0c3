"""``Client`` and the one-call ``stream_chat``."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import requests

from streamcoord import _registry
from streamcoord._adapter import Adapter, validate_messages
from streamcoord._config import Retry, Timeout, TimeoutTypes
from streamcoord._keys import SCRUBBED, Scrubber, check_extra_headers, check_headers, secrets_in_headers
from streamcoord._live_client import DEFAULT_LEASE_TTL, Continuation, LiveAlready, LiveStreams, final_text, try_lease
from streamcoord._options import StreamOptions, live_options, split_options
from streamcoord._spec import Resume, StreamSpec
from streamcoord._stream import ChatStream
from streamcoord._transport import StreamingAdapter
from streamcoord.errors import RecoveryFailed

# The store-backed parts (recovery_store, _live, _recovery, _stored) are imported by the
# first stream that uses a store, not by `import streamcoord` (see _live_client).
if TYPE_CHECKING:
    from recovery_store import RecoveryStore
    from streamcoord._recovery import RecordWriter
    from streamcoord._stored import StoredStream
    from streamcoord._telemetry import Instruments

__all__ = ["Client", "new_session", "stream_chat"]

logger = logging.getLogger("streamcoord")

# Connections kept per host: enough for many concurrent streams from one process.
POOL_MAXSIZE = 256


def new_session() -> requests.Session:
    """A Session whose pool holds many concurrent streams; urllib3 retries off (tenacity retries)."""
    session = requests.Session()
    adapter = StreamingAdapter(pool_connections=16, pool_maxsize=POOL_MAXSIZE, max_retries=0)
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


class Client(LiveStreams):
    """A provider, its key and address, and the defaults for its streams.

    ``provider`` is a registered name (``streamcoord.adapter_names()``) or an ``Adapter`` instance.
    The key comes from ``api_key`` or the provider's usual environment variable.
    ``settings`` are the provider's own (``region=`` for bedrock; ``project=``,
    ``location=``, ``access_token=`` for vertex: ``adapter.client_settings``).
    ``telemetry=True`` records each stream as an OpenTelemetry span and GenAI metrics
    (extra ``otel``); the default follows ``streamcoord.instrument()``.
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
        lease_ttl: float = DEFAULT_LEASE_TTL,
        telemetry: Optional[bool] = None,
        **settings: Any,
    ) -> None:
        """``settings``: the provider's own client settings (``adapter.client_settings``,
        e.g. ``region=`` for bedrock, ``api_version=`` and ``azure_ad_token_provider=`` for
        ``azure_openai``)."""
        self.adapter = _configured(_adapter_for(provider), settings)
        self.provider = self.adapter.name
        self.__api_key = self.adapter.resolve_api_key(api_key)
        self.base_url = self.adapter.resolve_base_url(base_url)
        if session is not None and not isinstance(session, requests.Session):
            raise TypeError(f"session must be a requests.Session, got {session!r:.80}")
        self.session = session if session is not None else _default_session()
        self.timeout = Timeout.coerce(timeout)
        self.retry = Retry.coerce(max_retries)
        if recovery_store is not None and not _is_store(recovery_store):
            raise TypeError(
                "recovery_store must be a recovery_store.RecoveryStore such as DiskStore(directory), "
                f"MemoryStore() or RedisStore(url), got {recovery_store!r:.80}"
            )
        self.recovery_store = recovery_store
        if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, (int, float)) or not (
            lease_ttl > 0 and math.isfinite(lease_ttl)
        ):
            raise ValueError(f"lease_ttl must be a positive number of seconds, got {lease_ttl!r:.80}")
        self.lease_ttl = float(lease_ttl)
        # OpenTelemetry spans and metrics (extra "otel"); None follows streamcoord.instrument().
        self._telemetry = _instruments_for(telemetry)

    def stream_chat(self, messages: List[Dict[str, Any]], **options: Any) -> ChatStream:
        """Start streaming an answer. Returns at once; the request goes out on iteration."""
        stream_options, request_options = split_options(options)
        messages = validate_messages(messages)
        check_extra_headers(request_options)
        _check_no_settings(self.adapter, request_options)
        request = self._build_request(messages, request_options)
        opts = StreamOptions(stream_options, self.timeout)
        lease = self._recovery_lease(opts) if opts.stream_recovery else None
        try:
            return self._stream(request, opts, messages, request_options, None, lease)
        except BaseException:
            if lease is not None:
                lease[0].release_lease(opts.stream_id, lease[1])
            raise

    def _recovery_lease(self, opts: StreamOptions) -> Optional[Tuple[RecoveryStore, str]]:
        """A recovering stream produces its id like ``start`` does: it holds the lease, so
        an ``attach`` or ``resume`` of the id elsewhere follows it instead of generating a
        second time. An id another producer holds is a ``ValueError`` (as ``start``'s):
        this call's messages may not be that stream's, so following it silently would
        answer another request. A store that fails here leaves the stream without a lease
        (its recovery then fails the same way, logged)."""
        from streamcoord._recovery import default_store

        store = self.recovery_store
        if store is None:
            try:
                store = default_store()
            except Exception:  # _stream says so, once, and streams without recovery
                return None
        try:
            token = try_lease(store, opts.stream_id, self.lease_ttl)
        except RecoveryFailed as exc:
            logger.warning("%s; streaming without a lease", exc, extra={"stream_id": opts.stream_id, "provider": self.provider})
            return None
        if token is False:
            raise LiveAlready(
                f"stream {opts.stream_id!r} is being generated by another producer: follow it with "
                f"client.attach({opts.stream_id!r}), or pass another stream_id"
            )
        return (store, token) if isinstance(token, str) else None

    def _build_request(self, messages: List[Dict[str, Any]], request_options: Dict[str, Any]) -> Any:
        request = self.adapter.build_request(messages, request_options, base_url=self.base_url, api_key=self.__api_key)
        # A custom adapter may add headers of its own: all of them are checked before anything is sent.
        headers = check_headers(request.headers, f"the headers built by {self.adapter!r}")
        return dataclasses.replace(request, headers=headers)

    def resume(self, stream_id: str, offset: int = 0, **options: Any) -> ChatStream:
        """Take up a stored stream, in this process or another: replay what was stored from
        character ``offset`` on (what the caller already has, like SSE's Last-Event-ID),
        then continue the generation where it broke off.

        Stream options (``on_metrics``, ``transform_chunk``, ``recovery={...}``, ...) may
        be given again; the request itself is the stored one. Unknown or expired ids raise
        ``RecoveryFailed``.
        """
        stream_options, request_options = split_options(options)
        check_extra_headers(request_options)
        extra_headers = request_options.pop("extra_headers", None)  # never stored, so given again
        if request_options:
            raise TypeError(
                f"resume() takes stream options (and extra_headers) only; the request is the stored one "
                f"(got {sorted(request_options)})"
            )
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a whole number of characters >= 0, got {offset!r}")
        from streamcoord._stored import load_stored, store_for_resume

        store = store_for_resume(self.recovery_store, stream_id)
        stored = load_stored(store, stream_id)
        live = live_options(stream_options)
        if stored is None and final_text(store, stream_id) is not None:
            return self._attach(stream_id, offset, True, live)  # completed just now: its final text, kept briefly
        if stored is None:
            raise RecoveryFailed(
                f"no stored stream {stream_id!r}: it is unknown, was completed (and not kept), or has expired"
            )
        # A completed (kept) record is replayed as before, live or not: nothing to follow.
        token = None if stored.completed else try_lease(store, stream_id, self.lease_ttl)
        if token is False:  # a live producer has it: follow that one, never a second generation
            return self._attach(stream_id, offset, True, live)

        def continuation(stored: StoredStream) -> Continuation:
            # Each check may refuse the resume: the lease is given back then, or a mistaken
            # resume (another client's provider, an offset past the text) would block the id
            # for lease_ttl, every attach following a producer that does not exist.
            if stored.provider != self.provider:
                raise ValueError(
                    f"stream {stream_id!r} was started with provider {stored.provider!r}; "
                    f"resume it with Client({stored.provider!r})"
                )
            if offset > len(stored.text):
                raise ValueError(f"offset {offset} is past the {len(stored.text)} characters stored for {stream_id!r}")
            recovery = dict(stored.recovery, **(stream_options.get("recovery") or {}))
            options = dict(stream_options, stream_id=stream_id, stream_recovery=True, recovery=recovery)
            request_options = dict(stored.options)
            if extra_headers:
                request_options["extra_headers"] = extra_headers
            try:
                request = self._build_request(stored.messages, request_options)
            except (TypeError, ValueError) as exc:  # the stored options, changed by hand
                raise RecoveryFailed(
                    f"cannot resume stream {stream_id!r}: its record in {stored.where} holds a request that is not "
                    f"valid ({exc}); delete it and start a new stream"
                ) from exc
            resume = Resume(stored.text, offset, stored.completed, stored.resume_state)
            return request, StreamOptions(options, self.timeout), resume

        stream = self._produce_stored(
            store, stream_id, token if isinstance(token, str) else None, continuation, None if token else stored
        )
        # None: another producer finished or took the stream between our read and the lease.
        return stream if stream is not None else self._attach(stream_id, offset, True, live)

    def _stream(
        self,
        request: Any,
        opts: StreamOptions,
        messages: List[Dict[str, Any]],
        request_options: Dict[str, Any],
        resume: Optional[Resume] = None,
        lease: Optional[Tuple[RecoveryStore, str]] = None,
    ) -> ChatStream:
        recovery = None
        meta = None
        live = None
        # The key, the secret headers (extra_headers too) and a password in base_url: what
        # the stored text is scrubbed of. What the library says (errors, logs) is scrubbed
        # of the values of headers secret by their name too.
        secrets = [self.__api_key or "", *secrets_in_headers(request.headers), urllib.parse.urlsplit(self.base_url).password]
        scrubber = Scrubber(secrets, live=False)
        said_secrets = [*scrubber.secrets, *secrets_in_headers(request.headers, by_name=True)]
        if opts.stream_recovery:
            from streamcoord._live import LiveProducer
            from streamcoord._recovery import Recovery, recovery_options
            from streamcoord._stored import ScrubbedWrites, store_for_stream

            strategy, max_retries, keep = recovery_options(opts.recovery)
            # What a resume needs, and only that: never headers or keys.
            stored_options = {k: v for k, v in request_options.items() if k != "extra_headers"}
            meta = {
                "provider": self.provider,
                "messages": messages,
                "options": stored_options,
                "recovery": {"strategy": strategy, "max_retries": max_retries, "keep": keep},
            }
            try:
                json.dumps(meta)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"stream_recovery stores the messages and options as JSON, and these are not JSON: {exc}"
                ) from None
            store = store_for_stream(self.recovery_store, opts.stream_id, self.provider)
            if store is None:
                meta = None  # a store that cannot be opened leaves the stream without recovery
            else:
                writes: RecordWriter = store
                if lease is not None:
                    live = LiveProducer(lease[0], opts.stream_id, lease[1], self.lease_ttl, keep, self.provider)
                    writes = live.fence(store)  # its writes carry the lease: refused once it is lost
                if scrubber:
                    writes = ScrubbedWrites(writes, scrubber)
                recovery = Recovery(writes, opts.stream_id, strategy, max_retries, keep, self.provider)
                if live is not None:
                    # Readers elsewhere need the end: the worker keeps the record, and the
                    # producer deletes it (unless keep) after recording the outcome.
                    recovery.keep = True
        telemetry = None
        if self._telemetry is not None:
            telemetry = self._telemetry.stream(
                self.adapter.otel_provider_name or self.provider, opts.stream_id, request.url, request_options, messages)
        spec = StreamSpec(
            options=opts,
            provider=self.provider,
            adapter=self.adapter,
            request=request,
            new_parser=self.adapter.new_parser,
            session=self.session,
            retry=self.retry,
            wire_format=self.adapter.wire_format,
            recovery=recovery,
            recovery_meta=meta,
            resume=resume,
            telemetry=telemetry,
            secrets=said_secrets,
            live=live,
        )
        return ChatStream(spec)

    def __repr__(self) -> str:
        base_url = self.base_url
        password = urllib.parse.urlsplit(base_url).password
        if password:  # a proxy's credentials in the URL: the user name stays, the password goes
            base_url = base_url.replace(f":{password}@", f":{SCRUBBED}@", 1)
        return f"<streamcoord.Client provider={self.provider!r} base_url={base_url!r}>"


def _instruments_for(telemetry: Optional[bool]) -> Optional["Instruments"]:
    """A Client's telemetry instruments, or None. With the default (None), nothing was asked
    for unless ``streamcoord.instrument()`` ran, and that imported ``_telemetry``: until
    then the module is not imported (with its content helpers, ~0.6 ms of ``import
    streamcoord``)."""
    if telemetry is None and "streamcoord._telemetry" not in sys.modules:
        return None
    from streamcoord import _telemetry

    return _telemetry.instruments_for(telemetry)


def _is_store(value: Any) -> bool:
    from recovery_store import RecoveryStore

    return isinstance(value, RecoveryStore)


def _adapter_for(provider: Union[str, Adapter]) -> Adapter:
    if isinstance(provider, Adapter):
        return provider
    if isinstance(provider, str):
        return _registry.get(provider)
    raise TypeError(
        f"provider must be a registered name such as 'openai' or an Adapter instance, got {provider!r:.80}"
    )


def _check_no_settings(adapter: Adapter, request_options: Dict[str, Any]) -> None:
    """A provider setting belongs to the client (its address, signature or token depend on
    it), never to one request: given to ``stream_chat`` it is a TypeError saying where it goes
    (checked here, so for custom adapters too)."""
    for name in request_options:
        if name in adapter.client_settings:
            raise TypeError(
                f"{name!r} is an argument of the client, not of one request: pass it as "
                f"streamcoord.Client({adapter.name!r}, {name}=...) (or to streamcoord.stream_chat)"
            )


def _configured(adapter: Adapter, settings: Dict[str, Any]) -> Adapter:
    """The adapter with its provider settings applied; a setting it does not declare is a
    TypeError naming those it does."""
    unknown = sorted(set(settings) - set(adapter.client_settings))
    if unknown:
        known = ", ".join(f"{name}=" for name in adapter.client_settings)
        raise TypeError(
            f"Client({adapter.name!r}) got unexpected argument(s) {', '.join(unknown)}"
            + (f"; its provider settings are {known}" if known else "; it takes no provider settings")
        )
    return adapter.configure(**settings)


def stream_chat(
    provider: Union[str, Adapter],
    messages: List[Dict[str, Any]],
    *,
    api_key: Optional[str] = None,
    base_url: Optional[str] = None,
    session: Optional[requests.Session] = None,
    max_retries: Union[int, Retry] = 2,
    recovery_store: Any = None,
    telemetry: Optional[bool] = None,
    **options: Any,
) -> ChatStream:
    """One call: ``for chunk in streamcoord.stream_chat("openai", messages, model=...)``.
    The provider's settings (``region=``, ``api_version=``, ...) go to its Client, the rest to the stream."""
    adapter = _adapter_for(provider)
    settings = {name: options.pop(name) for name in adapter.client_settings if name in options}
    client = Client(
        adapter, api_key=api_key, base_url=base_url, session=session,
        max_retries=max_retries, recovery_store=recovery_store, telemetry=telemetry, **settings,
    )
    return client.stream_chat(messages, **options)
