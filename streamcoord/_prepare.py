"""The ``PreparedRequest`` of a streamed request, built without the generic merging of
``Session.prepare_request`` when the session has nothing to merge into it.

``Session.prepare_request`` merges the session's cookies, auth, params and headers into
every request through requests' general-purpose helpers (``merge_setting``,
``to_key_val_list``: several ``isinstance`` checks against runtime-checkable Protocols,
each a walk of the class's MRO in ``typing``), and prepares the URL from scratch. For our
requests that was ~240 us of the ~1.8 ms to the first chunk on loopback, 5-10x what the
steps that matter cost (benchmarks/bench_latency.py and a timeit of each step). A session
as ``new_session()`` or ``requests.Session()`` makes it, without cookies, auth or params,
merges nothing but its default headers: ``prepared`` builds that request with
``PreparedRequest``'s own steps (headers, body, hooks), the URL prepared once per URL,
and the netrc lookup requests makes for every request. Anything else (cookies a server
set, a session's auth or params, credentials in the URL or in ``~/.netrc``, a session
that overrides ``prepare_request``) goes through ``prepare_request`` as before.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import requests
import requests.utils
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict

__all__ = ["prepared", "runs_requests_own"]

# Distinct URLs kept prepared: one per provider endpoint in practice (a model's name may be
# in the URL); the bound is for a process that streams from ever-changing URLs.
MAX_CACHED_URLS = 256

_urls: Dict[str, str] = {}

# requests' own Session methods, as they are when we are imported. A caller's wrapper (a
# subclass, a patch of the instance or of requests.Session, mock.patch.object) is not one
# of them, and neither is a method patched before this import without functools.wraps
# (its module is not requests').
_REQUESTS_OWN = {
    name: method for name in ("merge_environment_settings", "prepare_request", "request")
    for method in (getattr(requests.Session, name),) if method.__module__ == "requests.sessions"
}


def runs_requests_own(session: requests.Session, name: str) -> bool:
    """Whether ``session.<name>`` is requests' own method, unwrapped: only then may we do
    its steps ourselves instead of calling it."""
    own = _REQUESTS_OWN.get(name)
    return own is not None and getattr(getattr(session, name, None), "__func__", None) is own


def _prepared_url(url: str) -> str:
    """``PreparedRequest.prepare_url(url, None)``'s result, which depends on ``url`` alone."""
    done = _urls.get(url)
    if done is None:
        probe = requests.PreparedRequest()
        probe.prepare_url(url, None)  # raises requests' own errors for a bad URL, as before
        done = probe.url or url
        if "?" in url:  # a query may hold a secret (?api-key=, ?sig=): never kept beyond the request
            return done
        if len(_urls) >= MAX_CACHED_URLS:
            _urls.clear()
        _urls[url] = done
    return done


def _may_hold_credentials(url: str) -> bool:
    """Whether the URL's authority may hold a user and password (``https://u:p@host``),
    which requests sends as Basic auth; an ``@`` further on (Vertex's ``model@version``)
    is not one. Conservative: an authority that runs into a query may answer True."""
    parts = url.split("/", 3)  # scheme:, "", authority, path
    return len(parts) < 3 or "@" in parts[2]


def _merges_nothing(session: requests.Session, url: str) -> bool:
    """Whether ``prepare_request`` would add nothing to the request but the session's
    headers (its cookie jar, auth and params empty, no credentials in the URL or netrc)."""
    if not runs_requests_own(session, "prepare_request"):
        return False
    if session.auth or session.params or len(session.cookies) or _may_hold_credentials(url):
        return False
    # requests looks the netrc file up for every request (it may change): so do we.
    return not (session.trust_env and requests.utils.get_netrc_auth(url))


def prepared(
    session: requests.Session, method: str, url: str, headers: Dict[str, str], json: Any, content: Optional[bytes],
    hooks: Dict[str, List[Any]],
) -> requests.PreparedRequest:
    """``session.prepare_request(requests.Request(method, url, headers=headers,
    data=content or {}, json=json, hooks=hooks))``, built directly when that is the same."""
    if not _merges_nothing(session, url):
        return session.prepare_request(
            requests.Request(method.upper(), url, headers=headers, data=content or {}, json=json, hooks=hooks)
        )
    request = requests.PreparedRequest()
    request.method = method.upper()
    request.url = _prepared_url(url)
    merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict(session.headers)
    merged.update(headers)
    # merge_setting's rule: a header set to None (here or in the session) is left out.
    request.prepare_headers({name: value for name, value in merged.items() if value is not None})
    request.prepare_cookies(RequestsCookieJar())  # the session's jar is empty: no Cookie header
    request.prepare_body(content or {}, None, json)
    request.prepare_hooks(hooks)
    return request
