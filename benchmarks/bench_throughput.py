"""Throughput over loopback: streamcoord against plain requests, a raw-socket client and the
official SDKs, same run.

    python benchmarks/bench_throughput.py [--chunks 200000] [--rounds 5] [--workload NAME|all]

A server in its own process (``_server.py``) streams chunks as fast as the socket allows.
Each client consumes the whole stream; rounds are interleaved so that drift in the
machine's speed hits every client alike. Reported: the median chunks/second with its ratio
to the floor (plain ``requests`` + ``iter_lines`` + ``json.loads``), and the median CPU
microseconds of this process (every thread) per chunk, the steadier figure on a busy
machine. The raw-socket client (one thread, its own HTTP/SSE framing and ``json.loads``)
is the practical limit: it pays for no thread hand-off at all. The raw socket + queue.Queue
client is the same loop in a worker thread handing each read's texts over a bounded
``queue.Queue`` to the caller: the design's own limit (streamcoord's shape, none of its
work), so that "streamcoord vs raw+queue" is what is ours and "raw+queue vs raw" is what
the two threads cost on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import queue
import socket
import statistics
import sys
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import streamcoord  # noqa: E402
from benchmarks import _server  # noqa: E402

MESSAGES = [{"role": "user", "content": "bench"}]
# name -> server options; the suite runs the first three.
WORKLOADS: Dict[str, Dict[str, Any]] = {
    "OpenAI SSE, 16 KiB HTTP chunks": {"provider": "openai", "framing": "packed", "pack": 16384},
    "OpenAI SSE, one HTTP chunk per event": {"provider": "openai", "framing": "per-event"},
    "Anthropic SSE, one HTTP chunk per event": {"provider": "anthropic", "framing": "per-event"},
    "OpenAI SSE, gzip, 64 KiB HTTP chunks": {"provider": "openai", "framing": "gzip"},
}
SUITE_WORKLOADS = list(WORKLOADS)[:3]
SDK_SHARE = 10  # the official SDKs are 10-25x slower: they stream a tenth of the chunks


def endpoint(base: str, provider: str) -> str:
    return f"{base}/v1/chat/completions" if provider == "openai" else f"{base}/v1/messages"


def request_body(provider: str) -> Dict[str, Any]:
    return {"model": "m", "messages": MESSAGES, "stream": True, **({"max_tokens": 64} if provider == "anthropic" else {})}


def floor(base: str, provider: str) -> int:
    """What people write by hand: requests + iter_lines + json.loads."""
    n = 0
    with requests.post(endpoint(base, provider), json=request_body(provider), stream=True) as resp:
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                data = line[6:]
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                if provider == "openai":
                    if event["choices"][0]["delta"].get("content") is not None:
                        n += 1
                elif event["type"] == "content_block_delta" and event["delta"].get("text"):
                    n += 1
    return n


def raw_reads(base: str, provider: str, deliver: Callable[[List[str]], None]) -> None:
    """No library: HTTP/1.1 chunked framing, SSE splitting and json.loads by hand; each
    read's content strings go to ``deliver`` as one list."""
    parts = urllib.parse.urlsplit(endpoint(base, provider))
    payload = json.dumps(request_body(provider)).encode()
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (parts.path.encode(), parts.netloc.encode(), len(payload), payload))
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    buf = buf.partition(b"\r\n\r\n")[2]
    sse, done, loads = b"", False, json.loads
    with sock:
        while not done:
            pos, body = 0, []
            while True:  # every complete HTTP chunk in buf
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buf[pos:eol], 16)
                if size == 0:
                    done = True
                    break
                if eol + 4 + size > len(buf):
                    break
                body.append(buf[eol + 2:eol + 2 + size])
                pos = eol + 4 + size
            buf = buf[pos:]
            events = (sse + b"".join(body)).split(b"\n\n")
            sse = events.pop()
            texts = []
            for event in events:
                data = event[event.find(b"data: ") + 6:]
                if provider == "openai":
                    if data != b"[DONE]":
                        text = loads(data)["choices"][0]["delta"].get("content")
                        if text is not None:
                            texts.append(text)
                elif event.startswith(b"event: content_block_delta"):
                    text = loads(data)["delta"].get("text")
                    if text:
                        texts.append(text)
            if texts:
                deliver(texts)
            if not done:
                more = sock.recv(65536)
                if not more:
                    break
                buf += more


def raw_socket(base: str, provider: str) -> int:
    """One thread: ``raw_reads`` and the caller's loop over each read's texts."""
    n = 0

    def consume(texts: List[str]) -> None:
        nonlocal n
        for _text in texts:
            n += 1

    raw_reads(base, provider, consume)
    return n


# As many batches as streamcoord's queue holds (streamcoord._pipeline.QUEUE_BATCHES).
RAW_QUEUE_BATCHES = 256


def raw_queue(base: str, provider: str) -> int:
    """The cheapest client of streamcoord's shape: ``raw_reads`` in a worker thread, each
    read's texts handed as one list over a bounded ``queue.Queue`` to the caller's loop.
    What it costs beyond ``raw_socket`` is what the two-thread design itself costs."""
    batches: "queue.Queue[Optional[List[str]]]" = queue.Queue(RAW_QUEUE_BATCHES)

    def work() -> None:
        try:
            raw_reads(base, provider, batches.put)
        finally:
            batches.put(None)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    n = 0
    get = batches.get
    while True:
        texts = get()
        if texts is None:
            break
        for _text in texts:
            n += 1
    worker.join()
    return n


def official_sdk(base: str, provider: str) -> int:
    n = 0
    if provider == "openai":
        import openai

        client = openai.OpenAI(api_key="bench", base_url=f"{base}/v1", max_retries=0)
        for event in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):  # type: ignore
            if event.choices and event.choices[0].delta.content is not None:
                n += 1
    else:
        import anthropic

        aclient = anthropic.Anthropic(api_key="bench", base_url=base, max_retries=0)
        for aevent in aclient.messages.create(model="m", messages=MESSAGES, max_tokens=64, stream=True):  # type: ignore
            if aevent.type == "content_block_delta" and getattr(aevent.delta, "text", None):
                n += 1
    return n


def streamcoord_client(client_options: Optional[Dict[str, Any]] = None, **options: Any) -> Callable[[str, str], int]:
    def run(base: str, provider: str) -> int:
        client = streamcoord.Client(provider, api_key="bench", base_url=f"{base}/v1" if provider == "openai" else base,
                                    max_retries=0, **(client_options or {}))
        n = 0
        for chunk in client.stream_chat(MESSAGES, model="m", **options):
            if chunk.content:
                n += 1
        return n

    return run


def identity(chunk: Any) -> Any:
    return chunk


def accept(chunk: Any) -> None:
    return None


def callbacks_in_the_loop(base: str, provider: str) -> int:
    """Features off, with the all-features client's two callbacks called by the caller's
    loop instead: what those two Python calls per chunk cost by themselves, the floor for
    "all features" (whatever that client costs above this is ours)."""
    client = streamcoord.Client(provider, api_key="bench", base_url=f"{base}/v1" if provider == "openai" else base,
                                max_retries=0)
    n = 0
    for chunk in client.stream_chat(MESSAGES, model="m"):
        accept(chunk)
        if identity(chunk).content:
            n += 1
    return n


def disk_store() -> Any:
    """A DiskStore in a temporary directory, removed at exit."""
    import atexit
    import shutil
    import tempfile

    from recovery_store import DiskStore

    directory = tempfile.mkdtemp(prefix="streamcoord-bench-")
    store = DiskStore(directory)
    atexit.register(lambda: (store.close(), shutil.rmtree(directory, ignore_errors=True)))
    return store


FLOOR = "requests+iter_lines+json.loads (floor)"
RAW = "raw socket, one thread (limit)"
RAW_QUEUE = "raw socket + queue.Queue (design limit)"
OFF = "streamcoord, features off"
SDK = "official SDK"
CALLBACKS_FLOOR = "streamcoord, off + the 2 callbacks in the loop"


def clients(recovery: bool = True, sdk: bool = True, features: bool = True) -> Dict[str, Callable[[str, str], int]]:
    out: Dict[str, Callable[[str, str], int]] = {FLOOR: floor, RAW: raw_socket, RAW_QUEUE: raw_queue, OFF: streamcoord_client()}
    if features:
        out["streamcoord, track_metrics"] = streamcoord_client(track_metrics=True, on_metrics=lambda m: None)
        out["streamcoord, all features"] = streamcoord_client(
            track_metrics=True, on_metrics=lambda m: None, transform_chunk=identity, validate_chunk=accept,
            buffer_chunks=8,
        )
        out[CALLBACKS_FLOOR] = callbacks_in_the_loop
    if recovery:
        out["streamcoord, recovery (DiskStore)"] = streamcoord_client({"recovery_store": disk_store()},
                                                                      stream_recovery=True)
    if sdk:
        out[SDK] = official_sdk
    return out


@dataclasses.dataclass
class Result:
    name: str
    rates: List[float] = dataclasses.field(default_factory=list)
    cpu: List[float] = dataclasses.field(default_factory=list)  # this process's CPU seconds per chunk

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu_us(self) -> float:
        return statistics.median(self.cpu) * 1e6


def measure(origin: str, workload: str, chunks: int, rounds: int, **which: bool) -> List[Result]:
    options = WORKLOADS[workload]
    provider = options["provider"]
    todo = clients(**which)
    counts = {name: chunks // SDK_SHARE if name == SDK else chunks for name in todo}
    bases = {name: _server.url(origin, n=counts[name], **options) for name in todo}
    results = {name: Result(name) for name in todo}
    for name, fn in todo.items():  # warm-up: imports, the server's cached bodies
        fn(bases[name], provider)
    for _ in range(rounds):
        for name, fn in todo.items():
            gc.collect()  # every client starts from the same collector state
            started, cpu_started = time.perf_counter(), time.process_time()
            got = fn(bases[name], provider)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            assert got == counts[name], (workload, name, got, counts[name])
            results[name].rates.append(got / elapsed)
            results[name].cpu.append(cpu / got)
    return list(results.values())


def table_rows(workload: str, results: List[Result]) -> List[Dict[str, str]]:
    base = results[0]
    off = next(r for r in results if r.name == OFF)
    shape = next((r for r in results if r.name == RAW_QUEUE), None)
    rows = []
    for r in results:
        name = r.name if r.name != SDK else ("openai-python" if "OpenAI" in workload else "anthropic-python") + " (SDK)"
        rows.append({"bench": workload, "client": name, "figure": f"{r.median:,.0f} chunks/s",
                     "ratio": f"{r.median / base.median:.2f}x floor" + (
                         f", {r.median / off.median:.2f}x off" if r.name not in (FLOOR, RAW, RAW_QUEUE, OFF, SDK) else
                         f", {r.median / shape.median:.2f}x raw+queue" if r.name == OFF and shape is not None else ""),
                     "cpu": f"{r.cpu_us:.2f} us/chunk"})
    return rows


def rows(quick: bool) -> List[Dict[str, str]]:
    """The suite's rows (benchmarks/run.py)."""
    chunks, rounds = (40_000, 2) if quick else (200_000, 5)
    proc, origin = _server.start()
    try:
        out: List[Dict[str, str]] = []
        for workload in SUITE_WORKLOADS:
            out += table_rows(workload, measure(origin, workload, chunks, rounds))
        return out
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workload", choices=list(WORKLOADS) + ["all"], default="all")
    parser.add_argument("--no-sdk", action="store_true", help="skip the official SDK")
    parser.add_argument("--no-recovery", action="store_true", help="skip the recovery (DiskStore) client")
    parser.add_argument("--no-features", action="store_true", help="skip the track_metrics and all-features clients")
    args = parser.parse_args()
    proc, origin = _server.start()
    try:
        for workload in (SUITE_WORKLOADS if args.workload == "all" else [args.workload]):
            results = measure(origin, workload, args.chunks, args.rounds, recovery=not args.no_recovery,
                              sdk=not args.no_sdk, features=not args.no_features)
            print(f"\n{workload}: {args.chunks:,} chunks per stream, {args.rounds} rounds, Python {sys.version.split()[0]}")
            for row in table_rows(workload, results):
                print(f"  {row['client']:40} {row['figure']:>20} {row['ratio']:>24} {row['cpu']:>16}")
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
