"""Checking the stream options once, up front, with messages that say what to pass."""

from __future__ import annotations

import base64
import os
from typing import Any, Callable, Dict, Optional, Tuple, cast

from streamcoord._config import Timeout
from streamcoord._decoders import DEFAULT_MAX_LINE_BYTES

__all__ = ["RECORDING_OPTIONS", "STREAM_OPTIONS", "StreamOptions", "live_options", "new_stream_id", "split_options"]

STREAM_OPTIONS = frozenset({
    "track_metrics", "on_metrics", "transform_chunk", "validate_chunk", "on_invalid",
    "buffer_chunks", "stream_recovery", "recovery", "on_error", "timeout", "stream_id",
    "max_line_bytes",
})

RECOVERY_KEYS = frozenset({"strategy", "max_retries", "keep"})


def new_stream_id() -> str:
    # secrets.token_urlsafe(12), written out: the secrets module is one import more (~0.2 ms).
    return base64.urlsafe_b64encode(os.urandom(12)).rstrip(b"=").decode("ascii")


def _callable(name: str, value: Any, signature: str) -> Optional[Callable[..., Any]]:
    if value is None:
        return None
    if not callable(value):
        raise TypeError(f"{name} must be a function {signature}, got {value!r:.80}")
    return cast(Callable[..., Any], value)


class StreamOptions:
    """The validated stream options of one ``stream_chat`` call."""

    __slots__ = tuple(sorted(STREAM_OPTIONS))

    def __init__(self, options: Dict[str, Any], default_timeout: Timeout) -> None:
        self.on_metrics = _callable("on_metrics", options.get("on_metrics"), "(metrics) -> None")
        track = options.get("track_metrics")
        if track is not None and not isinstance(track, bool):
            raise TypeError(f"track_metrics must be True or False, got {track!r:.80}")
        self.track_metrics = (self.on_metrics is not None) if track is None else track
        if not self.track_metrics:
            self.on_metrics = None
        self.transform_chunk = _callable("transform_chunk", options.get("transform_chunk"), "(chunk) -> Chunk | None")
        self.validate_chunk = _callable("validate_chunk", options.get("validate_chunk"), "(chunk) -> None | str")
        self.on_error = _callable("on_error", options.get("on_error"), "(status, body) -> None")
        on_invalid = options.get("on_invalid", "skip")
        if on_invalid not in ("skip", "raise"):
            raise ValueError(f'on_invalid must be "skip" or "raise", got {on_invalid!r}')
        self.on_invalid = on_invalid
        buffer_chunks = options.get("buffer_chunks", 1)
        if buffer_chunks is None:
            buffer_chunks = 1
        if isinstance(buffer_chunks, bool) or not isinstance(buffer_chunks, int) or buffer_chunks < 1:
            raise ValueError(f"buffer_chunks must be a whole number >= 1 (1 = no buffering), got {buffer_chunks!r}")
        self.buffer_chunks = buffer_chunks
        timeout = options.get("timeout")
        self.timeout = default_timeout if timeout is None else Timeout.coerce(timeout)
        stream_id = options.get("stream_id")
        if stream_id is None:
            stream_id = new_stream_id()
        else:
            # Imported here: recovery_store is not loaded by `import streamcoord` (its rule
            # for an id is the one rule, and a caller that names its streams uses stores).
            from recovery_store.base import STREAM_ID_RE

            if not isinstance(stream_id, str) or not STREAM_ID_RE.fullmatch(stream_id):
                raise ValueError(
                    f"stream_id must be 1-200 characters of letters, digits and _.:-, got {stream_id!r:.80}"
                )
        self.stream_id = stream_id
        max_line = options.get("max_line_bytes", DEFAULT_MAX_LINE_BYTES)
        if isinstance(max_line, bool) or not isinstance(max_line, int) or max_line < 1024:
            raise ValueError(f"max_line_bytes must be a whole number >= 1024, got {max_line!r}")
        self.max_line_bytes = max_line
        stream_recovery = options.get("stream_recovery", False)
        if not isinstance(stream_recovery, bool):
            raise TypeError(f"stream_recovery must be True or False, got {stream_recovery!r:.80}")
        self.stream_recovery = stream_recovery
        recovery = options.get("recovery") or {}
        if not isinstance(recovery, dict):
            raise TypeError(f'recovery must be a dict like {{"strategy": "paragraph", "max_retries": 3}}, got {recovery!r:.80}')
        unknown = set(recovery) - RECOVERY_KEYS
        if unknown:
            raise ValueError(f"unknown recovery option(s) {sorted(unknown)}: use {sorted(RECOVERY_KEYS)}")
        if recovery and not stream_recovery:
            raise ValueError("recovery={...} configures stream recovery: pass stream_recovery=True with it")
        self.recovery = recovery


def split_options(options: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(stream options, request options for the adapter)."""
    stream = {k: v for k, v in options.items() if k in STREAM_OPTIONS}
    request = {k: v for k, v in options.items() if k not in STREAM_OPTIONS}
    return stream, request


#: The stream options that say how a stream is recorded: an attach takes none of them (the
#: producer's are stored), and a resume that attaches leaves them out.
RECORDING_OPTIONS = frozenset({"stream_id", "stream_recovery", "recovery"})


def live_options(stream_options: Dict[str, Any]) -> Dict[str, Any]:
    """The stream options an attach takes: ``stream_options`` without the recording ones."""
    return {k: v for k, v in stream_options.items() if k not in RECORDING_OPTIONS}
