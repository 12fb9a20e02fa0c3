"""Live streams, the reading side: ``client.attach`` follows a generation through the store.

An ``AttachReader`` stands in for a ``Worker`` behind a ``ChatStream``: its thread reads
the stored text from the caller's offset, then blocks in the store's ``wait_for`` until
the producer writes again, and hands each new piece over as a chunk. When the producer's
text was cut back by a recovery, the reader announces the rewind (a chunk with
``metadata["recovery"]``, as a live stream does) and goes on from the cut. It ends with the
producer's finish reason and usage, or raises the producer's error; a cancelled stream ends
there. When nobody holds the lease on an unfinished record (its producer died), the reader
asks the client to take the generation over in this process, and follows that.

Closing the reader stops only the reader: the generation belongs to its producer.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, Optional, Tuple, Union

from recovery_store import RecoveryStore
from streamcoord._chunk import Chunk
from streamcoord._live import error_from_outcome
from streamcoord._live_client import StreamHandle
from streamcoord._logging import StreamLogger
from streamcoord._metrics import MetricsTracker
from streamcoord._options import StreamOptions
from streamcoord._pipeline import Pipeline
from streamcoord._recovery import DEFAULT_STRATEGY
from streamcoord._spec import Cancelled, End
from streamcoord.errors import RecoveryFailed, StreamcoordError, StreamError

__all__ = ["PRODUCER_END_SECONDS", "WAIT_SLICE_SECONDS", "AttachReader", "AttachSpec"]

#: The longest a reader blocks in the store before it looks at the lease, the cancel mark
#: and its own close again; a closed reader's thread ends within this.
WAIT_SLICE_SECONDS = 0.25
#: The longest a reader that took a generation over waits, at the end, for its producer's
#: own end (the outcome is written before the record is deleted and the lease given up).
PRODUCER_END_SECONDS = 2.0


class AttachSpec:
    """What an ``AttachReader`` is given (the parts of a ``StreamSpec`` a pipeline uses)."""

    def __init__(
        self,
        *,
        options: StreamOptions,
        provider: str,
        store: RecoveryStore,
        shown: str,
        take_over: Callable[[], Union[bool, StreamHandle]],
        whole_text: bool = False,
    ) -> None:
        self.options = options
        self.stream_id = options.stream_id
        self.provider = provider
        self.store = store
        self.shown = shown  # what the caller has: the stored text up to its offset, at attach time
        # Truthy if this process produces the stream now: the StreamHandle of that producer.
        self.take_over = take_over
        self.whole_text = whole_text  # stream.text starts with what the caller has (a resume)
        self.recovery = None  # a reader persists nothing
        self.callback = None
        self.telemetry = None  # the producer's span covers the generation; a reader has none


def _common_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix of ``a`` and ``b``."""
    return len(os.path.commonprefix([a, b]))  # one scan from the start: O(n)


class AttachReader:
    """Follows one live stream (see the module docstring); the ``Worker`` interface."""

    def __init__(self, spec: AttachSpec) -> None:
        self.spec = spec
        self.log = StreamLogger(spec.stream_id, spec.provider)
        self.metrics = MetricsTracker(
            spec.stream_id, spec.provider, spec.options.on_metrics, log_reports=spec.options.track_metrics
        )
        self.error: Optional[BaseException] = None
        self._cancelled = threading.Event()
        self.pipeline = Pipeline(spec, self.metrics, self.log, self._cancelled)  # type: ignore[arg-type]
        self.queue = self.pipeline.queue
        self.answer = self.pipeline.answer
        self._shown = spec.shown  # the producer's text as this reader's consumer has it
        self._producer: Optional[StreamHandle] = None  # set when this reader took the generation over
        self._cursor: Any = None  # where the last read_text ended: the next reads what is new
        self._announced: Dict[str, Any] = {}  # the producer's rewind note this reader last announced
        if spec.whole_text and spec.shown:
            self.answer.add_text(spec.shown)
        self.thread = threading.Thread(target=self._run, name=f"streamcoord-attach-{spec.stream_id}", daemon=True)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        if not self._cancelled.is_set():
            self._cancelled.set()
            self.pipeline.drain_queue()

    def _run(self) -> None:
        error: Optional[BaseException] = None
        status = "failed"
        try:
            self.metrics.start()
            self._follow()
            status = "completed"
        except Cancelled:
            status = "cancelled"
        except BaseException as exc:  # handed to the consumer, never lost in a thread
            if self.cancelled:
                status = "cancelled"
            elif isinstance(exc, StreamcoordError):
                error = exc
            else:  # the store failed under us: our error tree only
                error = StreamError(f"following live stream {self.spec.stream_id!r} failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
        finally:
            self.error = error
            self.metrics.finish(status)
            self.pipeline.put_end(End(error))

    def _follow(self) -> None:
        spec, store, sid = self.spec, self.spec.store, self.spec.stream_id
        while not self.cancelled:
            revision = store.revision(sid)
            outcome = store.outcome(sid)  # before the record: all its text is stored by now
            # Only what is new since the last read, where the store can tell (read_text).
            read = store.read_text(sid, self._cursor)
            if read is not None:
                # A whole text after a cursor: the producer replaced its text since (a cut).
                replaced = self._cursor is not None
                text, whole, self._cursor = read
                if whole:
                    self._show(text, replaced)
                elif text:
                    self._show_more(text)
            else:
                self._cursor = None
                final = (outcome or {}).get("text")
                if isinstance(final, str):
                    self._show(final)
            if outcome is not None:
                self._end(outcome, self._shown)
                return
            if store.cancelled(sid):
                return  # a cancelled stream ends where it was stopped
            if read is None:
                if store.outcome(sid) is not None:
                    continue  # it ended between our reads: the next round reads how
                if store.leased(sid):  # its producer has the lease and is writing the record now
                    store.wait_for(sid, revision, WAIT_SLICE_SECONDS)
                    continue
                raise RecoveryFailed(
                    f"live stream {sid!r} is gone (deleted or expired) before its end was recorded",
                    partial_text=self._shown,
                )
            if not store.leased(sid):
                record = store.load(sid)
                if store.outcome(sid) is not None or record is None:
                    continue  # it ended between our reads: the next round reads how
                if record.status == "completed":
                    return  # finished by a producer that records no outcome (an older version)
                if record.status == "failed":
                    raise RecoveryFailed(
                        f"live stream {sid!r} failed; client.resume({sid!r}) takes it up again",
                        partial_text=record.text,
                    )
                taken = spec.take_over()
                if isinstance(taken, StreamHandle):
                    self._producer = taken
                if taken:
                    self.log.info("the producer of %r is gone; this process took the generation over", sid)
                continue
            store.wait_for(sid, revision, WAIT_SLICE_SECONDS)
        raise Cancelled()

    def _show_more(self, new: str) -> None:
        """Hand over ``new``, what the producer appended to the text this reader has."""
        pipeline = self.pipeline
        self._shown += new
        pipeline.deliver([Chunk(content=new, index=pipeline.next_index)])
        pipeline.next_index += 1

    def _show(self, text: str, replaced: bool = False) -> None:
        """Hand over what ``text`` (the producer's whole text now) adds to what was shown;
        ``replaced``: the producer cut its text back since the last read, and may have
        written the same words again by now, so its note says where the cut was."""
        pipeline = self.pipeline
        shown = self._shown
        keep = len(shown) if text.startswith(shown) else _common_prefix(shown, text)
        note, meta = self._rewind_note() if replaced or keep < len(shown) else ({}, {})
        kept = note.get("kept")
        if replaced and isinstance(kept, int) and not isinstance(kept, bool) and note != self._announced:
            keep = max(0, min(keep, kept))
        rewind = len(shown) - keep
        if rewind:
            self._announced = note
            self.metrics.recoveries += 1  # what this reader saw of the producer's recoveries
            self.answer.cut_text(rewind)
            info = dict(self._rewound_by(note, meta), rewind=rewind)
            pipeline.put([pipeline.control_chunk("", {"recovery": info})])
        self._shown = text
        if len(text) > keep:
            pipeline.deliver([Chunk(content=text[keep:], index=pipeline.next_index)])
            pipeline.next_index += 1

    def _rewind_note(self) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """The producer's note of its last cut (attempt, strategy, kept length), stored
        before the cut text (``{}`` when there is none), and the record's meta. Read only
        on a cut: a rare event."""
        try:
            record = self.spec.store.load(self.spec.stream_id)
        except Exception:  # the cut is announced all the same; the store's failure shows next round
            record = None
        meta = record.meta if record is not None else {}
        noted = meta.get("rewind")
        return (noted if isinstance(noted, dict) else {}), meta

    def _rewound_by(self, note: Dict[str, Any], meta: Dict[str, Any]) -> Dict[str, Any]:
        """The attempt and strategy of the cut ``note`` describes; from a producer that
        did not note them (an older version), this reader's count of the rewinds it saw
        and the stream's stored strategy."""
        attempt, strategy = note.get("attempt"), note.get("strategy")
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            attempt = self.metrics.recoveries
        if not isinstance(strategy, str):
            stored = meta.get("recovery")
            strategy = stored.get("strategy") if isinstance(stored, dict) else meta.get("strategy")
            strategy = strategy if isinstance(strategy, str) else DEFAULT_STRATEGY
        return {"attempt": attempt, "strategy": strategy}

    def _end(self, outcome: Any, text: str) -> None:
        spec, pipeline = self.spec, self.pipeline
        if self._producer is not None:
            # This reader took the generation over: its producer (a thread of this process)
            # finishes its end (the record deleted, the lease given up) before this stream
            # ends, so a process that exits once it has read the answer leaves nothing half done.
            self._producer.wait(PRODUCER_END_SECONDS)
        error = outcome.get("error")
        if isinstance(error, dict):
            pipeline.flush_pending()
            raise error_from_outcome(spec.stream_id, spec.provider, error, text)
        finish_reason, usage = outcome.get("finish_reason"), outcome.get("usage")
        if finish_reason is not None or usage is not None:
            chunk = Chunk(
                finish_reason=finish_reason if isinstance(finish_reason, str) else None,
                usage=usage if isinstance(usage, dict) else None,
                index=pipeline.next_index,
            )
            pipeline.next_index += 1
            pipeline.deliver([chunk])
        pipeline.flush_pending()
