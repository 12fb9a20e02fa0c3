"""MetricsTracker and StreamMetrics without a network: figures, rates, the calls to on_metrics."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest

from streamcoord import StreamMetrics
from streamcoord._metrics import MetricsTracker

FIELDS = [
    "stream_id", "provider", "status", "duration_ms", "chunks_received", "bytes_received", "errors",
    "chunks_per_second", "bytes_per_second", "time_to_first_chunk_ms", "retries", "recoveries",
]


def tracker(on_metrics=None):
    t = MetricsTracker("s-1", "openai", on_metrics)
    t.started = 100.0  # a fixed clock: the figures below are exact
    return t


def test_snapshot_has_the_seed_fields_and_the_extra_ones():
    assert [f.name for f in dataclasses.fields(StreamMetrics)] == FIELDS
    snap = tracker().snapshot()
    assert list(snap.as_dict()) == FIELDS
    assert snap.stream_id == "s-1" and snap.provider == "openai" and snap.status == "streaming"


def test_rates_are_per_second_of_the_duration():
    t = tracker()
    t.chunks_received = 50
    t.bytes_received = 4000
    t.first_chunk_at = 100.25
    t.ended = 102.0
    snap = t.snapshot()
    assert snap.duration_ms == 2000.0
    assert snap.chunks_per_second == 25.0
    assert snap.bytes_per_second == 2000.0
    assert snap.time_to_first_chunk_ms == 250.0


def test_an_empty_instant_stream_has_zero_rates_not_a_division_error():
    t = tracker()
    t.ended = t.started
    snap = t.snapshot()
    assert snap.chunks_per_second == 0.0 and snap.bytes_per_second == 0.0
    assert math.isfinite(snap.duration_ms)
    assert snap.time_to_first_chunk_ms is None


def test_snapshots_are_frozen_and_compare_by_value():
    t = tracker()
    t.ended = 101.0
    a, b = t.snapshot(), t.snapshot()
    assert a == b and a is not b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.errors = 3  # type: ignore[misc]


def test_as_dict_is_a_plain_copy():
    t = tracker()
    t.retries = 2
    t.ended = 101.0
    d = t.snapshot().as_dict()
    assert d["retries"] == 2 and d["status"] == "streaming"
    d["retries"] = 99
    assert t.snapshot().retries == 2


def test_finish_calls_on_metrics_exactly_once_with_the_first_status():
    calls = []
    t = tracker(calls.append)
    t.finish("failed")
    first = t.snapshot()
    t.finish("completed")  # a second end is ignored
    assert [m.status for m in calls] == ["failed"]
    assert first.status == t.snapshot().status == "failed"
    assert calls[0] == first == t.snapshot()  # the clock stopped at the end


def test_report_calls_on_metrics_with_streaming_until_the_end():
    calls = []
    t = tracker(calls.append)
    assert t.report() is True
    t.finish("completed")
    assert t.report() is False  # the final call is the last one
    assert [m.status for m in calls] == ["streaming", "completed"]


def test_track_metrics_without_on_metrics_logs_the_reports(caplog):
    caplog.set_level(logging.INFO, logger="streamcoord")
    t = MetricsTracker("s-1", "openai", None, log_reports=True)
    t.report()
    t.finish("completed")
    messages = [r.getMessage() for r in caplog.records if r.name == "streamcoord"]
    assert [m.split(",")[0] for m in messages] == ["metrics: streaming", "metrics: completed"]


def test_without_on_metrics_nothing_is_reported(caplog):
    caplog.set_level(logging.DEBUG, logger="streamcoord")
    t = tracker()
    t.finish("completed")  # no callback, no error
    assert t.snapshot().status == "completed"
    assert caplog.records == []


def test_on_metrics_that_raises_is_logged_with_the_stream_fields(caplog):
    caplog.set_level(logging.DEBUG, logger="streamcoord")

    def broken(metrics):
        raise ZeroDivisionError("oops")

    t = tracker(broken)
    t.report()
    t.finish("completed")
    assert t.snapshot().status == "completed"
    records = [r for r in caplog.records if r.name == "streamcoord"]
    assert len(records) == 2
    for record in records:
        assert record.levelno == logging.ERROR
        assert "on_metrics" in record.getMessage()
        assert isinstance(record.exc_info[1], ZeroDivisionError)
        assert record.stream_id == "s-1" and record.provider == "openai"
