"""Gemini on Vertex AI: ``POST {base_url}/v1/projects/{project}/locations/{location}/
publishers/google/models/{model}:streamGenerateContent?alt=sse``.

The body and the stream are the Gemini API's (``adapters.gemini``: the same request
mapping, the same parser). What differs is where it goes and how it authenticates:

* the address: ``https://{location}-aiplatform.googleapis.com``,
  ``https://aiplatform.googleapis.com`` for the ``global`` location, or
  ``https://aiplatform.{us,eu}.rep.googleapis.com`` for a multi-region; project and location
  from ``Client(..., project=, location=)`` or ``GOOGLE_CLOUD_PROJECT`` /
  ``GOOGLE_CLOUD_LOCATION``, both checked against Google's naming rules (they make the
  address the token goes to);
* ``Authorization: Bearer``: ``access_token=`` (a str, or a callable asked for a token before
  each request, so expiring tokens work), else google-auth's application default
  credentials (the optional extra ``vertex``), refreshed by google-auth when they expire.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union, cast
from urllib.parse import quote

from adapters._place_names import GOOGLE_LOCATION, GOOGLE_PROJECT
from adapters.base import EventParser, HTTPRequest, ProviderSetting
from adapters.gemini import GeminiAdapter, GeminiParser
from streamcoord._config import Timeout
from streamcoord._keys import check_api_key
from streamcoord._send_budget import SendBudget, current_send_budget
from streamcoord._sockets import StreamingAdapter, sending, shutdown_socket
from streamcoord.errors import AuthenticationError, CallbackError, ConnectionLost, StreamTimeout

__all__ = ["CLOUD_PLATFORM_SCOPE", "INSTALL_HINT", "REFRESH_ABANDON_SECONDS", "REFRESH_POLL_SECONDS", "VertexAdapter"]

INSTALL_HINT = "pip install streamcoord[vertex]"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"
LOCATION_ENV = "GOOGLE_CLOUD_LOCATION"
# Multi-region locations, served on regional endpoints of their own (not {location}-aiplatform).
MULTI_REGIONS = ("us", "eu")
# How soon a credentials refresh notices its stream's cancel.
REFRESH_POLL_SECONDS = 0.05
# What a refresh given up on gets to end, its socket shut down.
REFRESH_ABANDON_SECONDS = 0.5

TokenSource = Union[str, Callable[[], str]]


def google_auth_available() -> bool:
    try:
        import google.auth  # noqa: F401
    except ImportError:
        return False
    return True


class VertexAdapter(GeminiAdapter):
    name = "vertex"
    otel_provider_name = "gcp.vertex_ai"
    api_key_env: Sequence[str] = ()
    requires_api_key = False  # a Bearer token from access_token= or google-auth instead
    client_settings = (
        ProviderSetting("project", "the Google Cloud project", env=(PROJECT_ENV,)),
        ProviderSetting("location", "the Google Cloud location, e.g. us-central1 or global", env=(LOCATION_ENV,)),
        ProviderSetting("access_token", "an OAuth access token, e.g. $(gcloud auth print-access-token) "
                        "(default: application default credentials through google-auth)", secret=True),
    )
    address_help = "https://{location}-aiplatform.googleapis.com (https://aiplatform.googleapis.com for global)"
    other_credentials = (
        "access_token= (a token or a callable returning one), else application default credentials "
        "(GOOGLE_APPLICATION_CREDENTIALS, gcloud auth application-default login)"
    )
    extra = "vertex"
    extra_for = "application default credentials (not needed with access_token=)"

    def __init__(self) -> None:
        self.project: Optional[str] = None
        self.location: Optional[str] = None
        self.access_token: Optional[TokenSource] = None
        self._lock = threading.Lock()
        self._credentials: Any = None  # google-auth's, found on the first request

    # configure() calls this with the names in client_settings only, by keyword: narrower
    # than the base's **settings on purpose.
    def apply_settings(  # type: ignore[override]
        self, project: Optional[str] = None, location: Optional[str] = None, access_token: Optional[TokenSource] = None
    ) -> None:
        # Both make the address the token goes to: checked, from wherever they came.
        self.project = GOOGLE_PROJECT.resolve("project", project, (PROJECT_ENV,))
        self.location = GOOGLE_LOCATION.resolve("location", location, (LOCATION_ENV,))
        if isinstance(access_token, str):
            access_token = check_api_key(access_token, "access_token") or None
        elif access_token is not None and not callable(access_token):
            raise TypeError("access_token must be a str or a callable that returns one (a token provider)")
        self.access_token = access_token
        self._lock = threading.Lock()
        self._credentials = None

    @property
    def default_base_url(self) -> str:  # type: ignore[override]
        if not self.location:
            return ""
        if self.location == "global":
            return "https://aiplatform.googleapis.com"
        if self.location in MULTI_REGIONS:
            return f"https://aiplatform.{self.location}.rep.googleapis.com"
        return f"https://{self.location}-aiplatform.googleapis.com"

    def resolve_api_key(self, api_key: Optional[str]) -> Optional[str]:
        if api_key is not None:
            raise ValueError(
                "vertex authenticates with a Bearer token: pass access_token= (a token, or a callable "
                "returning one), or use application default credentials; not api_key="
            )
        if self.access_token is None and not google_auth_available():
            raise ValueError(
                f"vertex needs access_token=... or google-auth for application default credentials: {INSTALL_HINT}"
            )
        return None

    def resolve_base_url(self, base_url: Optional[str]) -> str:
        missing = [f"{name}= (or {env})" for name, env, value in (
            ("project", PROJECT_ENV, self.project), ("location", LOCATION_ENV, self.location)) if not value]
        if missing:
            raise ValueError(f"vertex needs {' and '.join(missing)}, e.g. project='my-project', location='us-central1'")
        return super().resolve_base_url(base_url)

    def build_request(
        self, messages: List[Dict[str, Any]], options: Dict[str, Any], *, base_url: str, api_key: Optional[str]
    ) -> HTTPRequest:
        request = super().build_request(messages, options, base_url=base_url, api_key=None)
        model = options["model"]
        if model.startswith("projects/"):  # a full resource name: taken as it is
            path = model
        elif "/" in model:  # "publishers/meta/models/...", or a tuned "endpoints/123"
            path = f"projects/{self.project}/locations/{self.location}/{model}"
        else:
            path = f"projects/{self.project}/locations/{self.location}/publishers/google/models/{model}"
        headers = dict(request.headers)
        if isinstance(self.access_token, str) and not _has_authorization(headers):
            headers["Authorization"] = f"Bearer {self.access_token}"
        url = f"{base_url}/v1/{quote(path, safe='/')}:streamGenerateContent?alt=sse"
        return HTTPRequest(url=url, json=request.json, headers=headers)

    def before_send(self, request: HTTPRequest) -> HTTPRequest:
        """A fresh token from the provider or google-auth for each request."""
        if _has_authorization(request.headers):
            return request
        token = self._token()
        return HTTPRequest(request.url, request.json, dict(request.headers, Authorization=f"Bearer {token}"),
                           request.method)

    def _token(self) -> str:
        provider = self.access_token
        if not callable(provider):
            return self._adc_token()
        try:
            token = provider()
        except Exception as exc:
            raise CallbackError(
                f"the vertex access_token provider raised {type(exc).__name__}: {exc}", "access_token"
            ) from exc
        if not isinstance(token, str) or not token.strip():
            raise CallbackError(
                f"the vertex access_token provider returned {type(token).__name__}, not a token (a non-empty str)",
                "access_token",
            )
        try:
            # Never None: the token is non-empty after strip(), checked above.
            return cast(str, check_api_key(token, "the token from the access_token provider"))
        except ValueError as exc:  # names the position of the bad character, never the token
            raise CallbackError(str(exc), "access_token") from None

    def _adc_token(self) -> str:
        import google.auth
        import google.auth.exceptions

        try:
            with self._lock:  # held to look the credentials up, never across a refresh
                if self._credentials is None:
                    self._credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
                credentials = self._credentials
                if credentials.valid:
                    return str(credentials.token)
            # A copy is refreshed, so that a refresh stuck on a slow token endpoint holds up
            # its own stream only: another stream refreshes its own copy meanwhile.
            fresh = _refreshed(copy.copy(credentials), current_send_budget())
            with self._lock:
                if self._credentials is credentials or (self._credentials is not None and not self._credentials.valid):
                    self._credentials = fresh
            return str(fresh.token)
        except google.auth.exceptions.TransportError as exc:
            raise ConnectionLost(f"vertex: could not reach Google's token endpoint to refresh the "
                                 f"application default credentials ({exc})") from None
        except google.auth.exceptions.GoogleAuthError as exc:
            raise AuthenticationError(
                f"vertex: no usable application default credentials ({exc}); run `gcloud auth "
                "application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or pass access_token=",
                provider="vertex",
            ) from None

    def new_parser(self, request: HTTPRequest) -> EventParser:
        parser = GeminiParser()
        parser.provider = "vertex"
        return parser


def _refreshed(credentials: Any, budget: Optional[SendBudget]) -> Any:
    """``credentials`` refreshed by google-auth within the send's budget (each of its token
    requests gets the time left, not google-auth's 120 s), on a thread of its own that a
    cancel or the end of the budget leaves at once, its socket shut down."""
    import google.auth.transport.requests
    import requests

    # Outside a stream's send (none tells its budget): the default connect timeout.
    seconds = budget.seconds if budget is not None else float(Timeout().connect)
    until = budget.until if budget is not None else time.monotonic() + seconds
    cancelled = budget.cancelled if budget is not None else threading.Event()
    session = requests.Session()
    for prefix in ("http://", "https://"):  # connections that tell their socket
        session.mount(prefix, StreamingAdapter())
    send = google.auth.transport.requests.Request(session)
    connection = _RefreshConnection()
    failure: List[BaseException] = []
    done = threading.Event()

    def bounded(url: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        import google.auth.exceptions

        left = until - time.monotonic()
        if left <= 0 or cancelled.is_set():  # between google-auth's retries
            raise google.auth.exceptions.TransportError("no time left to refresh the credentials")  # type: ignore[no-untyped-call]
        # A little past the budget, so that the waiting stream, not this timeout, decides
        # when the budget is spent (a StreamTimeout, not a lost connection).
        kwargs["timeout"] = left + REFRESH_ABANDON_SECONDS
        return send(url, method, body, headers, **kwargs)

    def refresh() -> None:
        sending.transport = connection
        try:
            credentials.refresh(bounded)
        except BaseException as exc:  # handed to the waiting stream
            failure.append(exc)
        finally:
            sending.transport = None
            session.close()
            done.set()

    worker = threading.Thread(target=refresh, name="streamcoord-vertex-token-refresh", daemon=True)
    worker.start()
    # Woken by the refresh, and every REFRESH_POLL_SECONDS to look at the cancel flag.
    while not done.wait(max(min(until - time.monotonic(), REFRESH_POLL_SECONDS), 0.0)):
        if cancelled.is_set() or time.monotonic() >= until:
            connection.abandon()
            done.wait(REFRESH_ABANDON_SECONDS)
            if cancelled.is_set():
                raise ConnectionLost("the stream was closed")
            raise StreamTimeout(f"vertex: refreshing the application default credentials took longer than {seconds:.3g}s")
    if failure:
        raise failure[0]
    return credentials


class _RefreshConnection:
    """Told the socket of a refresh's token request (``_sockets``), from its connect to the
    end of its body, so that a refresh given up on is woken at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: Any = None
        self._abandoned = False

    def announce(self, sock: Any) -> None:
        with self._lock:
            self._sock = sock
            if self._abandoned:
                shutdown_socket(sock)

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            if self._sock is not None:
                shutdown_socket(self._sock)


def _has_authorization(headers: Dict[str, str]) -> bool:
    return any(name.lower() == "authorization" for name in headers)

