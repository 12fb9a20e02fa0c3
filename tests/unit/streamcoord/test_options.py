"""StreamOptions: defaults, what each option accepts, and errors that say what to pass."""

from __future__ import annotations

import re

import pytest

from streamcoord._config import Timeout
from streamcoord._options import STREAM_OPTIONS, StreamOptions, new_stream_id, split_options

DEFAULT = Timeout(300.0)


def opts(**options):
    return StreamOptions(options, DEFAULT)


def test_defaults():
    o = opts()
    assert o.track_metrics is False and o.on_metrics is None
    assert o.transform_chunk is None and o.validate_chunk is None and o.on_error is None
    assert o.on_invalid == "skip"
    assert o.buffer_chunks == 1
    assert o.timeout is DEFAULT
    assert o.stream_recovery is False and o.recovery == {}
    assert o.max_line_bytes == 8 * 1024 * 1024
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", o.stream_id)


def test_stream_ids_are_unique_and_url_safe():
    ids = {new_stream_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)


def test_on_metrics_alone_turns_tracking_on():
    o = opts(on_metrics=print)
    assert o.track_metrics is True and o.on_metrics is print


def test_track_metrics_false_wins_over_on_metrics():
    o = opts(on_metrics=print, track_metrics=False)
    assert o.track_metrics is False and o.on_metrics is None


def test_track_metrics_without_on_metrics():
    o = opts(track_metrics=True)
    assert o.track_metrics is True and o.on_metrics is None


@pytest.mark.parametrize("value, expected", [(None, 1), (1, 1), (5, 5), (1000, 1000)])
def test_buffer_chunks_accepts_whole_numbers_from_one(value, expected):
    assert opts(buffer_chunks=value).buffer_chunks == expected


@pytest.mark.parametrize("value", [0, -1, 2.5, True, False, "5", [5]])
def test_buffer_chunks_rejects_everything_else(value):
    with pytest.raises(ValueError, match=r"buffer_chunks must be a whole number >= 1"):
        opts(buffer_chunks=value)


@pytest.mark.parametrize("value", ["skip", "raise"])
def test_on_invalid_accepts_skip_and_raise(value):
    assert opts(on_invalid=value).on_invalid == value


@pytest.mark.parametrize("value", ["ignore", "RAISE", None, True])
def test_on_invalid_rejects_everything_else(value):
    with pytest.raises(ValueError) as info:
        opts(on_invalid=value)
    assert '"skip" or "raise"' in str(info.value)


@pytest.mark.parametrize("name", ["on_metrics", "transform_chunk", "validate_chunk", "on_error"])
@pytest.mark.parametrize("value", ["print", 3, object()])
def test_callbacks_must_be_callable(name, value):
    with pytest.raises(TypeError) as info:
        opts(**{name: value})
    assert str(info.value).startswith(f"{name} must be a function")


@pytest.mark.parametrize("name", ["on_metrics", "transform_chunk", "validate_chunk", "on_error"])
def test_callbacks_may_be_none(name):
    assert getattr(opts(**{name: None}), name) is None


def test_timeout_as_seconds_or_a_timeout_object():
    assert opts(timeout=12).timeout == Timeout(12.0)
    t = Timeout(5.0, total=30.0)
    assert opts(timeout=t).timeout is t
    with pytest.raises(TypeError, match="timeout must be seconds"):
        opts(timeout="10")


@pytest.mark.parametrize("value", ["req-42", "a", "x" * 200, "tenant:1.request_2"])
def test_stream_id_accepts_safe_strings(value):
    assert opts(stream_id=value).stream_id == value


@pytest.mark.parametrize("value", ["", "x" * 201, "has space", "a/b", "new\nline", 42])
def test_stream_id_rejects_unsafe_values(value):
    with pytest.raises(ValueError, match="stream_id must be"):
        opts(stream_id=value)


@pytest.mark.parametrize("value", [1023, 0, True, 2048.0])
def test_max_line_bytes_must_be_a_whole_number_of_at_least_1024(value):
    with pytest.raises(ValueError, match="max_line_bytes"):
        opts(max_line_bytes=value)


def test_recovery_options_are_checked():
    assert opts(stream_recovery=True, recovery={"strategy": "paragraph", "max_retries": 3}).recovery["strategy"] == "paragraph"
    with pytest.raises(TypeError, match="recovery must be a dict"):
        opts(stream_recovery=True, recovery=["paragraph"])
    with pytest.raises(ValueError, match="unknown recovery option"):
        opts(stream_recovery=True, recovery={"strategy": "exact", "retries": 3})
    with pytest.raises(ValueError, match="stream_recovery=True"):
        opts(recovery={"strategy": "exact"})


def test_split_options_separates_stream_options_from_request_options():
    stream, request = split_options({"model": "m", "temperature": 0.2, "buffer_chunks": 3, "on_error": print})
    assert stream == {"buffer_chunks": 3, "on_error": print}
    assert request == {"model": "m", "temperature": 0.2}
    assert {"track_metrics", "on_metrics", "transform_chunk", "validate_chunk", "on_invalid",
            "buffer_chunks", "on_error"} <= STREAM_OPTIONS
