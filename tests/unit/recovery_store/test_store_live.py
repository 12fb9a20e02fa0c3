"""The live-stream part of the store contract (leases, revisions, cancel marks), run
against every backend: memory, disk and a real redis-server."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from recovery_store import RecoveryStore
from recovery_store.base import LeaseLost

META = {"provider": "openai", "request": {"model": "m"}}
SHORT_TTL = 0.25  # a lease that must expire within a test; renewed well inside it


def test_a_lease_has_one_holder_until_it_is_released(store):
    token = store.acquire_lease("s1", 60)
    assert isinstance(token, str) and token
    assert store.leased("s1")
    assert store.acquire_lease("s1", 60) is None
    assert store.release_lease("s1", "someone-else") is False
    assert store.leased("s1") and store.acquire_lease("s1", 60) is None
    assert store.release_lease("s1", token) is True
    assert not store.leased("s1")
    other = store.acquire_lease("s1", 60)
    assert other and other != token
    assert store.acquire_lease("s2", 60), "leases of other ids are independent"


def test_only_the_holder_renews_a_lease(store):
    token = store.acquire_lease("s1", 60)
    assert store.renew_lease("s1", token, 60) is True
    assert store.renew_lease("s1", "someone-else", 60) is False
    assert store.renew_lease("unknown", token, 60) is False


def test_a_renewed_lease_outlives_its_ttl_and_expires_once_renewals_stop(store):
    # A producer that stalls but is alive keeps renewing: nobody may take over meanwhile.
    # A check counts only when this thread ran within the TTL of its last renewal: a GC
    # pause or a loaded machine may stop it longer, and then the lease rightly ended (the
    # test takes it again and starts over).
    token = store.acquire_lease("s1", SHORT_TTL)
    held_since = last_renewal = time.monotonic()
    give_up = held_since + 10
    while time.monotonic() - held_since < 2 * SHORT_TTL:
        assert time.monotonic() < give_up, "never ran within the TTL of a renewal for two TTLs"
        asked = time.monotonic()
        renewed = store.renew_lease("s1", token, SHORT_TTL)
        taken = store.acquire_lease("s1", SHORT_TTL)
        if time.monotonic() - last_renewal < SHORT_TTL:
            assert renewed, "a lease renewed within its TTL was lost"
            assert taken is None, "another holder took a lease renewed within its TTL"
            last_renewal = asked
        else:  # paused past the TTL: the lease may have ended meanwhile
            assert renewed or taken, "the lease was neither renewed nor free"
            token = taken or token
            held_since = last_renewal = asked
        time.sleep(SHORT_TTL / 6)
    # The producer died: its lease ends by the store's own expiry.
    deadline = time.monotonic() + 5
    successor = None
    while successor is None and time.monotonic() < deadline:
        time.sleep(SHORT_TTL / 6)
        successor = store.acquire_lease("s1", 60)
    assert successor, "the lease never expired"
    assert store.renew_lease("s1", token, 60) is False, "the dead holder's token no longer works"
    assert store.release_lease("s1", token) is False and store.leased("s1")


def test_threads_racing_for_a_lease_get_exactly_one(store):
    barrier = threading.Barrier(8)
    tokens = []

    def race():
        barrier.wait()
        tokens.append(store.acquire_lease("s1", 60))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len([t for t in tokens if t]) == 1 and len(tokens) == 8


def test_every_write_changes_the_revision_and_a_restart_never_repeats_one(store):
    assert store.revision("s1") == 0
    seen = []
    store.start("s1", META)
    seen.append(store.revision("s1"))
    for write in (lambda: store.append("s1", "a"), lambda: store.replace_text("s1", ""),
                  lambda: store.set_status("s1", "failed")):
        write()
        seen.append(store.revision("s1"))
    store.delete("s1")
    assert store.revision("s1") == 0
    store.start("s1", META)
    seen.append(store.revision("s1"))
    assert 0 not in seen and len(set(seen)) == len(seen), seen


def test_wait_for_returns_at_once_when_the_revision_already_differs(store):
    store.start("s1", META)
    started = time.monotonic()
    assert store.wait_for("s1", 0, 10) == store.revision("s1")
    assert time.monotonic() - started < 2


def test_wait_for_returns_the_same_revision_after_its_timeout(store):
    store.start("s1", META)
    rev = store.revision("s1")
    started = time.monotonic()
    assert store.wait_for("s1", rev, 0.1) == rev
    assert 0.09 <= time.monotonic() - started < 3


@pytest.mark.parametrize("write", ["append", "replace_text", "set_status", "delete", "cancel"])
def test_a_waiting_reader_wakes_on_each_kind_of_write(store, write):
    store.start("s1", META)
    store.append("s1", "one ")
    rev = store.revision("s1")
    woke = []
    waiting = threading.Thread(target=lambda: woke.append(store.wait_for("s1", rev, 10)))
    waiting.start()
    writes = {
        "append": lambda: store.append("s1", "two"),
        "replace_text": lambda: store.replace_text("s1", ""),
        "set_status": lambda: store.set_status("s1", "completed"),
        "delete": lambda: store.delete("s1"),
        "cancel": lambda: store.cancel("s1"),
    }
    writes[write]()
    waiting.join(5)
    assert not waiting.is_alive(), "the reader was not woken"
    assert woke == [store.revision("s1")] and woke[0] != rev


def test_a_cancel_mark_is_seen_and_a_new_start_clears_it(store):
    store.start("s1", META)
    assert not store.cancelled("s1")
    store.cancel("s1")
    assert store.cancelled("s1") and not store.cancelled("s2")
    assert store.load("s1").status == "streaming", "the record itself is left as it was"
    store.start("s1", META)
    assert not store.cancelled("s1")
    store.cancel("never-started")
    assert store.cancelled("never-started")


def test_lease_arguments_are_checked(store):
    with pytest.raises(ValueError):
        store.acquire_lease("no spaces", 10)
    with pytest.raises(ValueError):
        store.acquire_lease("s1", 0)
    with pytest.raises(TypeError):
        store.acquire_lease("s1", "ten")


def test_a_store_without_live_support_says_so():
    class OldStore(RecoveryStore):
        start = append = replace_text = set_status = load = delete = close = lambda self, *a: None

    with pytest.raises(NotImplementedError, match="does not support live streams"):
        OldStore().acquire_lease("s1", 10)


_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from recovery_store import DiskStore, RedisStore
store = {make}
token = store.acquire_lease("s1", 60)
print("leased" if token else "refused", flush=True)
sys.stdin.readline()
store.append("s1", "from the child")
print(store.revision("s1"), flush=True)
sys.stdin.readline()
"""


def test_a_lease_and_a_write_in_another_process_are_seen_here(make_store, tmp_path):
    if make_store.kind == "memory":
        pytest.skip("a MemoryStore lives in one process")
    store = make_store()
    store.start("s1", META)
    rev = store.revision("s1")
    if make_store.kind == "disk":
        make = f"DiskStore({str(store.directory)!r})"
    else:
        url = store.client.connection_pool.connection_kwargs
        make = f"RedisStore('redis://{url['host']}:{url['port']}/0', prefix={store.prefix!r})"
    root = str(__import__("pathlib").Path(__file__).resolve().parents[3])
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(root=root, make=make)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "leased"
        assert store.leased("s1") and store.acquire_lease("s1", 60) is None
        woke = []
        waiting = threading.Thread(target=lambda: woke.append(store.wait_for("s1", rev, 10)))
        waiting.start()
        child.stdin.write("\n")
        child.stdin.flush()
        child_rev = int(child.stdout.readline())
        waiting.join(10)
        assert woke == [child_rev]
        assert store.load("s1").text == "from the child"
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_an_outcome_wakes_readers_outlives_a_deleted_record_and_a_start_clears_it(store):
    store.start("s1", META)
    assert store.outcome("s1") is None
    rev = store.revision("s1")
    woke = []
    waiting = threading.Thread(target=lambda: woke.append(store.wait_for("s1", rev, 10)))
    waiting.start()
    store.set_outcome("s1", {"finish_reason": "stop", "usage": {"total_tokens": 3}}, 60)
    waiting.join(5)
    assert woke and woke[0] != rev
    store.delete("s1")
    assert store.outcome("s1") == {"finish_reason": "stop", "usage": {"total_tokens": 3}}
    store.start("s1", META)
    assert store.outcome("s1") is None


def test_an_outcome_expires_after_its_own_ttl(store):
    store.start("s1", META)
    store.set_outcome("s1", {"finish_reason": "stop"}, SHORT_TTL)
    deadline = time.monotonic() + 5
    while store.outcome("s1") is not None and time.monotonic() < deadline:
        time.sleep(SHORT_TTL / 4)
    assert store.outcome("s1") is None and store.load("s1") is not None


def test_clear_outcome_forgets_the_outcome_only_for_the_lease_holder_and_keeps_the_record(store):
    # A resume takes a failed live stream up again: readers must follow the new generation.
    store.start("s1", META)
    store.append("s1", "Kept. ")
    store.set_status("s1", "failed")
    store.set_outcome("s1", {"error": {"type": "ServerError", "message": "overloaded"}}, 60)
    holder = store.acquire_lease("s1", 60)
    with pytest.raises(LeaseLost):
        store.clear_outcome("s1", lease="someone-else")
    assert store.outcome("s1") is not None, "a refused clear is no clear"
    store.clear_outcome("s1", lease=holder)
    assert store.outcome("s1") is None
    record = store.load("s1")
    assert (record.text, record.status) == ("Kept. ", "failed"), "the record is the new generation's to write"
    store.clear_outcome("s1", lease=holder)  # nothing to clear: not an error
    store.release_lease("s1", holder)
    store.set_outcome("s1", {"finish_reason": "stop"}, 60)
    with pytest.raises(LeaseLost):
        store.clear_outcome("s1", lease=holder)  # released: no longer the holder
    store.clear_outcome("s1")  # without lease=, not checked
    assert store.outcome("s1") is None


def _successor(store, stream_id):
    """The lease of ``stream_id`` taken by a new holder once the old one's has expired."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        token = store.acquire_lease(stream_id, 60)
        if token:
            return token
        time.sleep(SHORT_TTL / 6)
    pytest.fail("the lease never expired")


def test_writes_carrying_a_lost_lease_are_refused_and_change_nothing(store):
    # A producer paused past its lease (GC, SIGSTOP) wakes up after another took over.
    assert store.fenced_writes
    store.start("s1", META)
    store.append("s1", "Kept. ")  # before the lease: a pause past SHORT_TTL here would lose it early
    paused = store.acquire_lease("s1", SHORT_TTL)
    successor = _successor(store, "s1")
    store.replace_text("s1", "Kept. ", lease=successor)
    rev = store.revision("s1")
    for write in (
        lambda: store.append("s1", "stale", lease=paused),
        lambda: store.replace_text("s1", "stale", lease=paused),
        lambda: store.set_status("s1", "completed", lease=paused),
        lambda: store.update_meta("s1", {"stale": True}, lease=paused),
    ):
        with pytest.raises(LeaseLost):
            write()
    record = store.load("s1")
    assert (record.text, record.status, "stale" in record.meta) == ("Kept. ", "streaming", False)
    assert store.revision("s1") == rev, "a refused write is no write"
    store.append("s1", "Fresh.", lease=successor)
    assert store.load("s1").text == "Kept. Fresh."
    store.release_lease("s1", successor)
    with pytest.raises(LeaseLost):
        store.append("s1", "after the end", lease=successor)
    store.append("s1", " Unfenced.")  # a write without lease= is not checked, as before
    assert store.load("s1").text == "Kept. Fresh. Unfenced."


def test_a_fenced_write_to_an_unknown_record_is_still_a_key_error(store):
    token = store.acquire_lease("s1", 60)
    with pytest.raises(KeyError):
        store.append("s1", "x", lease=token)


def test_read_text_gives_only_what_is_new_until_the_text_is_replaced(store):
    assert store.read_text("s1") is None
    store.start("s1", META)
    text, whole, cursor = store.read_text("s1")
    assert (text, whole) == ("", True)
    store.append("s1", "Héllo ")
    store.append("s1", "wörld 😄")
    text, whole, cursor = store.read_text("s1", cursor)
    assert text == "Héllo wörld 😄"
    store.load("s1")  # a load (MemoryStore compacts the pieces then) changes nothing for readers
    store.append("s1", ", again")
    assert store.read_text("s1", cursor)[:2] == (", again", False)
    cursor = store.read_text("s1", cursor)[2]
    assert store.read_text("s1", cursor)[:2] == ("", False)  # nothing new
    store.replace_text("s1", "Héllo")  # a recovery cut back: the next read is whole
    text, whole, cursor = store.read_text("s1", cursor)
    assert (text, whole) == ("Héllo", True)
    store.append("s1", " there")
    assert store.read_text("s1", cursor)[:2] == (" there", False)
    store.start("s1", META)  # a restart: whole again
    assert store.read_text("s1", cursor)[:2] == ("", True)
    assert store.read_text("s1", ("not", "a cursor"))[:2] == ("", True)
    store.delete("s1")
    assert store.read_text("s1", cursor) is None
