"""Latency added per chunk, and time to first chunk, over loopback.

    python benchmarks/bench_latency.py [--events 1000] [--rate 200] [--rounds 3] [--first 300]
                                       [--only latency|first]

**Added latency**: a server in its own process (``_server.py`` with ``rate``) sends one
OpenAI event per HTTP chunk at ``--rate`` events/second, each stamped with its send time
(``time.monotonic_ns()``, one clock for every process on Linux); each client notes the
receive time of every chunk. Reported: p50 and p99 of receive minus send, per client, and
what each adds over plain requests. The raw-socket clients (bench_throughput's) bound it:
one thread, and the same loop handing over through a queue.Queue (the design's limit).

**Time to first chunk** on a new connection (the server answers ``Connection: close``):
from the call (``requests.post``, ``client.stream_chat``, ``create``) to the first content
chunk in the caller's hands (closing the stream after it is not counted), ``--first`` times per client,
interleaved in a new shuffled order each round (plain requests in a thread per stream
handing over a queue.Queue is the design's limit), each call's young garbage collected
after it (``gc.collect(1)``: in its CPU, not in its time), so no client's collections land
on another's call; the client objects
are made once, as an application makes them. Reported: the median and p90 per client, what
each adds to plain requests' median, and the client process's CPU per stream (both
threads; the mean, as process_time ticks coarsely), which load on a shared machine hardly
moves.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import random
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import streamcoord  # noqa: E402
from benchmarks import _server  # noqa: E402
from benchmarks.bench_throughput import MESSAGES, RAW_QUEUE_BATCHES, disk_store, raw_reads  # noqa: E402

Receiver = Callable[[str], List[int]]  # base URL -> the latency of each chunk, in ns


def floor(base: str) -> List[int]:
    out = []
    with requests.post(f"{base}/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True},
                       stream=True) as resp:
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                data = line[6:]
                if data == b"[DONE]":
                    break
                content = json.loads(data)["choices"][0]["delta"].get("content")
                if content:
                    out.append(time.monotonic_ns() - int(content[2:]))
    return out


def raw_socket(base: str) -> List[int]:
    """One thread, no library (bench_throughput.raw_reads): the practical limit."""
    out = []

    def consume(texts: List[str]) -> None:
        for text in texts:
            if text:
                out.append(time.monotonic_ns() - int(text[2:]))

    raw_reads(base, "openai", consume)
    return out


def raw_queue(base: str) -> List[int]:
    """raw_reads in a worker thread, each read's texts over a bounded queue.Queue to this
    thread: the cheapest client of streamcoord's shape, so its latency over raw_socket is
    what the hand-over between two threads itself adds on this machine."""
    batches: "queue.Queue[Optional[List[str]]]" = queue.Queue(RAW_QUEUE_BATCHES)

    def work() -> None:
        try:
            raw_reads(base, "openai", batches.put)
        finally:
            batches.put(None)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    out = []
    while True:
        texts = batches.get()
        if texts is None:
            break
        for text in texts:
            if text:
                out.append(time.monotonic_ns() - int(text[2:]))
    worker.join()
    return out


def streamcoord_receiver(client_options: Dict[str, Any], **options: Any) -> Receiver:
    def run(base: str) -> List[int]:
        client = streamcoord.Client("openai", api_key="bench", base_url=f"{base}/v1", max_retries=0, **client_options)
        out = []
        for chunk in client.stream_chat(MESSAGES, model="m", **options):
            if chunk.content:
                out.append(time.monotonic_ns() - int(chunk.content[2:]))
        return out

    return run


def openai_sdk(base: str) -> List[int]:
    import openai

    client = openai.OpenAI(api_key="bench", base_url=f"{base}/v1", max_retries=0)
    out = []
    for event in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):  # type: ignore
        if event.choices and event.choices[0].delta.content:
            out.append(time.monotonic_ns() - int(event.choices[0].delta.content[2:]))
    return out


FLOOR = "plain requests"


def receivers(core: bool = False) -> Dict[str, Receiver]:
    """Every client; ``core``: the floor, the raw clients and streamcoord features off."""
    out: Dict[str, Receiver] = {
        FLOOR: floor,
        "raw socket, one thread (limit)": raw_socket,
        "raw socket + queue.Queue (design limit)": raw_queue,
        "streamcoord, features off": streamcoord_receiver({}),
    }
    if not core:
        out["streamcoord, recovery (DiskStore)"] = streamcoord_receiver({"recovery_store": disk_store()},
                                                                        stream_recovery=True)
        out["openai-python (SDK)"] = openai_sdk
    return out


def percentile(values: List[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0  # us


def latency_rows(origin: str, events: int, rate: int, rounds: int, core: bool = False) -> List[Dict[str, str]]:
    base = _server.url(origin, n=events, rate=rate)
    todo = receivers(core)
    got: Dict[str, List[int]] = {name: [] for name in todo}
    for fn in todo.values():
        fn(_server.url(origin, n=5, rate=1000))  # warm-up
    for _ in range(rounds):
        for name, fn in todo.items():
            values = fn(base)
            assert len(values) == events, (name, len(values))
            got[name] += values[5:]  # the first few ride on the connection's start
    p50, p99 = percentile(got[FLOOR], 0.5), percentile(got[FLOOR], 0.99)
    rows = []
    for name, values in got.items():
        a, b = percentile(values, 0.5), percentile(values, 0.99)
        rows.append({"bench": f"latency per chunk at {rate} events/s", "client": name,
                     "figure": f"p50 {a:,.0f} us, p99 {b:,.0f} us, max {max(values) / 1000:,.0f} us",
                     "ratio": "" if name == FLOOR else f"{a - p50:+,.0f} us p50, {b - p99:+,.0f} us p99", "cpu": ""})
    return rows


def first_chunk_rows(origin: str, times: int) -> List[Dict[str, str]]:
    base = _server.url(origin, n=5)
    session = requests.Session()
    client = streamcoord.Client("openai", api_key="bench", base_url=f"{base}/v1", max_retries=0)
    import openai

    sdk = openai.OpenAI(api_key="bench", base_url=f"{base}/v1", max_retries=0)

    # Each returns when it had the first content chunk in hand (perf_counter): closing the
    # stream afterwards (a join of the worker, a connection close) is not the first chunk's.
    def plain() -> float:
        with session.post(f"{base}/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True},
                          stream=True) as resp:
            for line in resp.iter_lines():
                if line.startswith(b"data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    return time.perf_counter()
        raise AssertionError("no content")

    def plain_in_a_thread() -> float:
        # The design's limit: plain requests in a thread started per stream, handing each
        # content text over a bounded queue.Queue to the caller (what a worker thread and
        # a queue cost before any of our code runs).
        handed: "queue.Queue[Optional[str]]" = queue.Queue(RAW_QUEUE_BATCHES)

        def work() -> None:
            try:
                with session.post(f"{base}/v1/chat/completions", stream=True,
                                  json={"model": "m", "messages": MESSAGES, "stream": True}) as resp:
                    for line in resp.iter_lines():
                        if line.startswith(b"data: {"):
                            text = json.loads(line[6:])["choices"][0]["delta"].get("content")
                            if text:
                                handed.put(text)
            finally:
                handed.put(None)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        if handed.get() is None:
            raise AssertionError("no content")
        at = time.perf_counter()
        worker.join()  # the rest of the stream and the close: not the first chunk's
        return at

    def ours() -> float:
        with client.stream_chat(MESSAGES, model="m") as stream:
            for chunk in stream:
                if chunk.content:
                    return time.perf_counter()
        raise AssertionError("no content")

    def official() -> float:
        stream = sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore
        try:
            for event in stream:
                if event.choices and event.choices[0].delta.content:
                    return time.perf_counter()
        finally:
            stream.close()
        raise AssertionError("no content")

    todo = {FLOOR: plain, "requests in a thread + queue.Queue (design limit)": plain_in_a_thread,
            "streamcoord": ours, "openai-python (SDK)": official}
    got: Dict[str, List[float]] = {name: [] for name in todo}
    cpu: Dict[str, List[float]] = {name: [] for name in todo}  # this process's CPU (all threads), close included
    for fn in todo.values():
        fn()
    gc.collect()
    # A new order each round (seeded, so runs compare), and each call's young garbage
    # collected at its end, in its CPU but not in its time: the collector runs when the
    # young generation fills, on whichever call allocates then, and the openai SDK's
    # garbage was collected during the next calls (streamcoord's: 0.137 collections and
    # 341 us of collector time per stream against the design limit's 0.010 and 6 us;
    # without the SDK in the run, streamcoord's time and CPU equalled the design limit's).
    order = list(todo.items())
    shuffle = random.Random(13).shuffle
    for _ in range(times):
        shuffle(order)
        for name, fn in order:
            started, cpu_started = time.perf_counter(), time.process_time()
            got[name].append(fn() - started)
            gc.collect(1)
            cpu[name].append(time.process_time() - cpu_started)
    floor_ms = statistics.median(got[FLOOR]) * 1000
    rows = []
    for name, values in got.items():
        ms = statistics.median(values) * 1000
        p90 = sorted(values)[int(0.9 * len(values))] * 1000
        rows.append({"bench": "time to first chunk, new connection", "client": name,
                     "figure": f"{ms:.2f} ms median, p90 {p90:.2f} ms",
                     "ratio": "" if name == FLOOR else f"+{ms - floor_ms:.2f} ms ({ms / floor_ms:.2f}x)",
                     "cpu": f"{statistics.mean(cpu[name]) * 1e6:,.0f} us CPU per stream"})
    return rows


def rows(quick: bool) -> List[Dict[str, str]]:
    proc, origin = _server.start()
    try:
        return (latency_rows(origin, 200 if quick else 1000, 200, 2 if quick else 3)
                + first_chunk_rows(origin, 50 if quick else 300))
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--first", type=int, default=300, help="first-chunk timings per client")
    parser.add_argument("--only", choices=("latency", "first"), help="run one of the two parts")
    parser.add_argument("--core", action="store_true", help="added latency of the floor, raw and features-off clients only")
    args = parser.parse_args()
    proc, origin = _server.start()
    try:
        found = [] if args.only == "first" else latency_rows(origin, args.events, args.rate, args.rounds, args.core)
        if args.only != "latency":
            found += first_chunk_rows(origin, args.first)
        for row in found:
            print(f"{row['bench']:38} {row['client']:36} {row['figure']:40} {row['ratio']:20} {row['cpu']}")
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
