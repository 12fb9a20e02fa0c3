"""``StreamMetrics``: the immutable snapshot of one stream's metrics that callers see.

Its own module, imported when the first snapshot is taken (``stream.metrics``,
``on_metrics``), not with ``import streamcoord``: a frozen dataclass of twelve fields costs
about 2 ms to build (its generated methods are compiled), and a stream that is only read
never takes a snapshot.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

__all__ = ["StreamMetrics"]


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
