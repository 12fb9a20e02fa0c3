"""The user's per-chunk callbacks, ``validate_chunk`` and ``transform_chunk``.

Each function returns the chunks to hand over and the error to raise after them, so
chunks accepted before a failing callback are never lost. ``shape`` runs both and takes
each chunk into the answer in one pass (recovery off); ``run_validate`` and
``run_transform`` run one each, for the recovery path, which persists between the two.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from streamcoord._chunk import Chunk
from streamcoord.errors import CallbackError, ChunkValidationError

__all__ = ["Result", "callback_error", "run_transform", "run_validate", "shape"]

Result = Tuple[List[Chunk], Optional[BaseException]]
Validate = Callable[[Chunk], Any]
Transform = Callable[[Chunk], Optional[Chunk]]
Rejected = Callable[[Chunk, str], None]


def callback_error(name: str, exc: BaseException) -> CallbackError:
    error = CallbackError(f"{name} raised {type(exc).__name__}: {exc}", name)
    error.__cause__ = exc
    return error


def shape(
    chunks: List[Chunk], plain: bool, validate: Optional[Validate], transform: Optional[Transform],
    on_invalid: str, rejected: Rejected, note: Callable[[Chunk], None],
) -> Tuple[List[Chunk], List[str], Optional[BaseException]]:
    """validate, transform and accumulate a read's chunks in one pass: returns the chunks
    to hand over, the texts of stream.text among them, and the error to raise after them.
    ``note`` takes in what a chunk says beyond its text (``Answer.note``): every chunk
    handed over that says more, and every chunk the transform skips.

    Why one pass: three loops over a read (validate, transform, accumulate), each building
    a list, cost ~1.3k instructions per chunk over features off with an identity transform
    and an accepting validator; this one ~0.6k, most of it the two calls themselves
    (benchmarks/bench_throughput.py, 16 KiB reads). Semantics are the three loops': a
    chunk is validated, then transformed; the first failing callback ends the pass.
    """
    out: List[Chunk] = []
    append = out.append
    texts: List[str] = []
    add_text = texts.append
    for chunk in chunks:
        if validate is not None:
            try:
                verdict = validate(chunk)
            except Exception as exc:
                return out, texts, callback_error("validate_chunk", exc)
            if verdict is not None and verdict is not True:
                error = _reject(chunk, verdict, on_invalid, rejected)
                if error is not None:
                    return out, texts, error
                continue
        new: Optional[Chunk] = chunk
        if transform is not None:
            try:
                new = transform(chunk)
            except Exception as exc:
                return out, texts, callback_error("transform_chunk", exc)
            if new.__class__ is not Chunk:  # the common case costs one identity test
                if new is None:
                    note(chunk)  # skipped, but its finish reason, usage... are the answer's
                    continue
                if not isinstance(new, Chunk):
                    return out, texts, _not_a_chunk(new)
        assert new is not None  # for mypy: a None went on above
        append(new)
        # The parser vouches for its own text-only chunks; a transform's may be anything.
        if not plain or new is not chunk:
            if new.metadata or new.finish_reason is not None or new.usage is not None or new.tool_calls:
                if "choice" in new.metadata:  # another of n choices: not part of stream.text
                    continue
                note(new)
        if new.content:
            add_text(new.content)
    return out, texts, None


def run_validate(chunks: List[Chunk], validate: Validate, on_invalid: str, rejected: Rejected) -> Result:
    out: List[Chunk] = []
    for chunk in chunks:
        try:
            verdict = validate(chunk)
        except Exception as exc:
            return out, callback_error("validate_chunk", exc)
        if verdict is None or verdict is True:
            out.append(chunk)
            continue
        error = _reject(chunk, verdict, on_invalid, rejected)
        if error is not None:
            return out, error
    return out, None


def run_transform(chunks: List[Chunk], transform: Transform, skipped: Callable[[Chunk], None]) -> Result:
    out: List[Chunk] = []
    for chunk in chunks:
        try:
            new = transform(chunk)
        except Exception as exc:
            return out, callback_error("transform_chunk", exc)
        if new is None:
            skipped(chunk)
            continue
        if not isinstance(new, Chunk):
            return out, _not_a_chunk(new)
        out.append(new)
    return out, None


def _reject(chunk: Chunk, verdict: Any, on_invalid: str, rejected: Rejected) -> Optional[BaseException]:
    """A verdict other than None/True rejects the chunk (``rejected``: counted, logged);
    returns the error that ends the stream, if any."""
    if verdict is False:
        reason = "rejected"
    elif isinstance(verdict, str):
        reason = verdict
    else:
        return CallbackError(
            f"validate_chunk must return None or True (accept), or False or a reason string "
            f"(reject); it returned {verdict!r:.80}", "validate_chunk",
        )
    rejected(chunk, reason)
    if on_invalid == "raise":
        return ChunkValidationError(reason, chunk)
    return None


def _not_a_chunk(new: Any) -> CallbackError:
    return CallbackError(
        f"transform_chunk must return a Chunk (e.g. dataclasses.replace(chunk, ...)) or None "
        f"to skip; it returned {type(new).__name__}", "transform_chunk",
    )
