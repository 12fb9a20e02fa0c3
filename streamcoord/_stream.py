"""``ChatStream``: the blocking iterator the caller consumes."""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterator, List, Optional

from streamcoord._chunk import Chunk
from streamcoord._metrics import StreamMetrics
from streamcoord._worker import StreamSpec, Worker

__all__ = ["ChatStream"]

# close() waits this long for the worker to stop (it is woken at once; this is a bound).
CLOSE_JOIN_SECONDS = 2.0


class ChatStream:
    """An answer being streamed: iterate it for ``Chunk``s.

    The request is sent when iteration starts (or on ``with``). Breaking out of the loop,
    ``close()``, leaving the ``with`` block or dropping the last reference stops the worker
    thread and closes the connection. ``text``, ``finish_reason``, ``usage``,
    ``tool_calls``, ``reasoning`` and ``metrics`` describe what has arrived so far, and the
    final values once the iteration has ended.
    """

    def __init__(self, spec: StreamSpec) -> None:
        self._spec = spec
        self._worker: Optional[Worker] = None
        self._batch: List[Chunk] = []
        self._pos = 0
        self._closed = False
        self._exhausted = False
        self.stream_id = spec.stream_id
        self.provider = spec.provider

    # -- iteration ---------------------------------------------------------------------
    def __iter__(self) -> "ChatStream":
        return self

    def __next__(self) -> Chunk:
        pos = self._pos
        batch = self._batch
        if pos < len(batch):
            self._pos = pos + 1
            return batch[pos]
        batch = self._next_batch()
        self._batch = batch
        self._pos = 1
        return batch[0]

    def batches(self) -> Iterator[List[Chunk]]:
        """Yield the chunks as the lists they were handed over in (groups of
        ``buffer_chunks`` when buffering, else one list per network read)."""
        if self._pos < len(self._batch):
            rest = self._batch[self._pos:]
            self._pos = len(self._batch)
            yield rest
        while True:
            try:
                batch = self._next_batch()
            except StopIteration:
                return
            self._batch = batch
            self._pos = len(batch)
            yield list(batch)

    def _next_batch(self) -> List[Chunk]:
        if self._exhausted:
            raise StopIteration
        if self._closed:
            raise ValueError(
                "this stream was closed; start a new one with client.stream_chat(...) "
                "(or client.resume(stream_id) to continue a recoverable one)"
            )
        worker = self._start()
        item = worker.queue.get()
        if item.__class__ is list:
            return item
        self._exhausted = True
        if item.error is not None:
            raise item.error
        raise StopIteration

    def _start(self) -> Worker:
        worker = self._worker
        if worker is None:
            if self._closed:
                raise ValueError("this stream was closed before it started; start a new one")
            worker = self._worker = Worker(self._spec)
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
        self._batch = []
        self._pos = 0
        worker = self._worker
        if worker is None:
            return
        if not self._exhausted:
            worker.cancel()
        if join and worker.thread is not threading.current_thread():
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
        return "".join(worker.text_parts) if worker is not None else ""

    @property
    def reasoning(self) -> str:
        worker = self._worker
        return "".join(worker.reasoning_parts) if worker is not None else ""

    @property
    def finish_reason(self) -> Optional[str]:
        return self._worker.finish_reason if self._worker is not None else None

    @property
    def usage(self) -> Optional[Dict[str, Any]]:
        return self._worker.usage if self._worker is not None else None

    @property
    def model(self) -> Optional[str]:
        return self._worker.model if self._worker is not None else None

    @property
    def tool_calls(self) -> List[Dict[str, Any]]:
        return self._worker.tool_calls.result() if self._worker is not None else []

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
