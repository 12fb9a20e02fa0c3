"""Throughput over loopback: streamcoord against plain requests and openai-python, same run.

    python benchmarks/bench_throughput.py [--chunks 200000] [--rounds 5]

A server in its own process streams OpenAI-format chunks as fast as the socket allows.
Each client consumes the whole stream; rounds are interleaved so that drift in the
machine's speed hits every client alike, and the median chunks/second is reported with
its ratio to the floor (plain ``requests`` + ``iter_lines`` + ``json.loads``).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import streamcoord  # noqa: E402

MESSAGES = [{"role": "user", "content": "bench"}]


def start_server(n_chunks: int, framing: str = "packed"):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "benchmarks", "_server.py"), str(n_chunks), framing],
        stdout=subprocess.PIPE, text=True,
    )
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def floor_iter_lines(base_url: str) -> int:
    """What people write by hand: requests + iter_lines + json.loads."""
    n = 0
    with requests.post(f"{base_url}/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True},
                       stream=True) as resp:
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                data = line[6:]
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                if event["choices"][0]["delta"].get("content") is not None:
                    n += 1
    return n


def openai_python(base_url: str) -> int:
    import openai

    client = openai.OpenAI(api_key="bench", base_url=base_url, max_retries=0)
    n = 0
    for event in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
        if event.choices and event.choices[0].delta.content is not None:
            n += 1
    return n


def streamcoord_client(client_options=None, **options) -> Callable[[str], int]:
    def run(base_url: str) -> int:
        client = streamcoord.Client("openai", api_key="bench", base_url=base_url, max_retries=0, **(client_options or {}))
        n = 0
        for chunk in client.stream_chat(MESSAGES, model="m", **options):
            if chunk.content:
                n += 1
        return n

    return run


def identity(chunk):
    return chunk


def accept(chunk):
    return None


def disk_store():
    """A DiskStore in a temporary directory, removed at exit."""
    import atexit
    import shutil
    import tempfile

    from recovery_store import DiskStore

    directory = tempfile.mkdtemp(prefix="streamcoord-bench-")
    store = DiskStore(directory)
    atexit.register(lambda: (store.close(), shutil.rmtree(directory, ignore_errors=True)))
    return store


CLIENTS: Dict[str, Callable[[str], int]] = {
    "requests+iter_lines+json.loads (floor)": floor_iter_lines,
    "streamcoord, features off": streamcoord_client(),
    "streamcoord, track_metrics": streamcoord_client(track_metrics=True, on_metrics=lambda m: None),
    "streamcoord, all features": streamcoord_client(
        track_metrics=True, on_metrics=lambda m: None, transform_chunk=identity, validate_chunk=accept, buffer_chunks=8,
    ),
}
# Recovery writes the text of every network read to the store before handing it over.
OPTIONAL_CLIENTS: Dict[str, Callable[[], Callable[[str], int]]] = {
    "streamcoord, recovery (DiskStore)": lambda: streamcoord_client(
        {"recovery_store": disk_store()}, stream_recovery=True
    ),
}


@dataclasses.dataclass
class Result:
    name: str
    rates: List[float]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def measure(chunks: int, rounds: int, with_openai: bool, framing: str = "packed", with_recovery: bool = True) -> List[Result]:
    clients = dict(CLIENTS)
    if with_recovery:
        clients.update((name, make()) for name, make in OPTIONAL_CLIENTS.items())
    if with_openai:
        clients["openai-python"] = openai_python
    proc, base_url = start_server(chunks, framing)
    try:
        results = {name: Result(name, []) for name in clients}
        for fn in clients.values():  # warm-up: imports, connection pools
            fn(base_url)
        for _ in range(rounds):
            for name, fn in clients.items():
                gc.collect()  # every client starts from the same collector state
                started = time.perf_counter()
                got = fn(base_url)
                elapsed = time.perf_counter() - started
                assert got == chunks, (name, got, chunks)
                results[name].rates.append(chunks / elapsed)
        return list(results.values())
    finally:
        proc.kill()
        proc.wait()


def report(results: List[Result]) -> str:
    floor = results[0].median
    off = next((r.median for r in results if r.name == "streamcoord, features off"), floor)
    lines = [f"{'client':44} {'chunks/s (median)':>18} {'vs floor':>9} {'vs off':>7}"]
    for r in results:
        lines.append(f"{r.name:44} {r.median:18,.0f} {r.median / floor:8.2f}x {r.median / off:6.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-openai", action="store_true", help="skip openai-python (it is slow on big streams)")
    parser.add_argument("--framing", choices=["packed", "per-event", "gzip", "all"], default="all",
                        help="gzip: the packed stream, gzip-compressed (Content-Encoding: gzip)")
    parser.add_argument("--no-recovery", action="store_true", help="skip the recovery (DiskStore) client")
    args = parser.parse_args()
    before = threading.active_count()
    for framing in (["packed", "per-event", "gzip"] if args.framing == "all" else [args.framing]):
        results = measure(args.chunks, args.rounds, not args.no_openai, framing, not args.no_recovery)
        shape = "gzip-compressed, packed" if framing == "gzip" else framing
        print(f"\n{args.chunks:,} chunks per stream, {shape} HTTP chunks, {args.rounds} rounds, "
              f"Python {sys.version.split()[0]}")
        print(report(results))
    print(f"threads before {before}, after {threading.active_count()}")


if __name__ == "__main__":
    main()
