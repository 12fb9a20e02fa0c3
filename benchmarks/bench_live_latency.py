"""Live streams: how late an attached reader gets what the producer persisted (p50/p99).

    python benchmarks/bench_live_latency.py [--pieces 300] [--interval 0.01] [--stores memory,disk,redis]

A producer writes a live record the way a generating worker does (it takes the lease,
``start``s the record, ``append``s one piece per interval, records the outcome), each
piece being the wall-clock time it was persisted at. A reader follows it with
``client.attach`` (the ``AttachReader``, as users read it) and notes, for each piece, the
time it arrived minus the time it was persisted:

- ``MemoryStore, one process``: the producer is a thread beside the reader (target 5 ms);
- ``DiskStore, across processes``: the producer is another process on the same directory
  (target 100 ms);
- ``RedisStore, across processes``: the same through a redis-server this script starts on a
  free port (``redis-server`` on PATH and the ``redis`` package; skipped without them;
  target 50 ms).

Both processes read the same wall clock (one machine), so the difference is the latency.
``main()`` returns the rows ``(name, p50_ms, p99_ms, target_ms)`` as well as printing them,
for a suite that gathers every benchmark's table. This is a benchmark, not a test: it
asserts nothing, and its figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

STREAM_ID = "bench-live"
# What a resume or attach needs in the record's meta (what Client writes, in short).
META = {
    "provider": "openai",
    "messages": [{"role": "user", "content": "bench"}],
    "options": {},
    "recovery": {"strategy": "exact", "max_retries": 0, "keep": False},
}
LEASE_SECONDS = 120.0  # longer than a run: the producer need not renew it
TARGETS_MS = {"memory": 5.0, "disk": 100.0, "redis": 50.0}
NAMES = {
    "memory": "MemoryStore, one process",
    "disk": "DiskStore, across processes",
    "redis": "RedisStore, across processes",
}

Row = Tuple[str, float, float, float]


def open_store(kind: str, where: str, prefix: str) -> Any:
    from recovery_store import DiskStore, MemoryStore, RedisStore

    if kind == "memory":
        return MemoryStore()
    if kind == "disk":
        return DiskStore(where)
    return RedisStore(where, prefix=prefix)


def produce(store: Any, pieces: int, interval: float, ready: Callable[[], None], go: Callable[[], None]) -> None:
    """Write the live record (see the module docstring); ``ready`` once it exists, then
    wait for ``go`` (the reader is attached) before the first piece."""
    token = store.acquire_lease(STREAM_ID, LEASE_SECONDS)
    if token is None:
        raise SystemExit(f"the lease of {STREAM_ID!r} is held: another run on this store?")
    store.start(STREAM_ID, META)
    ready()
    go()
    next_at = time.monotonic()
    for _ in range(pieces):
        next_at += interval
        time.sleep(max(next_at - time.monotonic(), 0.0))
        store.append(STREAM_ID, f"{time.time():.6f};")
    outcome = {"finish_reason": "stop", "usage": None, "cancelled": False, "error": None}
    store.set_outcome(STREAM_ID, outcome, 60.0)
    store.delete(STREAM_ID)
    store.release_lease(STREAM_ID, token)


def follow(store: Any, go: Callable[[], None]) -> List[float]:
    """Attach to the live record, let the producer go, and return each piece's latency (ms)."""
    import streamcoord

    client = streamcoord.Client("openai", api_key="bench-key", recovery_store=store)
    latencies: List[float] = []
    with client.attach(STREAM_ID) as stream:
        go()
        for chunk in stream:
            now = time.time()
            latencies.extend((now - float(stamp)) * 1000.0 for stamp in chunk.content.split(";") if stamp)
    return latencies


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_in_process(kind: str, pieces: int, interval: float) -> List[float]:
    store = open_store(kind, "", "")
    created, started = threading.Event(), threading.Event()
    producer = threading.Thread(
        target=produce, args=(store, pieces, interval, created.set, started.wait), name="bench-producer", daemon=True
    )
    producer.start()
    created.wait(10)
    try:
        return follow(store, started.set)
    finally:
        producer.join(10)
        store.close()


def run_across_processes(kind: str, where: str, pieces: int, interval: float) -> List[float]:
    prefix = f"bench-live:{uuid.uuid4().hex}:"
    config = {"kind": kind, "where": where, "prefix": prefix, "pieces": pieces, "interval": interval}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--producer", json.dumps(config)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    store = open_store(kind, where, prefix)
    try:
        if child.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            raise SystemExit(f"the {kind} producer process did not start")

        def go() -> None:
            child.stdin.write("go\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]

        return follow(store, go)
    finally:
        child.wait(30)
        store.close()


def producer_main(config_json: str) -> None:
    """The other process of a cross-process run."""
    config = json.loads(config_json)
    store = open_store(config["kind"], config["where"], config["prefix"])
    try:
        produce(
            store, config["pieces"], config["interval"],
            ready=lambda: print("ready", flush=True), go=sys.stdin.readline,
        )
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: str) -> Tuple[Optional[subprocess.Popen], Optional[str], str]:
    """(the redis-server process, its URL, why not): one of our own on a free port."""
    server = shutil.which("redis-server")
    try:
        import redis
    except ImportError:
        return None, None, "the redis package is not installed"
    if server is None:
        return None, None, "no redis-server on PATH"
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return proc, url, ""
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                return None, None, "redis-server did not start"
            time.sleep(0.05)


def main(argv: Optional[Sequence[str]] = None) -> List[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=300, help="pieces persisted per store (default 300)")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between pieces (default 0.01)")
    parser.add_argument("--stores", default="memory,disk,redis", help="which stores, comma-separated")
    parser.add_argument("--producer", help=argparse.SUPPRESS)  # the child of a cross-process run
    args = parser.parse_args(argv)
    if args.producer:
        producer_main(args.producer)
        return []
    kinds = [kind.strip() for kind in args.stores.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - set(TARGETS_MS))
    if unknown:
        parser.error(f"unknown store(s) {unknown}: choose from memory, disk, redis")
    rows: List[Row] = []
    print(f"persist -> attached reader, {args.pieces} pieces {args.interval * 1000:.0f} ms apart")
    print(f"{'store':<32} {'p50 ms':>8} {'p99 ms':>8} {'target p99':>11}")
    with tempfile.TemporaryDirectory(prefix="bench-live-") as workdir:
        for kind in kinds:
            if kind == "memory":
                latencies = run_in_process(kind, args.pieces, args.interval)
            elif kind == "disk":
                latencies = run_across_processes(kind, os.path.join(workdir, "store"), args.pieces, args.interval)
            else:
                proc, url, missing = start_redis(workdir)
                if proc is None or url is None:
                    print(f"{NAMES[kind]:<32} skipped: {missing}")
                    continue
                try:
                    latencies = run_across_processes(kind, url, args.pieces, args.interval)
                finally:
                    proc.terminate()
                    proc.wait(10)
            row = (NAMES[kind], percentile(latencies, 0.5), percentile(latencies, 0.99), TARGETS_MS[kind])
            rows.append(row)
            verdict = "ok" if row[2] <= row[3] else "OVER"
            print(f"{row[0]:<32} {row[1]:>8.2f} {row[2]:>8.2f} {row[3]:>8.0f} ms  {verdict}", flush=True)
    return rows


def rows(quick: bool) -> List[Dict[str, str]]:
    """The suite's rows (benchmarks/run.py): p50 and p99 per store against the p99 target."""
    argv = ["--pieces", "100" if quick else "300"]
    out = []
    for name, p50, p99, target in main(argv):
        out.append({"bench": "live: persist -> attached reader", "client": name,
                    "figure": f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                    "ratio": f"target p99 {target:.0f} ms: {'ok' if p99 <= target else 'OVER'}", "cpu": ""})
    return out


if __name__ == "__main__":
    main()
