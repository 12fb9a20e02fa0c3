"""Stream recovery over real loopback HTTP: a stream that breaks mid-way (dropped
connection, stall, recoverable error event) is continued with a continuation request, for
every provider and strategy; what is not recoverable fails at once; exhausted retries;
persisting before hand-over; completion and ``keep``; ``client.resume`` in this process;
store permissions, expiry and the default store.

The consumer's view of a recovered stream is rebuilt the way a UI would: for a chunk with
``metadata["recovery"]["rewind"] == k`` drop the last k characters shown, then append
``content``.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time

import pytest

import streamcoord
import streamcoord._recovery
from adapters.base import CONTINUE_INSTRUCTION
from recovery_store import DiskStore, MemoryStore
from streamcoord._recovery import is_recoverable
from tests.support.fakeserver import (
    Drop,
    anthropic_text,
    error,
    gemini_text,
    mistral_text,
    ollama_text,
    openai_text,
    sse,
)
from tests.unit.recovery_store.conftest import FakeClock

MESSAGES = [{"role": "user", "content": "Write two short paragraphs."}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.0-flash",
          "ollama": "llama3", "mistral": "mistral-small-latest"}
BUILDERS = {"openai": openai_text, "anthropic": anthropic_text, "gemini": gemini_text,
            "ollama": ollama_text, "mistral": mistral_text}
PROVIDERS = sorted(BUILDERS)
STRATEGIES = ["exact", "paragraph", "sentence"]
FAULTS = ["drop", "stall", "error_event"]
STALL_IDLE_SECONDS = 1.0
MAX_TOKENS = 200

# The first response delivers BROKEN_PIECES (a paragraph break, sentence ends, and a
# trailing space) and then breaks; the rest of the answer never arrives on it.
BROKEN_PIECES = ["First para", "graph. It has", " two sentences.\n\nSec", "ond one! It goes "]
REST_PIECES = ["on and ends", " here.\n\nThird."]
BROKEN = "".join(BROKEN_PIECES)
FULL = BROKEN + "".join(REST_PIECES)
# What each strategy keeps of BROKEN (whitespace after the cut belongs to the kept text).
KEPT = {
    "exact": BROKEN,
    "paragraph": "First paragraph. It has two sentences.\n\n",
    "sentence": "First paragraph. It has two sentences.\n\nSecond one! ",
}
# Anthropic rejects an assistant prefix that ends in whitespace: its kept text is rstripped.
TRIMS_SPACE = {"anthropic"}

# A recoverable error event of each provider, as its stream would carry it.
ERROR_EVENTS = {
    "openai": sse([{"error": {"message": "The server had an error while processing your request.",
                              "type": "server_error", "param": None, "code": None}}]).parts[0],
    "mistral": sse([{"error": {"message": "Internal error", "type": "server_error"}}]).parts[0],
    "anthropic": sse([("error", {"type": "error", "error": {"type": "overloaded_error",
                                                            "message": "Overloaded"}})]).parts[0],
    "gemini": sse([{"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                              "status": "UNAVAILABLE"}}]).parts[0].replace(b"\n", b"\r\n"),
    "ollama": b'{"error":"an error was encountered while running the model: unexpected EOF"}\n',
}
# The status each adapter gives its event (what on_error reports); all are recoverable.
ERROR_EVENT_STATUS = {"openai": 500, "mistral": 500, "anthropic": 529, "gemini": 503, "ollama": 500}


# -- helpers -----------------------------------------------------------------------------
def kept_text(provider, strategy):
    """What the continuation starts from after BROKEN, for this provider and strategy."""
    return KEPT[strategy].rstrip() if provider in TRIMS_SPACE else KEPT[strategy]


def broken_response(provider, fault, pieces=BROKEN_PIECES + REST_PIECES, after=len(BROKEN_PIECES)):
    """The provider's stream of ``pieces`` that breaks after ``after`` of them."""
    build = BUILDERS[provider]
    if fault == "stall":
        return build(pieces, stall_after=after)
    response = build(pieces, drop_after=after)
    if fault == "drop":
        return response
    assert isinstance(response.parts[-1], Drop)
    return dataclasses.replace(response, parts=response.parts[:-1] + (ERROR_EVENTS[provider],))


def continuation_response(provider, text):
    """The provider's complete stream of ``text`` in two pieces."""
    middle = len(text) // 2
    return BUILDERS[provider]([text[:middle], text[middle:]])


def consumer_view(chunks, start=""):
    """What a consumer shows: apply each rewind, then append the content."""
    view = start
    for chunk in chunks:
        rewind = (chunk.metadata.get("recovery") or {}).get("rewind", 0)
        if rewind:
            view = view[: len(view) - rewind]
        view += chunk.content
    return view


def rewinds(chunks):
    return [c.metadata["recovery"] for c in chunks if "recovery" in c.metadata]


def max_tokens_of(provider, body):
    if provider == "openai":
        return body["max_completion_tokens"]
    if provider == "gemini":
        return body["generationConfig"]["maxOutputTokens"]
    if provider == "ollama":
        return body["options"]["num_predict"]
    return body["max_tokens"]  # anthropic, mistral


def assert_continuation_carries(provider, first, continuation, kept):
    """The continuation request is the first one plus the kept text, as the provider needs."""
    first, cont = first.json, continuation.json
    if provider == "gemini":
        assert cont["contents"] == first["contents"] + [
            {"role": "model", "parts": [{"text": kept}]},
            {"role": "user", "parts": [{"text": CONTINUE_INSTRUCTION}]},
        ]
    elif provider in ("openai", "ollama"):
        assert cont["messages"] == first["messages"] + [
            {"role": "assistant", "content": kept},
            {"role": "user", "content": CONTINUE_INSTRUCTION},
        ]
    elif provider == "anthropic":
        assert cont["messages"] == first["messages"] + [{"role": "assistant", "content": kept.rstrip()}]
    else:  # mistral continues an assistant prefix natively
        assert cont["messages"] == first["messages"] + [{"role": "assistant", "content": kept, "prefix": True}]
    assert max_tokens_of(provider, first) == MAX_TOKENS
    assert 1 <= max_tokens_of(provider, cont) < MAX_TOKENS


@pytest.fixture
def store():
    with MemoryStore() as memory:
        yield memory


@pytest.fixture
def rclient(client, store):
    """A client factory whose streams persist into the test's MemoryStore (never the user's
    cache directory)."""

    def make(provider="openai", **kwargs):
        kwargs.setdefault("recovery_store", store)
        return client(provider, **kwargs)

    return make


def start(rclient, provider="openai", stream_id="rec-1", strategy="exact", timeout=5.0, client_kwargs=None, **options):
    options.setdefault("recovery", {"strategy": strategy})
    return rclient(provider, **(client_kwargs or {})).stream_chat(
        MESSAGES, model=MODELS[provider], max_tokens=MAX_TOKENS, stream_recovery=True,
        stream_id=stream_id, timeout=timeout, **options)


# -- 1. every provider x fault x strategy ------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_broken_stream_is_continued_into_one_coherent_answer(server, rclient, store, sleeps, provider, fault, strategy):
    kept = kept_text(provider, strategy)
    server.enqueue(broken_response(provider, fault), continuation_response(provider, FULL[len(kept):]))
    reported = []
    # The stall is noticed by the idle timeout: long enough that a loaded machine (a thread
    # not run for a few hundred ms) never trips it before the broken pieces are all in or
    # while the continuation streams, which would make a second recovery.
    stream = start(rclient, provider, strategy=strategy, timeout=STALL_IDLE_SECONDS if fault == "stall" else 5.0,
                   on_error=lambda status, body: reported.append(status))
    chunks = list(stream)

    assert consumer_view(chunks) == FULL
    assert stream.text == FULL
    assert stream.finish_reason == "stop"
    rewind = len(BROKEN) - len(kept)
    expected = [{"attempt": 1, "strategy": strategy, "rewind": rewind}] if rewind else []
    assert rewinds(chunks) == expected
    assert stream.metrics.recoveries == 1 and stream.metrics.status == "completed"
    assert len(sleeps) == 1  # the recovery's back-off went through the injected sleep
    assert len(server.requests) == 2
    assert_continuation_carries(provider, server.requests[0], server.requests[1], kept)
    if fault == "error_event":
        assert reported == [ERROR_EVENT_STATUS[provider]]
    assert store.load("rec-1") is None  # completed without keep=True: the record is gone


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_providers_mid_stream_error_event_is_classified_recoverable(server, client, provider):
    server.enqueue(broken_response(provider, "error_event"))
    with pytest.raises(streamcoord.APIError) as info:
        list(client(provider, max_retries=0).stream_chat(MESSAGES, model=MODELS[provider]))
    assert isinstance(info.value, streamcoord.ServerError)
    assert info.value.status == ERROR_EVENT_STATUS[provider]
    assert is_recoverable(info.value), f"{provider}'s server error event (status {info.value.status}) is not recoverable"


def test_indexes_keep_counting_across_the_continuation(server, rclient):
    server.enqueue(broken_response("openai", "drop"), continuation_response("openai", FULL[len(KEPT["paragraph"]):]))
    chunks = list(start(rclient, strategy="paragraph"))
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_buffered_chunks_are_flushed_before_the_rewind(server, rclient):
    server.enqueue(broken_response("openai", "drop"), continuation_response("openai", FULL[len(KEPT["paragraph"]):]))
    stream = start(rclient, strategy="paragraph", buffer_chunks=3)
    batches = list(stream.batches())
    flat = [c for batch in batches for c in batch]
    assert consumer_view(flat) == FULL
    rewind_at = next(i for i, c in enumerate(flat) if "recovery" in c.metadata)
    assert consumer_view(flat[:rewind_at]) == BROKEN  # everything broken off was shown before the rewind


def test_body_cut_short_without_a_finish_is_recovered(server, rclient):
    # A proxy that ends the body cleanly (terminating chunk) before the provider finished.
    server.enqueue(openai_text(BROKEN_PIECES, finish_reason=None, done=False),
                   continuation_response("openai", FULL[len(BROKEN):]))
    stream = start(rclient)
    assert consumer_view(list(stream)) == FULL == stream.text
    assert stream.metrics.recoveries == 1


def completed_then_dropped(provider):
    """The provider's whole answer, finish signal included, then the connection breaks
    before the body ends (before OpenAI's/Mistral's [DONE], before the final HTTP chunk)."""
    response = BUILDERS[provider](BROKEN_PIECES + REST_PIECES)
    parts = response.parts[:-1] if provider in ("openai", "mistral") else response.parts
    return dataclasses.replace(response, parts=parts + (Drop(),))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_break_after_the_answer_finished_sends_no_continuation(server, rclient, provider):
    server.enqueue(completed_then_dropped(provider), continuation_response(provider, " and more."))
    stream = start(rclient, provider, strategy="paragraph")
    chunks = list(stream)
    assert len(server.requests) == 1
    assert rewinds(chunks) == []
    assert consumer_view(chunks) == FULL == stream.text
    assert stream.finish_reason == "stop"


# -- 2. not recoverable --------------------------------------------------------------------
AUTH_BODY = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
BAD_BODY = {"error": {"message": "Invalid value for 'temperature'", "type": "invalid_request_error"}}


@pytest.mark.parametrize("when", ["first", "in_recovery"])
def test_401_raises_authentication_error_without_a_continuation(server, rclient, store, sleeps, when):
    if when == "in_recovery":
        server.enqueue(broken_response("openai", "drop"))
    server.enqueue(error(401, AUTH_BODY))
    shown = []
    with pytest.raises(streamcoord.AuthenticationError) as info:
        for chunk in start(rclient):
            shown.append(chunk.content)
    assert info.value.status == 401
    expected_requests = 2 if when == "in_recovery" else 1
    assert len(server.requests) == expected_requests  # no request after the 401
    assert "".join(shown) == (BROKEN if when == "in_recovery" else "")
    assert len(sleeps) == expected_requests - 1  # only the recovery's back-off, no plain retry
    assert store.load("rec-1").status == "failed"


@pytest.mark.parametrize("when", ["first", "in_recovery"])
def test_400_raises_api_error_without_a_continuation(server, rclient, when):
    if when == "in_recovery":
        server.enqueue(broken_response("openai", "drop"))
    server.enqueue(error(400, BAD_BODY))
    with pytest.raises(streamcoord.APIError) as info:
        list(start(rclient))
    assert type(info.value) is streamcoord.APIError and info.value.status == 400
    assert len(server.requests) == (2 if when == "in_recovery" else 1)


def test_authentication_error_event_mid_stream_is_not_recovered(server, rclient):
    response = anthropic_text(BROKEN_PIECES + REST_PIECES, drop_after=2)
    event = sse([("error", {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})])
    server.enqueue(dataclasses.replace(response, parts=response.parts[:-1] + event.parts))
    with pytest.raises(streamcoord.AuthenticationError):
        list(start(rclient, "anthropic"))
    assert len(server.requests) == 1


def test_total_deadline_is_not_recovered(server, rclient):
    server.enqueue(broken_response("openai", "stall"))
    with pytest.raises(streamcoord.StreamTimeout, match="deadline"):
        list(start(rclient, timeout=streamcoord.Timeout(5.0, total=0.3)))
    assert len(server.requests) == 1


def test_failure_before_any_content_keeps_the_plain_retry_budget(server, rclient, sleeps):
    server.default = error(503, {"error": {"message": "busy", "type": "server_error"}})
    with pytest.raises(streamcoord.ServerError):
        list(start(rclient))
    assert len(server.requests) == 3  # the first attempt and max_retries=2 retries
    assert len(sleeps) == 2


# -- 3. retries exhausted ----------------------------------------------------------------
def test_exhausted_recoveries_raise_recovery_failed_and_leave_a_resumable_record(server, rclient, store):
    server.enqueue(
        broken_response("openai", "drop"),
        openai_text(["on and", " ends"], drop_after=1),
        openai_text([" ends", " here."], drop_after=1),
    )
    stream = start(rclient, recovery={"strategy": "exact", "max_retries": 2})
    shown = []
    with pytest.raises(streamcoord.RecoveryFailed) as info:
        for chunk in stream:
            shown.append(chunk)
    partial = BROKEN + "on and" + " ends"
    assert info.value.partial_text == partial == consumer_view(shown)
    assert isinstance(info.value.__cause__, streamcoord.ConnectionLost)
    assert len(server.requests) == 3
    assert stream.metrics.recoveries == 2 and stream.metrics.status == "failed"
    record = store.load("rec-1")
    assert record is not None and record.status == "failed" and record.text == partial

    # ... and it can still be resumed.
    server.enqueue(continuation_response("openai", FULL[len(partial):]))
    resumed = rclient().resume("rec-1", offset=len(partial))
    assert consumer_view(list(resumed), partial) == FULL
    assert resumed.text == FULL
    assert_continuation_carries("openai", server.requests[0], server.requests[3], partial)


def test_max_retries_zero_fails_at_the_first_break(server, rclient):
    server.enqueue(broken_response("openai", "drop"))
    with pytest.raises(streamcoord.RecoveryFailed) as info:
        list(start(rclient, recovery={"max_retries": 0}))
    assert info.value.partial_text == BROKEN
    assert len(server.requests) == 1


# -- 4. persist before hand-over ------------------------------------------------------------
def test_text_is_persisted_before_the_consumer_sees_it_and_untransformed(server, rclient, store):
    server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES))
    seen = []
    failures = []

    def check_then_upper(chunk):
        # Runs in the worker right before hand-over: the store must already hold this
        # chunk's text (and everything before it).
        seen.append(chunk.content)
        # (One write per network read: with several chunks in a read the store is ahead of
        # this chunk, so the check is "a prefix of the store", not "the store's tail".)
        stored = store.load("persist-1").text
        if not stored.startswith("".join(seen)):
            failures.append((chunk.index, "".join(seen), stored))
        return dataclasses.replace(chunk, content=chunk.content.upper())

    stream = start(rclient, stream_id="persist-1", transform_chunk=check_then_upper,
                   recovery={"keep": True})
    shown = "".join(c.content for c in stream)
    assert failures == []
    assert len([s for s in seen if s]) == len(BROKEN_PIECES + REST_PIECES)
    assert shown == stream.text == FULL.upper()
    assert store.load("persist-1").text == FULL  # the model's text, not the transformed one


def test_continuation_carries_the_models_text_not_the_transformed_text(server, rclient):
    server.enqueue(broken_response("openai", "drop"), continuation_response("openai", FULL[len(BROKEN):]))
    upper = lambda c: dataclasses.replace(c, content=c.content.upper())  # noqa: E731
    stream = start(rclient, transform_chunk=upper)
    assert consumer_view(list(stream)) == FULL.upper()
    assert_continuation_carries("openai", server.requests[0], server.requests[1], BROKEN)


def test_rejected_chunks_are_not_persisted(server, rclient, store):
    server.enqueue(openai_text(["keep. ", "SECRET ", "this."]))
    stream = start(rclient, stream_id="valid-1", recovery={"keep": True},
                   validate_chunk=lambda c: "no secrets" if "SECRET" in c.content else None)
    assert "".join(c.content for c in stream) == "keep. this."
    assert store.load("valid-1").text == "keep. this."


# -- 5. completion and keep ---------------------------------------------------------------
def test_completion_deletes_the_record(server, rclient, store):
    server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES))
    stream = start(rclient, stream_id="done-1")
    assert "".join(c.content for c in stream) == FULL
    assert store.load("done-1") is None
    # Only the final text stays, beside the outcome, for a reconnect just after the end
    # (FINAL_TEXT_SECONDS): a resume then returns the answer, and generates nothing.
    resumed = rclient().resume("done-1")
    assert "".join(c.content for c in resumed) == FULL and resumed.finish_reason == "stop"
    assert len(server.requests) == 1


@pytest.mark.parametrize("offset", [0, 17, len(FULL)])
def test_kept_completed_record_is_replayed_by_resume_without_a_request(server, rclient, store, offset):
    server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES))
    assert "".join(c.content for c in start(rclient, stream_id="kept-1", recovery={"keep": True})) == FULL
    record = store.load("kept-1")
    assert record.status == "completed" and record.text == FULL

    resumed = rclient().resume("kept-1", offset=offset)
    chunks = list(resumed)
    assert len(server.requests) == 1  # replayed from the store; nothing sent
    expected = [(FULL[offset:], {"replay": True})] if offset < len(FULL) else []
    assert [(c.content, c.metadata) for c in chunks] == expected
    assert resumed.text == FULL
    assert store.load("kept-1").status == "completed"  # still kept


# -- 6. client.resume in the same process --------------------------------------------------
def break_off(rclient, store, provider="openai", stream_id="resume-1", strategy="exact", **client_kwargs):
    """Start a stream, show BROKEN, and close it (like a browser going away)."""
    stream = start(rclient, provider, stream_id=stream_id, strategy=strategy, client_kwargs=client_kwargs)
    seen = ""
    for chunk in stream:
        seen += chunk.content
        if seen == BROKEN:
            break
    stream.close()
    record = store.load(stream_id)
    assert record is not None and record.status == "streaming" and record.text == BROKEN
    return seen


@pytest.mark.parametrize(
    "strategy,offset",
    [("exact", 0), ("exact", 10), ("exact", len(BROKEN)), ("paragraph", 5), ("paragraph", len(BROKEN)),
     ("sentence", len(BROKEN))],
)
def test_resume_replays_the_stored_text_from_offset_then_continues(server, rclient, store, strategy, offset):
    server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)))
    seen = break_off(rclient, store, strategy=strategy)
    assert server.connection_closed.wait(2)
    kept = KEPT[strategy]
    server.enqueue(continuation_response("openai", FULL[len(kept):]))

    resumed = rclient().resume("resume-1", offset=offset)
    chunks = list(resumed)
    replayed = [c for c in chunks if c.metadata.get("replay")]
    if offset < len(kept):
        assert [c.content for c in replayed] == [kept[offset:]]
        assert chunks[0] is replayed[0]
        assert rewinds(chunks) == []
    else:
        assert replayed == []
        expected = [(strategy, offset - len(kept))] if offset > len(kept) else []
        assert [(r["strategy"], r["rewind"]) for r in rewinds(chunks)] == expected
    assert consumer_view(chunks, seen[:offset]) == FULL
    assert resumed.text == FULL
    assert len(server.requests) == 2
    assert_continuation_carries("openai", server.requests[0], server.requests[1], kept)
    assert store.load("resume-1") is None


@pytest.mark.parametrize("mistake", ["offset past the text", "another provider"])
def test_a_refused_resume_leaves_the_id_free_for_the_next_resume(server, rclient, store, mistake):
    # A resume refused after it took the id's lease (a browser's offset past the stored text,
    # the client of another provider) gives the lease back: the next resume generates at once
    # instead of following a producer that does not exist until lease_ttl (60 s here) runs out.
    server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)))
    seen = break_off(rclient, store, lease_ttl=60)
    assert server.connection_closed.wait(2)
    server.enqueue(continuation_response("openai", FULL[len(BROKEN):]))
    with pytest.raises(ValueError, match="past the|resume it with Client"):
        if mistake == "offset past the text":
            rclient(lease_ttl=60).resume("resume-1", offset=len(BROKEN) + 1)
        else:
            rclient("anthropic", lease_ttl=60).resume("resume-1", offset=len(BROKEN))
    began = time.monotonic()
    resumed = rclient(lease_ttl=60).resume("resume-1", offset=len(BROKEN), timeout=5)
    assert consumer_view(list(resumed), seen) == FULL
    assert time.monotonic() - began < 5
    assert len(server.requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_resume_continues_for_every_provider(server, rclient, store, provider):
    server.enqueue(BUILDERS[provider](BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)))
    seen = break_off(rclient, store, provider, strategy="paragraph")
    kept = kept_text(provider, "paragraph")
    server.enqueue(continuation_response(provider, FULL[len(kept):]))
    resumed = rclient(provider).resume("resume-1", offset=len(seen))
    chunks = list(resumed)
    assert [r["rewind"] for r in rewinds(chunks)] == [len(BROKEN) - len(kept)]
    assert consumer_view(chunks, seen) == FULL == resumed.text
    assert_continuation_carries(provider, server.requests[0], server.requests[1], kept)


def test_resume_replay_goes_through_transform_chunk(server, rclient, kept_record):
    upper = lambda c: dataclasses.replace(c, content=c.content.upper())  # noqa: E731
    chunks = list(rclient().resume(kept_record, offset=3, transform_chunk=upper))
    assert [c.content for c in chunks if c.metadata.get("replay")] == [FULL[3:].upper()]


def test_resume_of_an_unknown_id_is_recovery_failed(rclient):
    with pytest.raises(streamcoord.RecoveryFailed, match="no stored stream 'never-started'"):
        rclient().resume("never-started")


@pytest.fixture
def kept_record(server, rclient, store):
    server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES))
    list(start(rclient, stream_id="kept-2", recovery={"keep": True}))
    assert store.load("kept-2").text == FULL
    return "kept-2"


def test_resume_offset_past_the_stored_text_is_a_value_error(rclient, kept_record):
    with pytest.raises(ValueError, match="past the"):
        rclient().resume(kept_record, offset=len(FULL) + 1)


@pytest.mark.parametrize("offset", [-1, 1.5, True])
def test_resume_offset_must_be_a_whole_number(rclient, kept_record, offset):
    with pytest.raises(ValueError, match="offset"):
        rclient().resume(kept_record, offset=offset)


def test_resume_with_another_providers_client_is_a_value_error(rclient, kept_record):
    with pytest.raises(ValueError, match="Client\\('openai'\\)"):
        rclient("anthropic").resume(kept_record)


def test_resume_takes_no_request_options(rclient, kept_record):
    with pytest.raises(TypeError, match="stream options .and extra_headers. only"):
        rclient().resume(kept_record, temperature=0.5)


# -- 8. store permissions and expiry ---------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="0700 is a POSIX mode")
def test_disk_store_directory_is_private(server, rclient, tmp_path):
    directory = tmp_path / "fresh" / "recovery"
    with DiskStore(directory) as disk:
        server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES))
        list(start(rclient, stream_id="perm-1", recovery={"keep": True}, client_kwargs={"recovery_store": disk}))
        assert disk.load("perm-1").text == FULL
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_expired_record_cannot_be_resumed(server, rclient, tmp_path, kind):
    clock = FakeClock()
    if kind == "disk":
        expiring = DiskStore(tmp_path / "store", ttl=60, clock=clock)
    else:
        clock.now = 1000.0
        expiring = MemoryStore(ttl=60, clock=clock)
    with expiring:
        server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)))
        break_off(rclient, expiring, stream_id="old-1", recovery_store=expiring)
        clock.advance(59)
        assert expiring.load("old-1") is not None  # not yet
        clock.advance(2)
        with pytest.raises(streamcoord.RecoveryFailed, match="expired"):
            rclient(recovery_store=expiring).resume("old-1", offset=len(BROKEN))
    assert len(server.requests) == 1


# -- 9. the default store ---------------------------------------------------------------------
@pytest.fixture
def default_dir(tmp_path, monkeypatch):
    directory = tmp_path / "default-store"
    monkeypatch.setenv("STREAMCOORD_RECOVERY_DIR", str(directory))
    monkeypatch.setattr(streamcoord._recovery, "_default_store", None)
    yield directory
    made = streamcoord._recovery._default_store
    if made is not None:
        made.close()


def test_default_store_lives_in_streamcoord_recovery_dir(server, client, default_dir):
    server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES))
    stream = client().stream_chat(MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id="dflt-1",
                                  recovery={"keep": True})
    assert "".join(c.content for c in stream) == FULL
    assert streamcoord._recovery._default_store.directory == str(default_dir)
    with DiskStore(default_dir) as disk:
        record = disk.load("dflt-1")
    assert record is not None and record.text == FULL and record.status == "completed"
    if os.name == "posix":
        assert stat.S_IMODE(os.stat(default_dir).st_mode) == 0o700
    resumed = client().resume("dflt-1")  # no recovery_store: the same default store
    assert "".join(c.content for c in resumed) == FULL


def test_rewind_with_a_length_changing_transform_keeps_the_consumers_text_coherent(server, client):
    """transform_chunk wraps every chunk in brackets: the consumer's text is longer than the
    model's, so the model's cut point is mapped onto the consumer's text (rewind to the last
    hand-over before it, then the kept model text after it again, transformed)."""
    from recovery_store import MemoryStore
    from tests.support.fakeserver import openai_text

    def wrap(chunk):
        return dataclasses.replace(chunk, content=f"[{chunk.content}]") if chunk.content else chunk

    server.enqueue(
        openai_text(["Para one.", "\n\n", "Para ", "two"], drop_after=4),
        openai_text(["Para two done."]),
    )
    stream = client(recovery_store=MemoryStore()).stream_chat(
        [{"role": "user", "content": "hi"}], model="m", stream_recovery=True,
        recovery={"strategy": "paragraph"}, transform_chunk=wrap,
    )
    seen = ""
    for chunk in stream:
        rewind = chunk.metadata.get("recovery", {}).get("rewind", 0)
        seen = seen[: len(seen) - rewind] + chunk.content
    assert seen == stream.text
    assert seen.replace("[", "").replace("]", "") == "Para one.\n\nPara two done."  # nothing lost or doubled
    assert seen.endswith("[Para two done.]") and seen.startswith("[Para one.")
    assert server.requests[1].json["messages"][-2]["content"] == "Para one.\n\n"  # the model's text, untransformed
