"""Stream metrics: cheap counters on the hot path, immutable snapshots for callers."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Dict, Optional

__all__ = ["MetricsTracker", "StreamMetrics"]

logger = logging.getLogger("streamcoord")

# on_metrics is called at most this often while a stream runs (seconds).
METRICS_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class StreamMetrics:
    """A snapshot of one stream's metrics. Rates are per second of ``duration_ms``."""

    stream_id: str
    provider: str
    status: str  # "streaming" | "completed" | "failed" | "cancelled"
    duration_ms: float
    chunks_received: int
    bytes_received: int
    errors: int
    chunks_per_second: float
    bytes_per_second: float
    time_to_first_chunk_ms: Optional[float]
    retries: int
    recoveries: int

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


class MetricsTracker:
    """Counters updated by the worker (once per network read, not per chunk).

    Plain attribute increments only: the worker is the single writer, readers take a
    snapshot, and a torn read of two ints costs at most a momentarily stale figure.
    """

    __slots__ = (
        "stream_id", "provider", "status", "started", "ended", "chunks_received", "bytes_received",
        "errors", "first_chunk_at", "retries", "recoveries", "on_metrics", "next_report",
    )

    def __init__(self, stream_id: str, provider: str, on_metrics: Optional[Callable[[StreamMetrics], Any]]) -> None:
        self.stream_id = stream_id
        self.provider = provider
        self.status = "streaming"
        self.started = time.monotonic()
        self.ended: Optional[float] = None
        self.chunks_received = 0
        self.bytes_received = 0
        self.errors = 0
        self.first_chunk_at: Optional[float] = None
        self.retries = 0
        self.recoveries = 0
        self.on_metrics = on_metrics
        self.next_report = self.started + METRICS_INTERVAL if on_metrics else float("inf")

    def snapshot(self) -> StreamMetrics:
        end = self.ended if self.ended is not None else time.monotonic()
        seconds = max(end - self.started, 1e-9)
        first = self.first_chunk_at
        return StreamMetrics(
            stream_id=self.stream_id,
            provider=self.provider,
            status=self.status,
            duration_ms=round(seconds * 1000.0, 3),
            chunks_received=self.chunks_received,
            bytes_received=self.bytes_received,
            errors=self.errors,
            chunks_per_second=self.chunks_received / seconds,
            bytes_per_second=self.bytes_received / seconds,
            time_to_first_chunk_ms=None if first is None else round((first - self.started) * 1000.0, 3),
            retries=self.retries,
            recoveries=self.recoveries,
        )

    def report(self, now: float) -> None:
        """The periodic call; the worker checks ``now >= next_report`` before calling."""
        self.next_report = now + METRICS_INTERVAL
        self._call(self.snapshot())

    def finish(self, status: str) -> StreamMetrics:
        """Record the final status; calls ``on_metrics`` exactly once for the end."""
        if self.ended is None:
            self.ended = time.monotonic()
            self.status = status
            snap = self.snapshot()
            self._call(snap)
            return snap
        return self.snapshot()

    def _call(self, snap: StreamMetrics) -> None:
        if self.on_metrics is None:
            return
        try:
            self.on_metrics(snap)
        except Exception:  # a broken callback must not break the stream
            logger.exception(
                "on_metrics callback raised; the stream goes on",
                extra={"stream_id": self.stream_id, "provider": self.provider},
            )
