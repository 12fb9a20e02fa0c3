"""Stream recovery: persist what the model produced, and plan the continuation after a break.

The worker owns the I/O; this module owns the bookkeeping. Per network read, the text of
the accepted chunks is appended to the store *before* the consumer sees it (one write per
read, not per chunk). When the stream breaks in a recoverable way, ``plan`` cuts the text
back to the strategy's point (last paragraph, last sentence, or all of it) and says how
many characters the consumer must drop (the rewind); the adapter then builds the
continuation request from the text that is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Tuple

from streamcoord._retry import RETRY_STATUSES
from streamcoord.errors import APIError, ConnectionLost, RecoveryFailed, StreamTimeout

if TYPE_CHECKING:  # recovery_store is imported by the first stream that uses a store, not by `import streamcoord`
    from recovery_store import RecoveryStore

__all__ = ["DEFAULT_STRATEGY", "RECOVERABLE_STATUSES", "RecordWriter", "Recovery", "default_store", "recovery_options"]

logger = logging.getLogger("streamcoord")

# HTTP statuses (of answers or of in-stream error events) worth a continuation.
# The same statuses the plain retries take (one definition, in _retry).
RECOVERABLE_STATUSES = RETRY_STATUSES
DEFAULT_STRATEGY = "paragraph"
DEFAULT_MAX_RECOVERIES = 3


class RecordWriter(Protocol):
    """The store calls a stream's recovery makes: a RecoveryStore, or the ScrubbedWrites
    in front of one."""

    def start(self, stream_id: str, meta: Dict[str, Any]) -> None: ...
    def append(self, stream_id: str, text: str) -> None: ...
    def replace_text(self, stream_id: str, text: str) -> None: ...
    def update_meta(self, stream_id: str, changes: Dict[str, Any]) -> None: ...
    def set_status(self, stream_id: str, status: str) -> None: ...
    def finish(self, stream_id: str, keep: bool = False) -> None: ...


_default_store: Optional[RecoveryStore] = None
_default_lock = threading.Lock()


def default_store() -> RecoveryStore:
    """The process's DiskStore under $STREAMCOORD_RECOVERY_DIR or the user's cache directory."""
    global _default_store
    with _default_lock:
        if _default_store is None:
            from recovery_store import DiskStore

            _default_store = DiskStore()
        return _default_store


def recovery_options(recovery: Dict[str, Any]) -> Tuple[str, int, bool]:
    """(strategy, max_retries, keep) from the ``recovery={...}`` option, checked."""
    from recovery_store import STRATEGIES

    strategy = recovery.get("strategy", DEFAULT_STRATEGY)
    if strategy not in STRATEGIES:
        raise ValueError(
            f"recovery strategy {strategy!r} is not supported: use one of {', '.join(STRATEGIES)}"
        )
    max_retries = recovery.get("max_retries", DEFAULT_MAX_RECOVERIES)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"recovery max_retries must be a whole number >= 0, got {max_retries!r}")
    keep = recovery.get("keep", False)
    if not isinstance(keep, bool):
        raise TypeError(f"recovery keep must be True or False, got {keep!r}")
    return strategy, max_retries, keep


def is_recoverable(exc: BaseException) -> bool:
    """Connection loss, idle timeout, 429/5xx/529 and error events of those kinds; never
    400/401/403 (the same request would fail the same way) nor a total deadline."""
    if isinstance(exc, APIError):
        return exc.status in RECOVERABLE_STATUSES
    if isinstance(exc, StreamTimeout):
        return "deadline" not in str(exc)
    return isinstance(exc, ConnectionLost)


class Recovery:
    """One stream's recovery state: the model's text so far and the attempts made."""

    def __init__(
        self,
        store: RecordWriter,
        stream_id: str,
        strategy: str,
        max_retries: int,
        keep: bool,
        provider: str = "-",
    ) -> None:
        self.store = store
        self.stream_id = stream_id
        self.strategy = strategy
        self.max_retries = max_retries
        self.keep = keep
        self.provider = provider
        self.attempts = 0
        self.parts: List[str] = []  # the model's text (before transform_chunk), in order
        self._persisting = True
        self._started_early = False
        # The parser of the attempt in flight: its resume_state() (where the provider could
        # replay the stream itself) is stored with every persist that moves it, after the
        # text it covers, so a process that dies leaves the state of what it had shown.
        self.resume_source: Any = None
        self._noted_state: Optional[Dict[str, Any]] = None
        self._meta_updates = True  # False: the store cannot update meta (update_meta)

    def start_early(self, meta: Dict[str, Any]) -> None:
        """Write the record now, before the worker runs (``client.start``: readers may
        attach as soon as it returns); the worker's own ``start`` then writes nothing."""
        self.start(meta)
        self._started_early = True

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def start(self, meta: Dict[str, Any]) -> None:
        self.parts = []
        if self._started_early:
            self._started_early = False
            return
        self._write(self.store.start, self.stream_id, dict(meta, strategy=self.strategy, created_at=time.time()))

    def persist(self, text: str) -> None:
        """Called once per network read, before the chunks are handed over."""
        self.parts.append(text)
        if self._persisting:
            self._write(self.store.append, self.stream_id, text)
            source = self.resume_source
            if source is not None:  # a provider that resumes natively (the others give None)
                state = source.resume_state()
                if state is not None and state != self._noted_state:
                    self.note_resume_state(state)

    def note_resume_state(self, state: Optional[Dict[str, Any]]) -> None:
        """Store where the provider could replay the stream (``state``) and how much of
        the stored text it covers, so a resume from another process can ask for exactly
        the rest. Stores without ``update_meta`` are left to the strategy."""
        if state is None or not self._persisting or not self._meta_updates:
            return
        self._noted_state = state
        try:
            self.store.update_meta(self.stream_id, {"resume_state": dict(state, text_length=len(self.text))})
        except NotImplementedError:
            self._meta_updates = False
        except Exception as exc:
            self._store_failed(exc)

    def start_from(self, text: str, resumed: bool = False) -> None:
        """Go on from ``text``: after a break, or taking up a stored record (``resumed``)."""
        if self._persisting and self._meta_updates and (resumed or len(text) < sum(map(len, self.parts))):
            self._note_rewind(len(text))  # a cut (a take-up may cut the stored text back too)
        self.parts = [text] if text else []
        self._noted_state = None  # a continuation is a new generation: its own resume state
        self._write(self.store.replace_text, self.stream_id, text)
        if resumed:
            self._write(self.store.set_status, self.stream_id, "streaming")

    def _note_rewind(self, kept: int) -> None:
        """Store which attempt (and strategy) cuts the text back to ``kept`` characters,
        before the cut text: a reader attached in another process that sees the cut
        announces it as this one, even when it reads only after the continuation wrote
        the same words again."""
        note = {"attempt": self.attempts, "strategy": self.strategy, "kept": kept}
        try:
            self.store.update_meta(self.stream_id, {"rewind": note})
        except NotImplementedError:
            self._meta_updates = False
        except Exception as exc:
            self._store_failed(exc)

    def cut(self, text: str, trim_trailing_space: bool) -> str:
        """The part of ``text`` a continuation starts from, under this stream's strategy."""
        from recovery_store import cut_point

        cut = cut_point(text, self.strategy)
        # Whitespace after the cut belongs to the kept text (the continuation starts the
        # next sentence or paragraph), except where the provider rejects a prefix that
        # ends in whitespace (Anthropic): then it is dropped and the model writes it again.
        while cut < len(text) and text[cut].isspace():
            cut += 1
        kept = text[:cut]
        return kept.rstrip() if trim_trailing_space else kept

    def take_attempt(self, exc: BaseException) -> None:
        """Count one recovery attempt; RecoveryFailed (from ``exc``) once ``max_retries``
        attempts were made."""
        if self.attempts >= self.max_retries:
            self._write(self.store.set_status, self.stream_id, "failed")
            raise RecoveryFailed(
                f"stream recovery gave up after {self.attempts} attempt(s): {exc}", partial_text=self.text
            ) from exc
        self.attempts += 1

    def plan(self, exc: BaseException, trim_trailing_space: bool, count: bool = True) -> Tuple[str, int]:
        """After a recoverable break: (text to keep, characters to rewind).

        Raises RecoveryFailed (from ``exc``) once ``max_retries`` attempts were made;
        ``count=False``: this break's attempt was counted already.
        """
        text = self.text
        if count:
            self.take_attempt(exc)
        kept = self.cut(text, trim_trailing_space)
        self.start_from(kept)
        return kept, len(text) - len(kept)

    def finish(self) -> None:
        self._write(self.store.finish, self.stream_id, self.keep)

    def fail(self) -> None:
        self._write(self.store.set_status, self.stream_id, "failed")

    def _write(self, operation: Any, *args: Any) -> None:
        # The store is for surviving this process; a store that fails (disk full, Redis
        # down) must not break a stream that is otherwise fine: log it, stop persisting.
        if not self._persisting:
            return
        try:
            operation(*args)
        except Exception as exc:
            self._store_failed(exc)

    def _store_failed(self, exc: Exception) -> None:
        if not self._persisting:
            return
        self._persisting = False
        logger.warning(
            "the recovery store %r failed (%s: %s); this stream goes on but will not be resumable",
            self.store, type(exc).__name__, exc, extra={"stream_id": self.stream_id, "provider": self.provider},
        )
