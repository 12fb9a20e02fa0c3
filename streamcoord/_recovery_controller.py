"""The recovery controller: what the worker does with ``Recovery`` around a break.

``start`` opens the stored record, or takes up a stored one (``client.resume``): it replays
what the consumer has not seen and returns the request that continues it. After a
recoverable break, ``plan`` cuts the model's text back to the strategy's point, rewinds the
consumer's side to match (a rewind announcement; with ``transform_chunk``, to the last
hand-over at or before the cut, using the ``RewindMarks``) and ``continuation`` builds the
request that goes on from the kept text. The bookkeeping of the text itself (persist, cut,
attempts) is ``Recovery``'s, in ``_recovery``.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any, Dict, List, Optional

from streamcoord._adapter import HTTPRequest
from streamcoord._logging import StreamLogger
from streamcoord._metrics import MetricsTracker
from streamcoord._pipeline import Pipeline
from streamcoord._recovery import Recovery
from streamcoord._spec import Restart, Resume, StreamSpec
from streamcoord.errors import APIError, StreamError

__all__ = ["RecoveryController", "RewindMarks"]


class RewindMarks:
    """With transform_chunk, the consumer's text is not the model's: (model characters,
    consumer characters) after each hand-over, so that a cut in the model's text maps to a
    rewind of the consumer's."""

    __slots__ = ("model", "shown")

    def __init__(self, model: int = 0, shown: int = 0) -> None:
        self.model: List[int] = [model]
        self.shown: List[int] = [shown]

    def record(self, persisted: int, shown: int) -> None:
        self.model.append(self.model[-1] + persisted)
        self.shown.append(shown)


class RecoveryController:
    """Plans and carries out one stream's recoveries (see the module docstring)."""

    def __init__(
        self, spec: StreamSpec, recovery: Recovery, pipeline: Pipeline, metrics: MetricsTracker, log: StreamLogger
    ) -> None:
        self.spec = spec
        self.recovery = recovery
        self.pipeline = pipeline
        self.metrics = metrics
        self.log = log
        self._refusal_retried = False
        self._native: Optional[HTTPRequest] = None  # the native resume in flight, if any
        self._native_failed = False  # the provider refused one: the strategy takes over for good
        # The whitespace a prefill continuation cut off the kept text (see after_refusal).
        self._trimmed_space = ""
        if spec.options.transform_chunk is not None:
            pipeline.marks = RewindMarks()

    def start(self) -> Optional[HTTPRequest]:
        """Open the stored record, or take up a stored one (``client.resume``): replay
        what the consumer has not seen and return the request that continues it (None
        when the stored answer was complete)."""
        recovery, spec, pipeline = self.recovery, self.spec, self.pipeline
        resume = spec.resume
        if resume is None:
            recovery.start(spec.recovery_meta)
            return spec.request
        native = None if resume.completed else self._native_resume_of(resume)
        if native is not None:  # the provider replays the rest: the stored text it covers is kept whole
            kept = resume.text[: resume.state["text_length"]]  # type: ignore[index]
        elif resume.completed:
            kept = resume.text
        else:
            kept = recovery.cut(resume.text, spec.adapter.continuation_trims_space(spec.request))
            self._trimmed_space = recovery.cut(resume.text, False)[len(kept):]
        if not resume.completed:
            recovery.attempts += 1  # taking a stream up again is a recovery, and counts as one
            self.metrics.recoveries += 1
        recovery.start_from(kept, resumed=not resume.completed)
        pipeline.content_seen = bool(kept)
        # The stored text is the model's; the consumer gets it as the live stream would
        # have given it: through transform_chunk.
        replay = pipeline.control_chunk(kept, {"replay": True})
        if spec.options.transform_chunk is not None:
            shown, error = pipeline.transform([replay])
            if error is not None:
                raise error
            replay = shown[0] if shown else dataclasses.replace(replay, content="")
        answer = pipeline.answer
        answer.text_parts = [replay.content] if replay.content else []
        answer.length = len(replay.content)
        if pipeline.marks is not None:
            pipeline.marks = RewindMarks(len(kept), answer.length)
        if resume.offset < len(replay.content):
            pipeline.put([dataclasses.replace(replay, content=replay.content[resume.offset:])])
        elif resume.offset > len(replay.content):
            self._announce_rewind(resume.offset - len(replay.content))
        if resume.completed:
            return None
        if native is not None:
            self._native = native
            self.log.info("resuming natively from the stored state")
            return native
        return self.continuation(kept)

    def _native_resume_of(self, resume: Resume) -> Optional[HTTPRequest]:
        """The native resume of a stored stream whose stored state covers its stored text."""
        state = resume.state
        covered = state.get("text_length") if isinstance(state, dict) else None
        if isinstance(covered, bool) or not isinstance(covered, int) or not 0 <= covered <= len(resume.text):
            return None
        return self.spec.adapter.native_resume(self.spec.request, state)

    def plan(self, exc: BaseException, count: bool = True) -> str:
        """After a recoverable break: cut back, rewind the consumer's side; returns the
        kept text. Raises RecoveryFailed once the attempts are used up. ``count=False``:
        the attempt was counted already (a native resume that was refused)."""
        recovery = self.recovery
        text = recovery.text
        kept, rewind = recovery.plan(exc, self.spec.adapter.continuation_trims_space(self.spec.request), count)
        self._trimmed_space = recovery.cut(text, False)[len(kept):]
        if count:
            self.metrics.recoveries += 1
        self.log.info(
            "recovering after %r: attempt %d of %d, strategy %s, rewind %d chars",
            exc, recovery.attempts, recovery.max_retries, recovery.strategy, rewind,
        )
        if self.spec.telemetry is not None:
            self.spec.telemetry.recovery(recovery.attempts, recovery.strategy, rewind, exc)
        if self.pipeline.marks is not None:
            announced = self._rewind_transformed(kept)
        else:
            announced = rewind > 0
            if announced:
                self.pipeline.answer.cut_text(rewind)
                self._announce_rewind(rewind)
        self.pipeline.answer.restart_after_cut()
        self.pipeline.put_restart(Restart(recovery.attempts, recovery.strategy, announced))
        return kept

    def continuation(self, kept: str) -> HTTPRequest:
        adapter, request = self.spec.adapter, self.spec.request
        if not kept:
            return request
        request = adapter.build_continuation(request, kept)
        # About four characters a token: shrink max_tokens by what was already produced.
        return adapter.reduce_max_tokens(request, (len(kept) + 3) // 4)

    def native_resume(self, exc: BaseException, state: Optional[Dict[str, Any]]) -> Optional[HTTPRequest]:
        """After a break of the connection (not an error the provider reported): the
        request with which the provider replays the stream from where it broke (no cut, no
        rewind), when its adapter has one. Counts as a recovery attempt."""
        if self._native_failed or not isinstance(exc, StreamError):
            return None
        request = self.spec.adapter.native_resume(self.spec.request, state)
        if request is None:
            return None
        recovery = self.recovery
        recovery.take_attempt(exc)  # raises RecoveryFailed
        self.metrics.recoveries += 1
        self.log.info("resuming natively after %r: attempt %d of %d", exc, recovery.attempts, recovery.max_retries)
        if self.spec.telemetry is not None:  # a recovery like any other, with nothing to rewind
            self.spec.telemetry.recovery(recovery.attempts, "native", 0, exc)
        self._native = request
        return request

    def after_native_refusal(self, request: HTTPRequest, exc: BaseException) -> Optional[HTTPRequest]:
        """The native resume ``request`` failed with an answer of the provider (404: the
        response expired, or is not a background one): the strategy's continuation, in
        the same recovery attempt."""
        if request is not self._native or not isinstance(exc, APIError):
            return None
        self._native = None
        self._native_failed = True
        self.log.info("the native resume was refused (%r); continuing with the %s strategy", exc, self.recovery.strategy)
        kept = self.plan(exc, count=False)
        return self.continuation(kept)

    def after_refusal(self, request: HTTPRequest, exc: BaseException) -> Optional[HTTPRequest]:
        """A continuation ``request`` the provider refused (``exc``) in a way its adapter
        knows another form of it avoids (a model that takes no prefill): that other form,
        once per stream; None otherwise."""
        if self._refusal_retried or request is self.spec.request:
            return None
        adapter = self.spec.adapter
        other = adapter.continuation_refused(request, exc)
        if other is not None:
            self._refusal_retried = True
            self.log.info("the continuation was refused (%r); continuing the other way", exc)
            if self._trimmed_space and not adapter.continuation_trims_space(self.spec.request):
                # The other way is a fresh turn, which does not start with the whitespace
                # the prefill cut off: it is the kept text's again.
                other = self._give_back_trimmed_space()
        return other

    def _give_back_trimmed_space(self) -> HTTPRequest:
        space, self._trimmed_space = self._trimmed_space, ""
        kept = self.recovery.text + space
        self.recovery.start_from(kept)
        pipeline = self.pipeline
        chunk = pipeline.control_chunk(space, {"replay": True})
        if pipeline.marks is not None:
            shown, error = pipeline.transform([chunk])
            if error is not None:
                raise error
            chunk = shown[0] if shown else dataclasses.replace(chunk, content="")
            pipeline.marks.record(len(space), pipeline.answer.length + len(chunk.content))
        if chunk.content:
            pipeline.answer.add_text(chunk.content)
            pipeline.put([chunk])
        return self.continuation(kept)

    def _rewind_transformed(self, kept: str) -> bool:
        """Rewind the consumer's text to the last hand-over at or before the cut, then send
        the model's text between that point and the cut again, transformed, so nothing
        kept is missing on the consumer's side. True when a rewind was announced."""
        pipeline = self.pipeline
        answer = pipeline.answer
        marks: RewindMarks = pipeline.marks
        model, shown = marks.model, marks.shown
        i = bisect.bisect_right(model, len(kept)) - 1
        rewind = answer.length - shown[i]
        if rewind:
            answer.cut_text(rewind)
            self._announce_rewind(rewind)
        gap = kept[model[i]:]
        del model[i + 1:], shown[i + 1:]
        if gap:
            replay, error = pipeline.transform([pipeline.control_chunk(gap, {"replay": True})])
            if error is not None:
                raise error
            if replay and replay[0].content:
                answer.add_text(replay[0].content)
                pipeline.put(replay)
        model.append(len(kept))
        shown.append(answer.length)
        return rewind > 0

    def _announce_rewind(self, rewind: int) -> None:
        recovery = self.recovery
        info = {"attempt": recovery.attempts, "strategy": recovery.strategy, "rewind": rewind}
        self.pipeline.put([self.pipeline.control_chunk("", {"recovery": info})])
