"""The chunk pipeline's user callbacks: validate (judges what the model produced), then
transform (shapes what the consumer gets). Each returns the chunks to hand over and an
error to raise after them, so chunks accepted before a failure are never lost."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from streamcoord._chunk import Chunk
from streamcoord.errors import CallbackError, ChunkValidationError

__all__ = ["callback_error", "run_transform", "run_validate"]

Result = Tuple[List[Chunk], Optional[BaseException]]


def callback_error(name: str, exc: BaseException) -> CallbackError:
    error = CallbackError(f"{name} raised {type(exc).__name__}: {exc}", name)
    error.__cause__ = exc
    return error


def run_validate(
    chunks: List[Chunk], validate: Callable[[Chunk], Any], on_invalid: str, rejected: Callable[[Chunk, str], None]
) -> Result:
    out: List[Chunk] = []
    for chunk in chunks:
        try:
            verdict = validate(chunk)
        except Exception as exc:
            return out, callback_error("validate_chunk", exc)
        if verdict is None or verdict is True:
            out.append(chunk)
            continue
        if verdict is False:
            reason = "rejected"
        elif isinstance(verdict, str):
            reason = verdict
        else:
            return out, CallbackError(
                f"validate_chunk must return None or True (accept), or False or a reason string "
                f"(reject); it returned {verdict!r:.80}", "validate_chunk",
            )
        rejected(chunk, reason)
        if on_invalid == "raise":
            return out, ChunkValidationError(reason, chunk)
    return out, None


def run_transform(
    chunks: List[Chunk], transform: Callable[[Chunk], Optional[Chunk]], skipped: Callable[[Chunk], None]
) -> Result:
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
            return out, CallbackError(
                f"transform_chunk must return a Chunk (e.g. dataclasses.replace(chunk, ...)) or None "
                f"to skip; it returned {type(new).__name__}", "transform_chunk",
            )
        out.append(new)
    return out, None
