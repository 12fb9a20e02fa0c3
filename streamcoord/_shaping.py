"""The user's per-chunk callbacks, ``validate_chunk`` and ``transform_chunk``.

Each function returns the chunks to hand over and the error to raise after them, so
chunks accepted before a failing callback are never lost. ``shape`` runs both and takes
each chunk into the answer in one pass (recovery off); ``run_validate`` and
``run_transform`` run one each, for the recovery path, which persists between the two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from streamcoord._chunk import Chunk
from streamcoord.errors import CallbackError, ChunkValidationError

__all__ = ["callback_error", "run_transform", "run_validate", "shape", "take_in"]

if TYPE_CHECKING:  # annotations only: typing's subscripts cost import time
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
    handed over that says more, and every chunk the transform skips. Semantics are those of
    ``run_validate`` then ``run_transform`` then the answer's loop: a chunk is validated,
    then transformed; the first failing callback ends the pass.

    Why this shape: the common case is a read whose every chunk the validator accepts and
    the transform gives back as itself (a transform that changes some chunks, a validator
    that rejects none). Until a chunk is changed, the pass only calls the two callbacks and
    counts, and the read's own list is handed over: ~270 instructions per chunk beyond the
    two calls, against ~1000 for the three loops that built a list each, and ~800 for a
    single loop that builds the list and the texts as it goes (cachegrind, 80-chunk reads).
    """
    index = 0  # chunks[:index] went through unchanged
    verdict: Any = None
    new: Any = None
    for chunk in chunks:
        if validate is not None:
            try:
                verdict = validate(chunk)
            except Exception as exc:
                return _unchanged(chunks[:index], plain, note, callback_error("validate_chunk", exc))
            if verdict is not None and verdict is not True:
                break
        if transform is not None:
            try:
                new = transform(chunk)
            except Exception as exc:
                _validate_rest(chunks[index + 1:], validate, on_invalid, rejected)
                return _unchanged(chunks[:index], plain, note, callback_error("transform_chunk", exc))
            if new is not chunk:
                break
        index += 1
    else:
        return chunks, take_in(chunks, plain, note), None
    out = chunks[:index]
    texts = take_in(out, plain, note)
    error, stop = _the_long_way(chunks[index:], verdict, new, plain, validate, transform, on_invalid, rejected, note,
                                out, texts)
    if stop is not None:
        _validate_rest(chunks[index + stop + 1:], validate, on_invalid, rejected)
    return out, texts, error


def take_in(chunks: List[Chunk], plain: bool, note: Callable[[Chunk], None]) -> List[str]:
    """The texts of stream.text among ``chunks``, noting what else they say (``note``)."""
    if plain:  # the parser vouches that these are text only
        return [chunk.content for chunk in chunks]
    texts = []
    for chunk in chunks:
        if chunk.metadata or chunk.finish_reason is not None or chunk.usage is not None or chunk.tool_calls:
            if "choice" in chunk.metadata:  # another of n choices: not part of stream.text
                continue
            note(chunk)
        if chunk.content:
            texts.append(chunk.content)
    return texts


def _validate_rest(chunks: List[Chunk], validate: Optional[Validate], on_invalid: str, rejected: Rejected) -> None:
    """The transform failed before ``chunks``: the validator still sees them, as it would
    have validating the whole read before the transform ran (its rejections counted in
    ``metrics.errors`` and logged, the same with recovery on, where it does so); its
    verdict is moot, the transform's error ends the stream."""
    if validate is not None and chunks:
        run_validate(chunks, validate, on_invalid, rejected)


def _unchanged(
    chunks: List[Chunk], plain: bool, note: Callable[[Chunk], None], error: BaseException,
) -> Tuple[List[Chunk], List[str], Optional[BaseException]]:
    return chunks, take_in(chunks, plain, note), error


def _the_long_way(
    chunks: List[Chunk], verdict: Any, new: Any, plain: bool, validate: Optional[Validate],
    transform: Optional[Transform], on_invalid: str, rejected: Rejected, note: Callable[[Chunk], None],
    out: List[Chunk], texts: List[str],
) -> Tuple[Optional[BaseException], Optional[int]]:
    """``shape`` from the first chunk the callbacks changed, ``chunks[0]``, whose callbacks
    have run (``verdict``; ``new`` if the validator accepted it). Appends to ``out`` and
    ``texts``; returns the error that ends the pass, if any, and the position of the chunk
    whose transform failed (the validator has the rest still to see), if it was that."""
    for position, chunk in enumerate(chunks):
        if position and validate is not None:
            try:
                verdict = validate(chunk)
            except Exception as exc:
                return callback_error("validate_chunk", exc), None
        if verdict is not None and verdict is not True:
            error = _reject(chunk, verdict, on_invalid, rejected)
            if error is not None:
                return error, None
            continue
        if position:
            new = chunk
            if transform is not None:
                try:
                    new = transform(chunk)
                except Exception as exc:
                    return callback_error("transform_chunk", exc), position
        if new.__class__ is not Chunk:
            if new is None:
                if "choice" not in chunk.metadata:  # skipped, but its finish reason, usage... are the answer's
                    note(chunk)
                continue
            if not isinstance(new, Chunk):
                return _not_a_chunk(new), position
        out.append(new)
        # The parser vouches for its own text-only chunks; a transform's may be anything.
        if not plain or new is not chunk:
            if new.metadata or new.finish_reason is not None or new.usage is not None or new.tool_calls:
                if "choice" in new.metadata:  # another of n choices: not part of stream.text
                    continue
                note(new)
        if new.content:
            texts.append(new.content)
    return None, None


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
            if "choice" not in chunk.metadata:  # another of n choices says nothing of the answer
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
