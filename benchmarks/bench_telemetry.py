"""What OpenTelemetry costs on short streams: client CPU per 50-chunk stream, telemetry off
vs on vs opentelemetry not importable.

    python benchmarks/bench_telemetry.py [--chunks 50] [--streams 400] [--rounds 5]

Streams of ``--chunks`` content chunks come one after another from a keep-alive loopback
server (in a process of its own; each event its own HTTP chunk and its own send, as
providers stream, with TCP_NODELAY so that Nagle and delayed ACKs do not hold the events
back). The measure is the CPU time of the client's process per stream
(``time.process_time``: every thread of the client, the worker's and the SDK's included).

Each round starts two fresh child processes. One has opentelemetry blocked (``not
importable``: what a user without the extra runs). The other imports and configures
opentelemetry-sdk and holds three clients whose streams it interleaves in blocks of 10, so
that a busy moment of the (shared) machine hits them alike: ``off``
(``telemetry=False``), ``on`` (``streamcoord.instrument()`` with the SDK's TracerProvider
and a MeterProvider with an in-memory metric reader: spans recorded, metrics aggregated,
nothing exported) and ``on, no reader`` (the same without a metric reader: the span and
the per-stream values without the per-chunk ``time_per_output_chunk`` values). Printed:
the median over rounds of each variant's CPU per stream, and of its ratio to ``off`` in
the same round.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VARIANTS = ("not importable", "off", "on", "on, no reader")
BLOCK = 10  # streams of one client before the next client's

CHILD = r'''
import json, sys, time
blocked, port, n_streams, block = sys.argv[1] == "blocked", int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if blocked:
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "opentelemetry":
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
    sys.meta_path.insert(0, Block())
import streamcoord

def client(**kwargs):
    return streamcoord.Client("openai", api_key="bench", base_url=f"http://127.0.0.1:{port}/v1", **kwargs)

if blocked:
    clients = {"not importable": client()}
else:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    tracer_provider = TracerProvider()
    streamcoord.instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider([InMemoryMetricReader()]))
    on = client()
    streamcoord.instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider())
    no_reader = client()
    streamcoord.uninstrument()
    clients = {"off": client(telemetry=False), "on": on, "on, no reader": no_reader}
messages = [{"role": "user", "content": "hi"}]

def one(c):
    for chunk in c.stream_chat(messages, model="gpt-4o-mini", max_tokens=100, temperature=0.5):
        pass

for c in clients.values():  # warm up: imports, the pool's connection, caches
    for _ in range(20):
        one(c)
cpu = dict.fromkeys(clients, 0.0)
for _ in range(n_streams // block):
    for name, c in clients.items():
        start = time.process_time()
        for _ in range(block):
            one(c)
        cpu[name] += time.process_time() - start
print(json.dumps({name: total / (n_streams // block * block) * 1e6 for name, total in cpu.items()}))
'''


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def http_chunks(n_chunks: int) -> List[bytes]:
    """An OpenAI chat completions answer of ``n_chunks`` content chunks, one HTTP chunk each."""
    def event(delta: Dict[str, str], finish: "str | None" = None) -> bytes:
        obj = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1727346168, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    events = [event({"content": f" word{i}"}) for i in range(n_chunks)]
    events.append(event({}, "stop") + b"data: [DONE]\n\n")
    return [HEAD + b"%x\r\n%s\r\n" % (len(events[0]), events[0])] + [
        b"%x\r\n%s\r\n" % (len(e), e) for e in events[1:]] + [b"0\r\n\r\n"]


def serve(n_chunks: int) -> None:
    """The server process: prints its port, answers every request on a connection, until killed."""
    pieces = http_chunks(n_chunks)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, data = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                for piece in pieces:
                    conn.sendall(piece)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def start_server(n_chunks: int) -> "tuple[subprocess.Popen, int]":
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(n_chunks)],
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def run_child(blocked: bool, port: int, n_streams: int) -> Dict[str, float]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    args = ["blocked" if blocked else "sdk", str(port), str(n_streams), str(BLOCK)]
    result = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise SystemExit(f"a child failed:\n{result.stderr}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=50, help="content chunks per stream (default: 50)")
    parser.add_argument("--streams", type=int, default=400, help="streams per variant and round (default: 400)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    args = parser.parse_args()
    server, port = start_server(args.chunks)
    samples: Dict[str, List[float]] = {v: [] for v in VARIANTS}
    ratios: Dict[str, List[float]] = {v: [] for v in VARIANTS}
    try:
        for round_ in range(args.rounds):
            children = [True, False] if round_ % 2 == 0 else [False, True]
            found: Dict[str, float] = {}
            for blocked in children:
                found.update(run_child(blocked, port, args.streams))
            for variant in VARIANTS:
                samples[variant].append(found[variant])
                ratios[variant].append(found[variant] / found["off"])
    finally:
        server.kill()
        server.wait()
    print(f"{args.chunks}-chunk streams, {args.streams} per variant and round, {args.rounds} rounds: "
          "client CPU per stream (medians)")
    print(f"{'variant':<16}{'us/stream':>12}{'vs off':>9}   ratio in each round")
    for variant in VARIANTS:
        rounds = " ".join(f"{v:.3f}" for v in ratios[variant])
        print(f"{variant:<16}{statistics.median(samples[variant]):>12.0f}{statistics.median(ratios[variant]):>9.3f}"
              f"   {rounds}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]))
    else:
        main()
