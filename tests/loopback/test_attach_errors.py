"""A reader attached to a live stream raises the producer's error as the producer got it:
the same class of the error tree, the same message and the fields that class carries."""

from __future__ import annotations

import pytest

import streamcoord
from recovery_store import MemoryStore
from tests.support.fakeserver import error, openai_text, sse

MESSAGES = [{"role": "user", "content": "Write two short paragraphs."}]


def _transform_that_fails(chunk):
    raise RuntimeError("the application's transform broke")


# name -> (the provider's answer, start() options, the class the producer fails with, its field)
CASES = {
    "callback": (lambda: openai_text(["Hel", "lo"]), {"transform_chunk": _transform_that_fails},
                 streamcoord.CallbackError, "callback"),
    "validation": (lambda: openai_text(["Hel", "lo"]), {"validate_chunk": lambda chunk: "no greetings",
                                                        "on_invalid": "raise"},
                   streamcoord.ChunkValidationError, "reason"),
    "protocol": (lambda: sse(["{not json"]), {}, streamcoord.ProtocolError, None),
    "server": (lambda: error(503, {"error": {"message": "overloaded"}}), {}, streamcoord.ServerError, "status"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_attached_reader_raises_the_producers_error_class_message_and_fields(server, client, case):
    answer, options, expected, field = CASES[case]
    server.enqueue(answer())
    with MemoryStore() as store:
        live = client(recovery_store=store, max_retries=0)
        handle = live.start(MESSAGES, stream_id=f"fails-{case}", model="gpt-4o-mini",
                            recovery={"max_retries": 0}, **options)
        assert handle.wait(5)
        produced = handle.error
        assert type(produced) is expected, repr(produced)
        with pytest.raises(streamcoord.StreamcoordError) as caught:
            list(live.attach(f"fails-{case}"))
    assert type(caught.value) is expected
    assert str(caught.value) == str(produced)
    if field is not None:
        assert getattr(caught.value, field) == getattr(produced, field)
