"""``ChatStream``: the blocking iterator the caller consumes."""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional

from streamcoord._chunk import Chunk, TextRun
from streamcoord._metrics import on_metrics_thread
from streamcoord._pipeline import Groups, Parts
from streamcoord._spec import Restart, StreamSpec
from streamcoord._worker import Worker

if TYPE_CHECKING:
    from streamcoord._stream_metrics import StreamMetrics
    from streamcoord.events import Event

__all__ = ["ChatStream"]

# close() waits this long for the worker to stop (it is woken at once; this is a bound).
CLOSE_JOIN_SECONDS = 2.0
# close() after the end of the answer lets the worker finish reading the rest of the body
# (so the connection can be reused) for this long before it closes the connection.
DRAIN_GRACE_SECONDS = 0.05
# How a stream is being read: a stream is read one way (DESIGN), see _read_chunks/events().
CHUNKS, EVENTS = "chunks", "events"


class ChatStream:
    """An answer being streamed: iterate it for ``Chunk``s.

    The request is sent when iteration starts (or on ``with``). Breaking out of a ``for``
    loop over the stream, ``close()``, leaving the ``with`` block or dropping the last
    reference stops the worker thread and closes the connection at once, also while the
    stream is still referenced (by a variable, a callback, a view).

    To pause and go on later, hold one iterator yourself: ``it = iter(stream)``, then
    ``for chunk in it: ... break`` and later ``next(it)`` or another ``for chunk in it``;
    the stream stops when ``it`` is dropped or the stream is closed. ``next(stream)``
    also goes on where it left off.

    ``text``, ``finish_reason``, ``usage``, ``tool_calls``, ``reasoning`` and ``metrics``
    describe what has arrived so far, and the final values once the iteration has ended.
    """

    def __init__(self, spec: StreamSpec, worker_type: Callable[[Any], Any] = Worker) -> None:
        self._spec = spec
        self._worker_type = worker_type  # an AttachReader for client.attach
        self._worker: Optional[Worker] = None
        self._it: Iterator[Chunk] = iter(())
        self._closed = False
        self._exhausted = False
        self._on_restart: Optional[Callable[[Restart], None]] = None  # set by events()
        self._reading: Optional[str] = None  # CHUNKS or EVENTS, from the first read on
        # The rest of a Groups or Parts item (several batches in one), last first.
        self._groups: List[Iterable[Chunk]] = []
        self.stream_id = spec.stream_id
        self.provider = spec.provider

    # -- iteration ---------------------------------------------------------------------
    # The current batch is held as a list iterator, shared by ``for`` loops (which run
    # the generator below: one C-level step per chunk) and explicit ``next()`` calls.
    # The generator is what a ``for`` loop holds: Python closes it (GeneratorExit) when the
    # loop is left by ``break`` and the generator is dropped, and that closes the stream,
    # whoever else still references the stream object.

    def __iter__(self) -> Iterator[Chunk]:
        if self._reading is not CHUNKS:
            self._read_chunks()
        return self._iterate()

    def _iterate(self) -> Iterator[Chunk]:
        try:
            while True:
                yield from self._it
                batch = self._next_batch()
                if batch is None:
                    return
                self._it = iter(batch)
        except GeneratorExit:
            self._close(join=False)  # the loop was left early: stop the worker
            raise

    def __next__(self) -> Chunk:
        if self._reading is not CHUNKS:
            self._read_chunks()
        for chunk in self._it:
            return chunk
        while True:
            batch = self._next_batch()
            if batch is None:
                raise StopIteration
            self._it = iter(batch)
            for chunk in self._it:
                return chunk

    def batches(self) -> Iterator[List[Chunk]]:
        """Yield the chunks as the lists they were handed over in (groups of
        ``buffer_chunks`` when buffering, else one list per network read, or with recovery
        on, where a store write covers several reads, a few per write). Leaving the
        loop early closes the stream, as with ``for chunk in stream``."""
        self._read_chunks()
        try:
            rest = list(self._it)
            if rest:
                yield rest
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                yield list(batch)
        except GeneratorExit:
            self._close(join=False)  # the loop was left early: stop the worker, as for iter()
            raise

    def events(self) -> Iterator["Event"]:
        """Yield typed events (``streamcoord.events``: ``TextDelta``, ``ReasoningDelta``,
        ``ToolCallDelta``, ``ToolCallDone``, ``Rewind``, ``Done``) instead of chunks.
        Read a stream one way, as chunks or as events (the other way is a ValueError);
        leaving the loop early closes the stream, as with ``for chunk in stream``."""
        # Imported here: only for streams read as events.
        from streamcoord._event_stream import EventTranslator, iter_events, refuse_events

        refuse_events(self._reading)
        self._reading = EVENTS
        translator = EventTranslator()
        self._on_restart = translator.restart
        return iter_events(self, self._iterate(), translator)

    def poll(self, timeout: Optional[float] = None) -> Optional[List[Chunk]]:
        """The next chunks, waiting at most ``timeout`` seconds: a list (empty if nothing
        arrived in time), or None once the stream has ended; raises the stream's error.

        For loops that must do something else while the model is quiet, such as a web view
        sending keep-alive comments so that a browser that went away is noticed.
        """
        self._read_chunks()
        rest = list(self._it)
        if rest:
            return rest
        batch = self._next_batch(timeout)
        return None if batch is None else list(batch)

    def _read_chunks(self) -> None:
        if self._reading is EVENTS:
            raise ValueError(
                "this stream is being read as events (stream.events()), and a stream is read one way: "
                "keep reading its events, or start another stream with client.stream_chat(...) to read chunks"
            )
        self._reading = CHUNKS

    def _next_batch(self, timeout: Optional[float] = None) -> Optional[Iterable[Chunk]]:
        """The next batch from the worker; None at the end; [] when ``timeout`` passed
        first; raises the stream's error."""
        if self._groups:
            return self._groups.pop()
        if self._exhausted:
            return None
        if self._closed:
            raise ValueError(
                "this stream was closed; start a new one with client.stream_chat(...) "
                "(or client.resume(stream_id) to continue a recoverable one)"
            )
        worker = self._start()
        while True:
            if timeout is None:
                item = worker.queue.get()
            else:
                try:
                    item = worker.queue.get(timeout=timeout)
                except queue.Empty:
                    return []
            if item.__class__ is list:
                return item
            if item.__class__ is TextRun:
                return item.chunks()  # each Chunk made as it is read
            if item.__class__ is Groups:
                self._groups = list(item[:0:-1])
                return item[0]
            if item.__class__ is Parts:
                batches = [part.chunks() if part.__class__ is TextRun else part for part in item]
                self._groups = batches[:0:-1]
                return batches[0]
            if item.__class__ is not Restart:
                break
            if self._on_restart is not None:  # a recovery: the event reader starts its tool calls over
                self._on_restart(item)
            if timeout is not None:
                return []  # poll(): the wait is bounded by one timeout, not one per marker
        self._exhausted = True
        if item.error is not None:
            raise item.error
        return None

    def _start(self) -> Worker:
        worker = self._worker
        if worker is None:
            if self._closed:
                raise ValueError("this stream was closed before it started; start a new one")
            worker = self._worker = self._worker_type(self._spec)
            worker.start()
        return worker

    # -- lifetime ----------------------------------------------------------------------
    def __enter__(self) -> "ChatStream":
        self._start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the stream and close its connection; waits (briefly) for the worker. Idempotent."""
        self._close(join=True)

    def _close(self, join: bool) -> None:
        self._closed = True
        self._it = iter(())
        self._groups = []
        live = getattr(self._spec, "live", None)
        if live is not None and not self._exhausted:
            live.release()  # at once, so the next resume of this id may produce
        worker = self._worker
        if worker is None:
            return
        # Never wait from the worker itself, nor from the metrics timer (a close() inside
        # on_metrics): the worker's end waits for that very call to return.
        join = join and worker.thread is not threading.current_thread() and not on_metrics_thread()
        if not self._exhausted:
            worker.cancel()
        elif join and worker.thread.is_alive():
            # The consumer has the whole answer; the worker may still be reading what the
            # server sent after its end, so the connection can be reused. It gets a moment
            # for that, not more: then the connection is closed instead.
            worker.thread.join(DRAIN_GRACE_SECONDS)
            worker.cancel()
        if join:
            worker.thread.join(CLOSE_JOIN_SECONDS)

    def __del__(self) -> None:
        try:
            self._close(join=False)
        except Exception:  # noqa: S110 - never raise from a finalizer (e.g. at interpreter exit)
            pass

    # -- what has arrived ----------------------------------------------------------------
    @property
    def text(self) -> str:
        worker = self._worker
        return worker.answer.text if worker is not None else ""

    @property
    def reasoning(self) -> str:
        worker = self._worker
        return "".join(worker.answer.reasoning_parts) if worker is not None else ""

    @property
    def finish_reason(self) -> Optional[str]:
        return self._worker.answer.finish_reason if self._worker is not None else None

    @property
    def usage(self) -> Optional[Dict[str, Any]]:
        return self._worker.answer.usage if self._worker is not None else None

    @property
    def model(self) -> Optional[str]:
        return self._worker.answer.model if self._worker is not None else None

    @property
    def tool_calls(self) -> List[Dict[str, Any]]:
        return self._worker.answer.tool_calls.result() if self._worker is not None else []

    @property
    def metrics(self) -> Optional[StreamMetrics]:
        """The latest metrics snapshot (None before the stream started)."""
        return self._worker.metrics.snapshot() if self._worker is not None else None

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        if self._worker is None:
            state = "closed" if self._closed else "not started"
        else:
            state = self._worker.metrics.status
        return f"<ChatStream stream_id={self.stream_id!r} provider={self.provider!r} {state}>"
