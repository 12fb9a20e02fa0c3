"""API keys and other secrets: checked once, up front, and scrubbed wherever they could surface.

Checking: a key (or any header value) that HTTP cannot carry is a ``ValueError`` when the
client or the stream is made, naming where the bad character is and never the key itself.
Surrounding whitespace is stripped first: a key read with ``open("key.txt").read()`` ends
in a newline, and HTTP ignores whitespace around a field value anyway (RFC 9110 5.5).

Scrubbing: a stream knows its secrets (the key, and the values of the secret headers it
sends) as a :class:`Scrubber`. The worker scrubs what it hands to the consumer (the error
and its whole cause chain, ``APIError.body``, the body given to ``on_error``), the recovery
store gets scrubbed writes, and :class:`ScrubbingFilter` on the ``streamcoord`` loggers
scrubs every log record with the secrets of every scrubber still alive. A server or a
proxy that echoes the key back in an error body is what makes all of this necessary.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import weakref
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

__all__ = [
    "MIN_SECRET_LENGTH",
    "SCRUBBED",
    "SECRET_HEADERS",
    "Scrubber",
    "check_api_key",
    "check_extra_headers",
    "check_headers",
    "is_secret_header",
    "live_secrets",
    "secrets_in_headers",
]

# Header names whose values are secrets; compared lower-case.
SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "api-key", "proxy-authorization", "cookie",
     "x-amz-security-token"}  # an AWS session token, sent beside a SigV4 signature
)
# Words that make any other header name a secret one too (``X-Proxy-Token``,
# ``X-Custom-Api-Key``, ``X-Auth-Secret``) where headers are shown (reprs, logs): a value
# wrongly taken for a secret is only redacted there, a secret wrongly taken for a plain
# value would be shown. Never for scrubbing text: ``X-Cache-Key: weather`` would turn the
# model's "The weather in Paris" into "The *** in Paris" in the store and on resume.
_SECRET_WORDS = ("key", "token", "secret", "auth", "password", "cookie", "credential")


def is_secret_header(name: str) -> bool:
    """Whether a header's value may be a credential, by its name: for redacting headers
    where they are shown."""
    lower = name.lower()
    return lower in SECRET_HEADERS or any(word in lower for word in _SECRET_WORDS)


#: What a secret is replaced by.
SCRUBBED = "***"

# Shorter values are not secrets any provider issues, and replacing every occurrence of,
# say, "ab" would garble every message that holds those letters.
MIN_SECRET_LENGTH = 4

# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


# What HTTP cannot send in a header value: a control character, or anything outside ASCII.
_UNSENDABLE = re.compile(r"[^\x20-\x7e]")


def _bad_character(value: str) -> Optional[int]:
    """The index of the first character HTTP cannot send in a header value, or None."""
    found = _UNSENDABLE.search(value)
    return found.start() if found is not None else None


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}" if name else f"U+{ord(ch):04X}, a control character"


def _position(original: str, index: int) -> str:
    """Where ``index`` of ``original.strip()`` is in ``original``, as the user counts it."""
    return f"{index + len(original) - len(original.lstrip())} (counting from 0)"


def check_api_key(value: Any, source: str) -> Optional[str]:
    """``value`` (from ``source``: "api_key" or an environment variable) without surrounding
    whitespace; None when nothing is left. A character HTTP cannot send is a ValueError that
    names its position and kind, never the key."""
    if not isinstance(value, str):
        raise TypeError(f"{source} must be a str, got {type(value).__name__}")
    key = value.strip()
    bad = _bad_character(key)
    if bad is not None:
        raise ValueError(
            f"{source} has a character that cannot be sent in an HTTP header at position "
            f"{_position(value, bad)}, {_describe(key[bad])}. API keys are "
            "plain ASCII: copy the key again from the provider's console (an editor or a web page "
            "may have added an invisible or typographic character)"
        )
    return key or None


def check_headers(headers: Any, where: str) -> Dict[str, str]:
    """``headers`` checked for sending: str names made of token characters, str values
    stripped of surrounding whitespace and free of control and non-ASCII characters. The
    error for a bad value names the header and the position, never the value."""
    if not isinstance(headers, Mapping):
        raise TypeError(f"{where} must be a dict of header names to str values, got {type(headers).__name__}")
    checked: Dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(
                f"{where} has an invalid header name {str(name)[:60]!r}: use letters, digits and "
                "-, such as 'X-Request-Id'"
            )
        if not isinstance(value, str):
            raise TypeError(f"{where}: the value of header {name!r} must be a str, got {type(value).__name__}")
        value = value.strip()
        bad = _bad_character(value)
        if bad is not None:
            raise ValueError(
                f"{where}: the value of header {name!r} has a character that cannot be sent in HTTP at position "
                f"{_position(headers[name], bad)}, {_describe(value[bad])}; header values are plain ASCII"
            )
        checked[name] = value
    return checked


def secrets_in_headers(headers: Mapping[str, str], *, by_name: bool = False) -> List[str]:
    """The secret values among ``headers``: whole values of the :data:`SECRET_HEADERS`,
    and the credentials after an auth scheme (``Bearer sk-...`` gives ``sk-...`` too).
    ``by_name`` adds the headers that look like secrets by name (:func:`is_secret_header`:
    ``X-Gateway-Token``), for what the library itself says (errors, logs); never for the
    model's text, where ``X-Cache-Key: weather`` is an ordinary word."""
    is_secret = is_secret_header if by_name else (lambda name: name.lower() in SECRET_HEADERS)
    found = []
    for name, value in headers.items():
        if value and is_secret(name):
            found.append(value)
            scheme, _, credentials = value.partition(" ")
            if credentials.strip() and scheme.isalpha():
                found.append(credentials.strip())
    return found


# Every scrubber still referenced (by a live stream), for the logging filter, and the
# union of their secrets, rebuilt only after a scrubber was added or collected (each of
# which moves the generation on).
_live: Dict[int, "weakref.ref[Scrubber]"] = {}
_live_lock = threading.Lock()
_generation = 0
# Dead references are dropped by live_secrets(), which runs only for a record that is
# logged: without logging, one per stream stayed (63 per 100 streams measured), so a
# registration sweeps them once _live has doubled since the last sweep (amortised O(1)).
SWEEP_AT_LEAST = 64
_sweep_at = SWEEP_AT_LEAST
_cached: Tuple[int, Tuple[str, ...]] = (0, ())


def _forget(_ref: Any) -> None:
    # Runs inside the garbage collector, maybe while this thread holds _live_lock: only
    # move the generation on; live_secrets() drops the dead reference.
    global _generation
    _generation += 1


def _register(scrubber: "Scrubber") -> None:
    """Known to the logging filter while referenced; the caller holds _live_lock."""
    global _generation, _sweep_at
    if len(_live) >= _sweep_at:
        for key, ref in list(_live.items()):
            if ref() is None:
                del _live[key]
        _sweep_at = max(SWEEP_AT_LEAST, 2 * len(_live))
    _live[id(scrubber)] = weakref.ref(scrubber, _forget)
    _generation += 1


# C-level attributes some exceptions format into their message (OSError, UnicodeError).
_EXCEPTION_SLOTS = ("strerror", "filename", "filename2", "object", "reason")


class Scrubber:
    """Replaces a stream's secrets by ``***`` in text, values and exceptions."""

    __slots__ = ("secrets", "_bytes", "__weakref__")

    def __init__(self, secrets: Iterable[Optional[str]] = (), *, live: bool = True) -> None:
        """``live``: known to the logging filter for as long as this scrubber is referenced."""
        unique = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        # Longest first, so a value that contains another secret is replaced whole.
        self.secrets: Tuple[str, ...] = tuple(sorted(unique, key=len, reverse=True))
        self._bytes = tuple(s.encode("utf-8") for s in self.secrets)
        if self.secrets and live:
            with _live_lock:
                _register(self)

    def add(self, secrets: Iterable[Optional[str]]) -> None:
        """Secrets learnt after the start (a token fetched or a request signed just before
        sending): scrubbed from then on, and known to the logging filter."""
        new = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH} - set(self.secrets)
        if not new:
            return
        self.secrets = tuple(sorted(set(self.secrets) | new, key=len, reverse=True))
        self._bytes = tuple(s.encode("utf-8") for s in self.secrets)
        with _live_lock:
            _register(self)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __repr__(self) -> str:
        return f"<Scrubber of {len(self.secrets)} secret(s)>"

    def found(self, text: str) -> bool:
        return any(s in text for s in self.secrets)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, SCRUBBED)
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every str (and bytes) in it scrubbed: dicts, lists and tuples are
        copied where they change, anything else is returned as it is."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            for secret in self._bytes:
                if secret in value:
                    value = value.replace(secret, SCRUBBED.encode())
            return value
        if isinstance(value, dict):
            changed = False
            items = {}
            for key, item in value.items():
                new_key, new_item = self.value(key), self.value(item)
                changed = changed or new_key is not key or new_item is not item
                items[new_key] = new_item
            return items if changed else value
        if isinstance(value, (list, tuple)):
            elements = [self.value(v) for v in value]
            if all(a is b for a, b in zip(elements, value)):
                return value
            return type(value)(elements) if isinstance(value, list) else tuple(elements)
        return value

    def exception(self, exc: BaseException) -> BaseException:
        """Scrub ``exc`` in place, and every exception it leads to: ``__cause__``,
        ``__context__``, exceptions in its args and attributes (urllib3's ``reason``).
        Returns ``exc``."""
        if not self.secrets:
            return exc
        seen = set()
        todo = [exc]
        while todo:
            current = todo.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            self._scrub_one(current, todo)
        return exc

    def _scrub_one(self, exc: BaseException, todo: List[BaseException]) -> None:
        for linked in (exc.__cause__, exc.__context__):
            if linked is not None:
                todo.append(linked)
        args = []
        for arg in exc.args:
            if isinstance(arg, BaseException):
                todo.append(arg)
            args.append(self.value(arg))
        try:
            exc.args = tuple(args)
        except (AttributeError, TypeError):  # noqa: S110 - an exception type that fixes its args
            pass
        for name in _EXCEPTION_SLOTS:
            value = getattr(exc, name, None)
            if isinstance(value, BaseException):
                todo.append(value)
            elif isinstance(value, (str, bytes)):
                new = self.value(value)
                if new is not value:
                    try:
                        setattr(exc, name, new)
                    except (AttributeError, TypeError):  # noqa: S110 - read-only on this type
                        pass
        for name, value in list(getattr(exc, "__dict__", {}).items()):
            if isinstance(value, BaseException):
                todo.append(value)
                continue
            headers = getattr(value, "headers", None)
            if name in ("request", "response") and headers is not None and hasattr(headers, "items"):
                # The request that failed (requests keeps it on its exceptions): it has
                # been sent, so redacting its headers loses nothing.
                for header, header_value in list(headers.items()):
                    if isinstance(header_value, str) and self.found(header_value):
                        headers[header] = SCRUBBED
                continue
            new = self.value(value)
            if new is not value:
                setattr(exc, name, new)


def live_secrets() -> Tuple[str, ...]:
    """The secrets of every scrubber still alive, longest first."""
    global _cached
    generation, secrets = _cached
    if generation == _generation:
        return secrets
    with _live_lock:
        generation = _generation
        unique: Set[str] = set()
        for key, ref in list(_live.items()):
            scrubber = ref()
            if scrubber is None:
                del _live[key]
            else:
                unique.update(scrubber.secrets)
        secrets = tuple(sorted(unique, key=len, reverse=True))
        _cached = (generation, secrets)
        return secrets


def check_extra_headers(request_options: Dict[str, Any]) -> None:
    """``extra_headers`` checked (and stripped) before any request is built."""
    extra = request_options.get("extra_headers")
    if extra is not None:
        request_options["extra_headers"] = check_headers(extra, "extra_headers")
