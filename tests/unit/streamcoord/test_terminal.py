"""The command line's wording and wrapping (streamcoord/_terminal.py), without a terminal."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamcoord import StreamMetrics
from streamcoord._demo import DEMO_ANSWER
from streamcoord._terminal import WordWrapper, describe_metrics


def metrics(**changes):
    values = dict(stream_id="s", provider="openai", status="completed", duration_ms=1234.0, chunks_received=61,
                  bytes_received=9876, errors=0, chunks_per_second=49.4, bytes_per_second=8000.0,
                  time_to_first_chunk_ms=230.4, retries=0, recoveries=0)
    values.update(changes)
    return StreamMetrics(**values)


def test_summary_counts_in_words_with_singular_and_plural_right():
    assert describe_metrics(metrics()) == (
        "[completed] 61 chunks, 9876 bytes, 1.2 s, 49.4 chunks/s, first chunk after 230 ms, no errors"
    )
    assert describe_metrics(metrics(chunks_received=1, bytes_received=1, errors=1, recoveries=1)) == (
        "[completed] 1 chunk, 1 byte, 1.2 s, 49.4 chunks/s, first chunk after 230 ms, 1 error, recovered (1 recovery)"
    )
    assert describe_metrics(metrics(errors=2, recoveries=1, retries=2)).endswith(
        ", 2 errors, recovered (1 recovery, 2 retries)"
    )


def test_summary_of_a_failed_stream_does_not_say_recovered():
    line = describe_metrics(metrics(status="failed", errors=1, recoveries=1, time_to_first_chunk_ms=None))
    assert line.startswith("[failed] ") and line.endswith("first chunk -, 1 error (1 recovery)")


def test_live_line_is_the_short_form():
    assert describe_metrics(metrics(status="streaming"), live=True) == (
        "[streaming] 61 chunks, 9876 bytes, 1.2 s, 49.4 chunks/s"
    )


@settings(max_examples=100, deadline=None)
@given(width=st.integers(20, 100), cuts=st.lists(st.integers(0, len(DEMO_ANSWER)), max_size=60))
def test_wrapping_breaks_only_between_words_however_the_text_is_cut(width, cuts):
    out = []
    wrapper = WordWrapper(out.append, width=width)
    bounds = [0, *sorted(cuts), len(DEMO_ANSWER)]
    for start, end in zip(bounds, bounds[1:]):
        wrapper.feed(DEMO_ANSWER[start:end])
    wrapper.flush()
    text = "".join(out)
    assert max(len(line) for line in text.split("\n")) <= width
    paragraphs = text.split("\n\n")
    assert "\n\n".join(" ".join(p.split("\n")) for p in paragraphs) == DEMO_ANSWER
