"""The RecoveryStore contract, run against every backend (memory, disk, and Redis if available)."""

from __future__ import annotations

import math
import threading
import time

import pytest

from recovery_store import RecoveryStore, StreamRecord

META = {"provider": "openai", "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}


def test_start_creates_an_empty_streaming_record_with_its_meta(store):
    before = time.time()
    store.start("s1", META)
    record = store.load("s1")
    assert isinstance(store, RecoveryStore)
    assert record == StreamRecord("s1", META, "", "streaming", record.updated_at)
    assert before - 1 <= record.updated_at <= time.time() + 1


def test_appended_text_is_loaded_in_order_including_unicode(store):
    store.start("s1", META)
    pieces = ["Hello", ", ", "wörld ", "😀👍🏽", " 你好。", "", "\n\nend\r\n", "\u2028"]
    for piece in pieces:
        store.append("s1", piece)
    assert store.load("s1").text == "".join(pieces)


def test_text_with_a_lone_surrogate_round_trips(store):
    store.start("s1", META)
    store.append("s1", "a\ud800b")
    assert store.load("s1").text == "a\ud800b"


def test_two_thousand_appends_keep_the_text_exact(store):
    store.start("s1", META)
    expected = []
    for i in range(2000):
        piece = f"{i}é "
        store.append("s1", piece)
        expected.append(piece)
    assert store.load("s1").text == "".join(expected)


def test_large_meta_and_text_round_trip(store):
    meta = {"request": {"messages": [{"role": "user", "content": "x" * 100_000}]}}
    store.start("s1", meta)
    store.append("s1", "y" * 50_000)
    record = store.load("s1")
    assert record.meta == meta and record.text == "y" * 50_000


def test_replace_text_sets_the_whole_text_and_appends_continue_after_it(store):
    store.start("s1", META)
    for piece in ["one ", "two ", "three"]:
        store.append("s1", piece)
    store.replace_text("s1", "one ")
    assert store.load("s1").text == "one "
    store.append("s1", "TWO")
    assert store.load("s1").text == "one TWO"
    store.replace_text("s1", "")
    assert store.load("s1").text == ""
    store.append("s1", "again")
    assert store.load("s1").text == "again"


def test_set_status_changes_the_record(store):
    store.start("s1", META)
    store.set_status("s1", "failed")
    record = store.load("s1")
    assert record.status == "failed"
    assert record.meta == META


def test_an_unknown_status_is_a_value_error(store):
    store.start("s1", META)
    with pytest.raises(ValueError, match="streaming"):
        store.set_status("s1", "done")


def test_start_overwrites_an_existing_record(store):
    store.start("s1", META)
    for i in range(5):
        store.append("s1", f"old{i}")
    store.set_status("s1", "failed")
    store.start("s1", {"provider": "anthropic"})
    store.append("s1", "new")
    record = store.load("s1")
    assert (record.meta, record.text, record.status) == ({"provider": "anthropic"}, "new", "streaming")


def test_records_with_similar_ids_do_not_share_keys(store):
    ids = ["a", "a:1", "a:1:0", "a:0", "a.b", "a-b", "a_b"]
    for sid in ids:
        store.start(sid, {"id": sid})
        store.append(sid, sid + "|")
        store.append(sid, "x")
    for sid in ids:
        record = store.load(sid)
        assert (record.meta, record.text) == ({"id": sid}, sid + "|x")


@pytest.mark.parametrize("op", ["append", "replace_text", "set_status"])
def test_writing_to_an_unknown_record_is_a_key_error(store, op):
    args = {"append": ("x",), "replace_text": ("x",), "set_status": ("failed",)}[op]
    with pytest.raises(KeyError, match="nope"):
        getattr(store, op)("nope", *args)
    assert store.load("nope") is None


def test_load_of_an_unknown_record_is_none(store):
    assert store.load("never-started") is None


def test_delete_removes_the_record_and_is_idempotent(store):
    store.start("s1", META)
    store.append("s1", "text")
    store.delete("s1")
    assert store.load("s1") is None
    store.delete("s1")
    store.delete("never-started")


def test_finish_deletes_the_record_unless_kept(store):
    store.start("s1", META)
    store.append("s1", "bye")
    store.finish("s1")
    assert store.load("s1") is None
    store.finish("s1")  # idempotent, like delete


def test_finish_with_keep_marks_the_record_completed(store):
    store.start("s1", META)
    store.append("s1", "kept")
    store.finish("s1", keep=True)
    record = store.load("s1")
    assert (record.status, record.text) == ("completed", "kept")
    with pytest.raises(KeyError):
        store.finish("unknown", keep=True)


def test_loaded_meta_is_a_copy(store):
    store.start("s1", {"list": [1]})
    store.load("s1").meta["list"].append(2)
    assert store.load("s1").meta == {"list": [1]}


def test_meta_round_trips_as_json_does(store):
    store.start("s1", {1: "int key", "t": (1, 2), "u": "ü", "n": None, "f": 1.5})
    assert store.load("s1").meta == {"1": "int key", "t": [1, 2], "u": "ü", "n": None, "f": 1.5}


@pytest.mark.parametrize(
    "meta", [{"x": object()}, {"x": {1, 2}}, {"x": b"bytes"}, {"x": math.nan}, ["not", "a", "dict"]]
)
def test_meta_that_is_not_json_is_a_type_error(store, meta):
    with pytest.raises(TypeError, match="meta must be"):
        store.start("s1", meta)
    assert store.load("s1") is None


@pytest.mark.parametrize("key", ["headers", "api_key", "Authorization"])
def test_meta_holding_headers_or_keys_is_refused(store, key):
    with pytest.raises(ValueError, match="never headers"):
        store.start("s1", {key: "secret"})


@pytest.mark.parametrize("bad", ["", "a" * 201, "a/b", "a b", "../x", "é", "a\n"])
def test_an_unsafe_stream_id_is_a_value_error(store, bad):
    with pytest.raises(ValueError, match="stream_id"):
        store.start(bad, META)
    with pytest.raises(ValueError, match="stream_id"):
        store.load(bad)


def test_a_stream_id_of_200_safe_characters_is_accepted(store):
    sid = ("Az09_.:-" * 25)[:200]
    store.start(sid, META)
    assert store.load(sid).stream_id == sid


def test_a_non_str_stream_id_or_text_is_a_type_error(store):
    with pytest.raises(TypeError, match="stream_id"):
        store.start(123, META)
    store.start("s1", META)
    with pytest.raises(TypeError, match="text"):
        store.append("s1", b"bytes")


def test_a_record_expires_ttl_after_its_last_write(make_store, clock):
    store = make_store(ttl=10.0, clock=clock)
    store.start("s1", META)
    clock.advance(9)
    store.append("s1", "a")  # a write refreshes the expiry
    clock.advance(9)
    assert store.load("s1").text == "a"
    store.set_status("s1", "failed")
    clock.advance(9.5)
    assert store.load("s1").status == "failed"
    clock.advance(1)
    assert store.load("s1") is None
    with pytest.raises(KeyError):
        store.append("s1", "b")


def test_an_expired_record_can_be_started_again(make_store, clock):
    store = make_store(ttl=5.0, clock=clock)
    store.start("s1", META)
    store.append("s1", "old")
    clock.advance(6)
    store.start("s1", META)
    store.append("s1", "new")
    assert store.load("s1").text == "new"


def test_reading_does_not_refresh_the_expiry(make_store, clock):
    store = make_store(ttl=5.0, clock=clock)
    store.start("s1", META)
    clock.advance(4)
    assert store.load("s1") is not None
    clock.advance(2)
    assert store.load("s1") is None


def test_concurrent_appends_from_threads_are_all_kept(store):
    for t in range(4):
        store.start(f"t{t}", META)
    store.start("shared", META)

    def work(t):
        for i in range(100):
            store.append(f"t{t}", f"{i},")
            store.append("shared", "x")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for t in range(4):
        assert store.load(f"t{t}").text == "".join(f"{i}," for i in range(100))
    assert store.load("shared").text == "x" * 400


def test_a_closed_store_refuses_to_work(make_store):
    store = make_store()
    store.start("s1", META)
    store.close()
    store.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        store.load("s1")
    with pytest.raises(ValueError, match="closed"):
        store.start("s2", META)


def test_the_store_is_a_context_manager_that_closes(make_store):
    with make_store() as store:
        store.start("s1", META)
    with pytest.raises(ValueError, match="closed"):
        store.append("s1", "x")


def test_update_meta_merges_into_the_meta_and_keeps_text_and_status(store):
    store.start("s1", META)
    store.append("s1", "Hello")
    store.update_meta("s1", {"resume_state": {"response_id": "resp_1", "sequence_number": 7}})
    store.update_meta("s1", {"resume_state": {"response_id": "resp_1", "sequence_number": 9}})
    store.append("s1", " world")
    record = store.load("s1")
    assert record.meta == dict(META, resume_state={"response_id": "resp_1", "sequence_number": 9})
    assert (record.text, record.status) == ("Hello world", "streaming")
    with pytest.raises(KeyError):
        store.update_meta("unknown", {"a": 1})
