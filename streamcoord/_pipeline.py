"""The pipeline and the hand-over: what happens to each network read's chunks.

``Pipeline.deliver`` runs, in the documented order: validate (judges what the model
produced), persist for recovery (before the consumer can see it), transform (shapes what
the consumer gets), accumulate (``Answer``: text, tool calls, reasoning, finish reason,
usage), buffer (``buffer_chunks``), then hands one batch to the consumer: onto the bounded
queue (blocking while the consumer is behind: backpressure) or to the direct API's
callback. The user's callbacks run in ``_shaping``: with recovery off, validate, transform
and accumulate are one pass (``shape``); each step returns the chunks to hand over and an
error to raise after them, so chunks accepted before a failure are never lost.
"""

from __future__ import annotations

import bisect
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from streamcoord._chunk import Chunk, TextRun, ToolCallAccumulator
from streamcoord._logging import StreamLogger
from streamcoord._metrics import MetricsTracker
from streamcoord._shaping import callback_error, run_transform, run_validate, shape, take_in
from streamcoord._spec import Cancelled, StreamSpec

if TYPE_CHECKING:
    from streamcoord._shaping import Result

__all__ = ["PUT_WAIT_SECONDS", "QUEUE_BATCHES", "Answer", "Groups", "Parts", "Pipeline"]

# Batches the queue holds before the worker waits for the consumer.
QUEUE_BATCHES = 256
# How often a worker waiting for room on the queue looks whether the stream was cancelled.
PUT_WAIT_SECONDS = 0.5


class Groups(List[List[Chunk]]):
    """Several ``buffer_chunks`` groups handed over as one queue item; the consumer takes
    them one by one, as if each had been put on its own (``ChatStream._next_batch``)."""

    __slots__ = ()


class Parts(List[Any]):
    """A recovery slice of several parts (TextRuns and lists of the other chunks) handed
    over as one queue item; the consumer takes them in order (``ChatStream._next_batch``)."""

    __slots__ = ()


class Answer:
    """What the stream has produced so far: ``stream.text``, ``tool_calls``, ``reasoning``...

    ``length`` is the number of characters of the text. Each piece of reasoning remembers
    the length at which it arrived, so that a recovery can keep what came before its cut.
    Once a recovery kept text, ``reasoning_closed``: the continuation's reasoning is its
    thinking about going on, which an unbroken answer does not have, so it stays out of
    ``stream.reasoning`` (the chunks still carry it in their metadata).
    """

    __slots__ = (
        "finish_reason", "length", "model", "reasoning_at", "reasoning_closed", "reasoning_parts", "text_parts",
        "tool_calls", "usage",
    )

    def __init__(self) -> None:
        self.text_parts: List[str] = []
        self.length = 0
        self.reasoning_parts: List[str] = []
        self.reasoning_at: List[int] = []  # the text length when each reasoning part arrived
        self.reasoning_closed = False
        self.finish_reason: Optional[str] = None
        self.usage: Optional[Dict[str, Any]] = None
        self.model: Optional[str] = None
        self.tool_calls = ToolCallAccumulator()

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def add_text(self, text: str) -> None:
        self.text_parts.append(text)
        self.length += len(text)

    def note(self, chunk: Chunk) -> None:
        """Take in what a chunk says beyond its text."""
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.tool_calls:
            self.tool_calls.add(chunk.tool_calls)
        reasoning = chunk.metadata.get("reasoning")
        if reasoning and not self.reasoning_closed:
            self.reasoning_parts.append(reasoning)
            self.reasoning_at.append(self.length)  # read granularity: the text is added after the read's chunks
        if not self.model and chunk.model:
            self.model = chunk.model

    def cut_text(self, rewind: int) -> None:
        """Drop the last ``rewind`` characters of the text (a recovery's rewind)."""
        text = self.text
        self.text_parts = [text[: max(len(text) - rewind, 0)]]
        self.length = len(self.text_parts[0])

    def restart_after_cut(self) -> None:
        """After a recovery's cut, before its continuation: the continuation request carries
        only the kept text, so the provider sends every tool call again (a fresh
        accumulator, so a call cut mid-arguments is rebuilt, never concatenated) and the
        reasoning that came after the kept text again (dropped here; what came before the
        kept text's end stays). With text kept, the continuation's own reasoning stays out
        (``reasoning_closed``); with none, the original request goes out again and its
        reasoning is the answer's."""
        self.tool_calls = ToolCallAccumulator()
        keep = bisect.bisect_left(self.reasoning_at, self.length)
        del self.reasoning_parts[keep:], self.reasoning_at[keep:]
        self.reasoning_closed = self.length > 0


class Pipeline:
    """One stream's chunks from the parser to the consumer (see the module docstring)."""

    def __init__(
        self,
        spec: StreamSpec,
        metrics: MetricsTracker,
        log: StreamLogger,
        cancelled: threading.Event,
    ) -> None:
        self.spec = spec
        self.options = spec.options
        self.metrics = metrics
        self.log = log
        self.cancelled = cancelled
        self.queue: "queue.Queue[Any]" = queue.Queue(QUEUE_BATCHES)
        self.answer = Answer()
        self.recovery = spec.recovery
        self.telemetry = spec.telemetry
        self.next_index = 0  # chunk indexes go on across retries and recoveries
        # With recovery and transform_chunk, the recovery controller's RewindMarks: where
        # the model's text and the consumer's line up after each hand-over.
        self.marks: Any = None
        self.produced = False  # this attempt produced a chunk: no plain retry after that
        self.content_seen = False  # the stream produced a chunk: recovery has something to go on
        self._pending: List[Chunk] = []  # chunks held back by buffer_chunks
        # Recovery on and nothing to shape or observe per chunk: plain text chunks travel
        # as TextRuns (deliver_parts), never as Chunk objects held for a store write.
        options = self.options
        self.takes_runs = (
            self.recovery is not None and options.validate_chunk is None and options.transform_chunk is None
            and options.buffer_chunks <= 1 and spec.callback is None and self.telemetry is None
        )

    def deliver(self, chunks: List[Chunk], plain: bool = False) -> None:
        """validate, persist (recovery), transform, accumulate, buffer, hand over.
        ``plain``: the parser says every chunk is text only (EventParser.plain)."""
        options = self.options
        self._arrived(len(chunks))
        if self.telemetry is not None:
            self.telemetry.on_read(chunks)
        if self.recovery is None and (options.validate_chunk is not None or options.transform_chunk is not None):
            self._deliver_shaped(chunks, plain)
            return
        error: Optional[BaseException] = None
        if options.validate_chunk is not None:
            chunks, error = run_validate(chunks, options.validate_chunk, options.on_invalid, self._rejected)
        persisted = 0
        # Without transform_chunk the consumer's text is the model's: the string persisted
        # is the one stream.text keeps (one join of a read's texts, not two).
        model_text: Optional[str] = None
        if self.recovery is not None:
            if plain:
                model_text = "".join([c.content for c in chunks])
            else:
                model_text = "".join([c.content for c in chunks if c.content and "choice" not in c.metadata])
            if model_text:
                self.recovery.persist(model_text)  # before the consumer can see it
                persisted = len(model_text)
        if options.transform_chunk is not None:
            chunks, transform_error = self.transform(chunks)
            error = transform_error or error
            plain = False  # the transform may have made them anything
            model_text = None
        answer = self.answer
        # A plain read's texts are model_text already, when it was joined for the store.
        texts = [] if plain and model_text is not None else take_in(chunks, plain, answer.note)
        if answer.model is None:
            self._take_model(chunks, plain)
        if model_text is not None:  # the same texts, joined for the store already
            if model_text:
                answer.add_text(model_text)
        elif texts:
            # One string per read, not per chunk: a str object costs ~50 bytes beyond its
            # text, which over a million chunks is most of the memory stream.text holds.
            answer.add_text("".join(texts))
        if self.marks is not None:
            self.marks.record(persisted, answer.length)
        if chunks:
            self._hand_over(chunks)
        if error is not None:
            self.flush_pending()
            raise error

    def deliver_parts(self, parts: List[Any]) -> None:
        """``deliver`` for a slice of a stream that ``takes_runs``: ``parts`` are TextRuns
        and lists of the other chunks, in order. The slice's text is persisted in one
        write, each part is taken into the answer, and the slice is handed over as one
        queue item (``Parts`` when it has several: text and other chunks taking turns,
        n > 1 choices, reasoning among the text, would otherwise cost a put per part)."""
        self._arrived(sum(map(len, parts)))
        texts: List[str] = []
        for part in parts:
            if part.__class__ is TextRun:
                texts += part.texts
            else:
                texts += [c.content for c in part if c.content and "choice" not in c.metadata]
        if texts:
            self.recovery.persist("".join(texts))  # type: ignore[union-attr]  # before the consumer can see it
        answer = self.answer
        for part in parts:
            if part.__class__ is TextRun:
                answer.add_text("".join(part.texts))
                if answer.model is None:
                    answer.model = next(filter(None, part.models), None)  # the first that says one
            else:
                shown = take_in(part, False, answer.note)
                if answer.model is None:
                    self._take_model(part, False)
                if shown:
                    answer.add_text("".join(shown))
        self._enqueue(parts[0] if len(parts) == 1 else Parts(parts))

    def _arrived(self, count: int) -> None:
        """A delivery's ``count`` chunks arrived: metrics, and the attempt has produced."""
        metrics = self.metrics
        if metrics.first_chunk_at is None:
            metrics.first_chunk_at = time.monotonic()
            self.log.debug("first chunk")
        metrics.chunks_received += count
        self.produced = self.content_seen = True

    def _deliver_shaped(self, chunks: List[Chunk], plain: bool) -> None:
        """``deliver`` with validate_chunk and/or transform_chunk and recovery off: the
        callbacks and the answer's bookkeeping in one pass (``_shaping.shape``)."""
        options = self.options
        answer = self.answer
        read = chunks
        chunks, texts, error = shape(chunks, plain, options.validate_chunk, options.transform_chunk,
                                     options.on_invalid, self._rejected, answer.note)
        if answer.model is None:
            self._take_model(chunks, plain and chunks is read)  # a plain read given back as it was
        if texts:
            answer.add_text("".join(texts))  # one string per read (see deliver)
        if chunks:
            self._hand_over(chunks)
        if error is not None:
            self.flush_pending()
            raise error

    def _take_model(self, chunks: List[Chunk], plain: bool) -> None:
        """stream.model from the first chunk that has one: text-only chunks are never
        noted, and a chunk may have none (Azure's prompt-filter chunk says ""). A plain
        read's chunks share the parser's model: its first says it, so a provider that
        sends none (Bedrock) costs one look per read, not per chunk."""
        for chunk in chunks[:1] if plain else chunks:
            if chunk.model:
                self.answer.model = chunk.model
                return

    def transform(self, chunks: List[Chunk]) -> Result:
        """``transform_chunk`` over ``chunks``; a skipped chunk still counts for the answer."""
        return run_transform(chunks, self.options.transform_chunk, self.answer.note)  # type: ignore[arg-type]

    def control_chunk(self, content: str, metadata: Dict[str, Any]) -> Chunk:
        """A chunk the worker makes itself (a replay, a rewind announcement)."""
        index = self.next_index
        self.next_index = index + 1
        return Chunk(content=content, index=index, metadata=metadata)

    def _rejected(self, chunk: Chunk, reason: str) -> None:
        self.metrics.errors += 1
        self.log.warning("chunk %d rejected by validate_chunk: %s", chunk.index, reason)

    def _hand_over(self, chunks: List[Chunk]) -> None:
        size = self.options.buffer_chunks
        if size > 1:
            if self._pending:
                chunks = self._pending + chunks
            whole = len(chunks) - len(chunks) % size
            if whole == 0:
                self._pending = chunks
                return
            self._pending = chunks[whole:]
            if whole == size:
                self.put(chunks[:size])
            else:
                # A read that fills several groups hands them over as one queue item: a
                # queue put and get cost ~5k instructions, so one per group of 8 was ~+1.5%
                # per chunk on 16 KiB reads (benchmarks/bench_throughput.py, all features).
                self.put_groups(Groups([chunks[start:start + size] for start in range(0, whole, size)]))
        else:
            self.put(chunks)

    def flush_pending(self) -> None:
        """Hand over what ``buffer_chunks`` holds back (at the end, before an error)."""
        if self._pending:
            batch, self._pending = self._pending, []
            self.put(batch)

    def put_groups(self, groups: "Groups") -> None:
        """Several ``buffer_chunks`` groups at once: one queue item (``Groups``)."""
        if self.spec.callback is not None:
            for batch in groups:
                self.put(batch)
            return
        self._enqueue(groups)

    def put(self, batch: List[Chunk]) -> None:
        callback = self.spec.callback
        if callback is not None:
            for chunk in batch:
                if self.cancelled.is_set():
                    raise Cancelled()
                try:
                    callback(chunk)
                except Exception as exc:
                    # Nothing after the failing chunk reaches the callback, not even the
                    # buffered rest of the read that the worker's end would flush.
                    self._pending = []
                    raise callback_error("callback", exc) from exc
            return
        self._enqueue(batch)

    def put_restart(self, restart: Any) -> None:
        """A recovery starts the answer over from its cut (``Restart``); the direct API
        has no queue and no events."""
        if self.spec.callback is None:
            self._enqueue(restart)

    def put_end(self, end: Any) -> None:
        """The last item, after everything handed over (the direct API has no queue)."""
        if self.spec.callback is not None:
            return
        try:
            self._enqueue(end)
        except Cancelled:
            self.drain_queue()  # the consumer is gone; make room so the put cannot block
            self.queue.put_nowait(end)

    def _enqueue(self, item: Any) -> None:
        cancelled = self.cancelled
        while True:
            if cancelled.is_set():
                raise Cancelled()
            try:
                # Blocks while the consumer is behind (backpressure), but never for good:
                # a cancel is noticed within PUT_WAIT_SECONDS even if nothing drains the queue.
                self.queue.put(item, timeout=PUT_WAIT_SECONDS)
                return
            except queue.Full:
                continue

    def drain_queue(self) -> None:
        """Throw away what the consumer will never read (it is gone)."""
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass
