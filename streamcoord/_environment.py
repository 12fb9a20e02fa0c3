"""Sending a streamed request through a Session, with what requests takes from the
process environment for each request looked up once.

``Session.request`` asks the environment for proxies, ``NO_PROXY`` and a CA bundle on
every call (``merge_environment_settings``): four scans of ``os.environ`` with a decode of
every name and value, ~0.3-0.5 ms per request on this machine, a third of the time to the
first chunk on loopback (benchmarks/bench_latency.py). ``send_settings`` gives the same
answer from a cache, keyed by everything the answer depends on: the origin, the session's
``trust_env``, ``proxies``, ``verify`` and ``cert``, and the environment's ``*_proxy``
variables and CA bundle variables, read in one scan of the names alone. A proxy set in the
environment between two streams is still honoured. On macOS and Windows, where no
``*_proxy`` variable is set, requests asks the system's proxy settings (the registry,
SystemConfiguration), which no key can follow: there nothing is cached.

``send_streamed`` is ``Session.request``'s own steps (``prepare_request``, then ``send``)
with those settings (the request built by ``_prepare.prepared``); a session whose
``request`` is overridden is called as is.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Hashable, List, Optional, Tuple
from urllib.parse import urlsplit

import requests

from streamcoord._prepare import prepared, runs_requests_own

__all__ = ["send_settings", "send_streamed"]

# Distinct keys kept: one per origin and environment in practice; the bound is for a
# process that changes its environment in a loop.
MAX_CACHED = 64

_cache: Dict[Hashable, Dict[str, Any]] = {}

# Where urllib's getproxies falls back to the system's settings when the environment has
# no proxy variable (urllib.request: macOS and Windows).
SYSTEM_PROXY_SETTINGS = sys.platform == "darwin" or sys.platform.startswith("win")


def _environment_key() -> Tuple[Any, ...]:
    names = [name for name in os.environ if name[-6:].lower() == "_proxy"]
    names.sort()
    return (
        tuple((name, os.environ.get(name)) for name in names),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        os.environ.get("CURL_CA_BUNDLE"),
    )


def _frozen(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((str(key), str(item)) for key, item in value.items()))
    if isinstance(value, list):
        return tuple(value)
    return value  # type: ignore[no-any-return]


def _merged(session: requests.Session, url: str) -> Dict[str, Any]:
    return dict(session.merge_environment_settings(url, {}, True, session.verify, None))


def send_settings(session: requests.Session, url: str) -> Dict[str, Any]:
    """``session.merge_environment_settings(url, {}, True, session.verify, None)``: the
    proxies, stream, verify and cert ``session.send`` needs for a streamed request to
    ``url`` (a new dict each call: the caller may change it)."""
    if not runs_requests_own(session, "merge_environment_settings"):
        # A session's own merging (a subclass, a patch) decides for that session alone:
        # cached under the key of requests' own, it would give another session its result.
        return _merged(session, url)
    parts = urlsplit(url)
    try:
        environment = _environment_key() if session.trust_env else None
        key: Hashable = (
            # The host, never a user and password the URL may carry (kept for the process's
            # life in the cache); proxies and verification do not depend on them.
            parts.scheme, parts.netloc.rpartition("@")[2], session.trust_env, _frozen(session.proxies), _frozen(session.verify),
            _frozen(session.cert), environment,
        )
        hash(key)
    except TypeError:  # a setting that cannot be a key (an unusual object): no cache
        return _merged(session, url)
    if environment is not None and not environment[0] and SYSTEM_PROXY_SETTINGS:
        return _merged(session, url)  # the system's proxy settings decide, and may change
    cached = _cache.get(key)
    if cached is None:
        cached = _merged(session, url)
        if len(_cache) >= MAX_CACHED:
            _cache.clear()
        _cache[key] = cached
    return {name: dict(value) if isinstance(value, dict) else value for name, value in cached.items()}


def send_streamed(
    session: requests.Session, method: str, url: str, headers: Dict[str, str], json: Any, content: Optional[bytes],
    hooks: Dict[str, List[Any]], timeout: Tuple[float, float],
) -> requests.Response:
    """``session.request(..., stream=True, allow_redirects=False, verify=session.verify)``."""
    if not runs_requests_own(session, "request"):  # a caller's own request() (or a wrapper): used as is
        return session.request(
            method, url, json=json, data=content, headers=headers, stream=True, timeout=timeout,
            allow_redirects=False, hooks=hooks,
            # The session's own CA bundle wins over REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
            # (requests lets the environment override it unless it is passed here).
            verify=session.verify,
        )
    request = prepared(session, method, url, headers, json, content, hooks)
    return session.send(request, timeout=timeout, allow_redirects=False, **send_settings(session, request.url or url))
