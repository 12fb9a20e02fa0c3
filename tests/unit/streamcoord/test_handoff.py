"""The worker-to-consumer hand-off: FIFO, bounded, and each side woken by the other."""

from __future__ import annotations

import queue
import threading

import pytest

from streamcoord._handoff import Handoff

WAIT = 5.0  # a bound for a wake-up that must happen; never reached when it works


def test_items_come_out_in_the_order_they_went_in() -> None:
    handoff = Handoff(8)
    for i in range(5):
        handoff.put([i])
    assert [handoff.get() for _ in range(5)] == [[0], [1], [2], [3], [4]]


def test_a_full_handoff_refuses_a_put_after_its_timeout_and_keeps_its_bound() -> None:
    handoff = Handoff(2)
    handoff.put(1)
    handoff.put(2)
    with pytest.raises(queue.Full):
        handoff.put(3, timeout=0.01)
    assert handoff.qsize() == 2
    assert [handoff.get_nowait(), handoff.get_nowait()] == [1, 2]


def test_an_empty_handoff_says_so_after_the_timeout() -> None:
    handoff = Handoff(2)
    with pytest.raises(queue.Empty):
        handoff.get_nowait()
    with pytest.raises(queue.Empty):
        handoff.get(timeout=0.01)
    handoff.put("after")  # a withdrawn wait leaves nothing behind: the next get gets this at once
    assert handoff.get(timeout=0) == "after"


def test_a_waiting_consumer_gets_what_the_producer_puts() -> None:
    handoff = Handoff(2)
    got: "queue.Queue[object]" = queue.Queue()
    consumer = threading.Thread(target=lambda: got.put([handoff.get(timeout=WAIT) for _ in range(3)]))
    consumer.start()
    for item in ("a", "b", "c"):
        handoff.put(item)
    assert got.get(timeout=WAIT) == ["a", "b", "c"]
    consumer.join(WAIT)


def test_a_producer_blocked_on_a_full_handoff_goes_on_when_the_consumer_takes_one() -> None:
    handoff = Handoff(1)
    handoff.put(0)
    done = threading.Event()

    def produce() -> None:
        handoff.put(1, timeout=WAIT)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert not done.wait(0.05)  # blocked: no room
    assert handoff.get(timeout=WAIT) == 0
    assert done.wait(WAIT)
    assert handoff.get(timeout=WAIT) == 1
    producer.join(WAIT)


def test_put_nowait_goes_past_the_bound_for_the_end_marker() -> None:
    handoff = Handoff(1)
    handoff.put("batch")
    handoff.put_nowait("end")
    assert [handoff.get(), handoff.get()] == ["batch", "end"]


def test_many_items_through_two_threads_arrive_complete_with_a_small_bound() -> None:
    handoff = Handoff(3)
    count = 5000

    def produce() -> None:
        for i in range(count):
            handoff.put(i, timeout=WAIT)
        handoff.put(None, timeout=WAIT)

    producer = threading.Thread(target=produce)
    producer.start()
    got = []
    while True:
        item = handoff.get(timeout=WAIT)
        if item is None:
            break
        got.append(item)
    producer.join(WAIT)
    assert got == list(range(count))


def test_a_drain_from_another_thread_does_not_keep_a_waiting_consumer_from_waking() -> None:
    handoff = Handoff(2)
    got: "queue.Queue[object]" = queue.Queue()
    consumer = threading.Thread(target=lambda: got.put(handoff.get(timeout=WAIT)))
    consumer.start()
    while not handoff._consumer_waiting:  # the consumer is blocked in get()
        threading.Event().wait(0.001)
    with pytest.raises(queue.Empty):
        handoff.get_nowait()  # what cancel() does from the thread that closes the stream
    handoff.put_nowait("end")
    assert got.get(timeout=WAIT) == "end"
    consumer.join(WAIT)
