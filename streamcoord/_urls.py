"""URLs: what of them is shown in logs and errors, and where a redirect may lead.

No I/O: the transport asks ``redirect_target`` before it follows a redirect.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Optional, Set, Tuple

from streamcoord.errors import APIError

__all__ = ["MAX_REDIRECTS", "redirect_target", "safe_url"]

MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(parts: urllib.parse.SplitResult) -> Tuple[str, str, Optional[int]]:
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def redirect_target(status: int, url: str, location: Optional[str], seen: Set[str], provider: str, body: Any) -> str:
    """Where a redirect may be followed to, or the ``APIError`` that says why not: only a
    307/308 (method and body unchanged) to the same origin, so that no credential header
    (``Authorization``, ``x-api-key``, ``x-goog-api-key``, ``api-key``, ...) ever reaches
    another host; at most ``MAX_REDIRECTS``, no loop."""

    def refused(why: str) -> APIError:
        where = safe_url(location) if location else "nowhere (no Location header)"
        return APIError(
            f"{provider} answered HTTP {status}, a redirect to {where}, which streamcoord does not follow: {why}",
            status=status, body=body, provider=provider,
        )

    if status not in (307, 308):
        raise refused("only 307/308 redirects to the same origin are followed; set base_url to the final address")
    if not location:
        raise refused("there is no address to follow")
    try:
        target = urllib.parse.urljoin(url, location.strip())
        parts = urllib.parse.urlsplit(target)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise refused("the Location is not a valid URL") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise refused("the Location is not an http(s) URL")
    if _origin(parts) != _origin(urllib.parse.urlsplit(url)):
        raise refused("it leads to another origin, which must not receive the request's credentials; "
                      "set base_url to it if you trust it")
    if target in seen:
        raise refused("a redirect loop")
    if len(seen) > MAX_REDIRECTS:
        raise refused(f"more than {MAX_REDIRECTS} redirects")
    return target


def safe_url(url: str) -> str:
    """The URL to show in logs and errors: no user:password, no query values."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<an invalid URL>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "&".join(f"{name}=..." for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
