"""Many concurrent streams in one process: throughput, threads and sockets, and clean-up.

    python benchmarks/bench_concurrency.py [--streams 200] [--chunks 2000] [--break-after 10]
                                           [--framing packed|per-event] [--connection keep-alive|close]

A server in its own process (``_server_stream.py``) answers every request with the same
stream of N OpenAI-format chunks, keeping connections alive as providers do (or closing
them with ``--connection close``). Two runs, each with a fresh ``streamcoord.new_session()``
shared by all streams (``Client(..., session=session)``):

0. **reference**: the same consumer threads with plain requests + ``iter_lines`` +
   ``json.loads`` (``--no-floor`` skips it), for the aggregate chunks/s to be compared with.
1. **to the end**: ``--streams`` consumer threads, released together by a
   ``threading.Barrier``, each open a ``stream_chat`` stream and consume it to the end.
   Reported: total chunks/s and wall time, the peak ``threading.active_count()`` (each
   stream has a consumer thread here and a worker thread inside streamcoord), the thread
   count after all streams ended (must be back to the baseline), and the process's open
   sockets (``/proc/self/fd`` entries that are ``socket:[...]``) before, at the peak,
   after (kept-alive connections stay in the session's pool for reuse), and after
   ``session.close()`` (all released).
2. **early close**: the same consumers break out after ``--break-after`` chunks and close
   their stream. Reported: the slowest ``close()``, how long until the thread count is back
   to the baseline (must be within 2 s), and the sockets left (must be none, even before
   ``session.close()``: an abandoned connection is closed, not pooled).

This is a benchmark, not a test: it is never run by tox and its timings assert nothing;
the PASS/FAIL lines check only thread and socket counts.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import streamcoord  # noqa: E402

MESSAGES = [{"role": "user", "content": "bench"}]
BASELINE_WITHIN = 2.0  # seconds allowed for threads to return to the baseline after early closes


def open_sockets() -> int:
    """Sockets this process has open (Linux: /proc/self/fd; -1 where there is none)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return -1
    n = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass  # closed since listdir
    return n


# Run in a process of its own, so that the sampling neither waits for this process's GIL
# (hundreds of threads queue for it) nor slows the streams down by taking it.
_WATCH = r"""
import os, select, sys
pid = sys.argv[1]
peak_threads = peak_sockets = 0
while True:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    peak_threads = max(peak_threads, int(line.split()[1]))
        n = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            except OSError:
                pass
        peak_sockets = max(peak_sockets, n)
    except OSError:
        pass
    if select.select([sys.stdin], [], [], 0.002)[0]:
        break
print(peak_threads, peak_sockets, flush=True)
"""


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT",
              "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def socket_states() -> str:
    """The TCP states of this process's open sockets (from /proc/net/tcp), for a leftover."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    states = []
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    states.append(TCP_STATES.get(fields[3], fields[3]))
    except OSError:
        pass
    return ", ".join(sorted(states)) or "not TCP"


def leftovers() -> str:
    """For sockets still open after a run: their states, and whether they are only
    garbage (held by a reference cycle: a gc.collect() closes them) or still referenced."""
    import gc

    states = socket_states()
    gc.collect()
    return f"; left over: {states}; after gc.collect(): {open_sockets()}"


class Sampler:
    """Peak thread count and open sockets while a run goes on: ``threading.active_count()``
    from a thread in this process (every 5 ms), and the OS thread count and the sockets of
    this process from a watcher process (every few ms; Linux only, else -1)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_threads = 0
        self.peak_os_threads = -1
        self.peak_sockets = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._watcher: Optional[subprocess.Popen] = None

    def __enter__(self) -> "Sampler":
        if os.path.isdir("/proc/self/fd"):
            self._watcher = subprocess.Popen(
                [sys.executable, "-c", _WATCH, str(os.getpid())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        if self._watcher is not None:
            out, _ = self._watcher.communicate("stop\n")
            threads, sockets = out.split()
            # the watcher's pipes are not sockets; the sampler thread is not counted
            self.peak_os_threads, self.peak_sockets = int(threads) - 1, int(sockets)

    def _run(self) -> None:
        while not self._stop.is_set():
            # not counting this sampler thread itself
            self.peak_threads = max(self.peak_threads, threading.active_count() - 1)
            self._stop.wait(self.interval)


def start_server(n_chunks: int, framing: str, connection: str):
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "_server_stream.py"), str(n_chunks), framing]
    if connection == "close":
        cmd.append("--close")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def run_consumers(n_streams: int, consume: Callable[[int], None]) -> float:
    """Start ``n_streams`` consumer threads, release them together, join them; returns the
    wall time from the release to the last one's end."""
    barrier = threading.Barrier(n_streams + 1)

    def body(i: int) -> None:
        barrier.wait()
        consume(i)

    threads = [threading.Thread(target=body, args=(i,), name=f"bench-consumer-{i}") for i in range(n_streams)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def wait_for_threads(target: int, limit: float) -> Optional[float]:
    """Seconds until ``threading.active_count()`` is at most ``target`` (None: not within ``limit``)."""
    started = time.perf_counter()
    while True:
        if threading.active_count() <= target:
            return time.perf_counter() - started
        if time.perf_counter() - started > limit:
            return None
        time.sleep(0.001)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def floor_stream(session: "requests.Session", base_url: str) -> int:
    """One stream read the plain way (requests + ``iter_lines`` + ``json.loads``): the
    floor's consumer in both the standalone run and the suite's paced rows. Returns the
    content chunks it saw."""
    n = 0
    with session.post(f"{base_url}/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True},
                      stream=True) as resp:
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                data = line[6:]
                if data == b"[DONE]":
                    break
                if json.loads(data)["choices"][0]["delta"].get("content") is not None:
                    n += 1
    return n


QUEUE_END = object()


def queued_floor_stream(session: "requests.Session", base_url: str) -> int:
    """The floor's stream read the way DESIGN fixes for streamcoord, with nothing else of
    it: a thread of its own reads and parses (``floor_stream``'s loop) and hands each
    content string over a bounded ``queue.Queue`` to this consumer thread. What this costs
    over ``floor_stream`` is the design's own price (a second thread and a wake per event),
    the rest of streamcoord's figure is streamcoord's."""
    handoff: "queue.Queue[object]" = queue.Queue(maxsize=64)

    def produce() -> None:
        try:
            with session.post(f"{base_url}/chat/completions",
                              json={"model": "m", "messages": MESSAGES, "stream": True}, stream=True) as resp:
                for line in resp.iter_lines():
                    if line.startswith(b"data: "):
                        data = line[6:]
                        if data == b"[DONE]":
                            break
                        content = json.loads(data)["choices"][0]["delta"].get("content")
                        if content is not None:
                            handoff.put(content)
        finally:
            handoff.put(QUEUE_END)

    producer = threading.Thread(target=produce, name="bench-producer")
    producer.start()
    n = 0
    while handoff.get() is not QUEUE_END:
        n += 1
    producer.join()
    return n


def floor_reference(base_url: str, n_streams: int, n_chunks: int) -> float:
    """The same consumers with plain requests + ``iter_lines`` + ``json.loads`` (one thread
    per stream, no worker): the reference for the aggregate chunks/second."""
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=max(n_streams, 10)))  # every stream pooled
    counts: List[int] = [0] * n_streams

    def consume(i: int) -> None:
        counts[i] = floor_stream(session, base_url)

    wall = run_consumers(n_streams, consume)
    session.close()
    total = sum(counts)
    print(f"\n0. reference: the same {n_streams} consumer threads with requests+iter_lines+json.loads (floor)")
    print(f"  chunks: {total:,} of {n_streams * n_chunks:,} in {wall:.2f}s wall = {total / wall:,.0f} chunks/s in all")
    return total / wall


def to_the_end(base_url: str, n_streams: int, n_chunks: int, floor_rate: Optional[float]) -> bool:
    threads_before, sockets_before = threading.active_count(), open_sockets()
    session = streamcoord.new_session()
    client = streamcoord.Client("openai", api_key="bench", base_url=base_url, max_retries=0, session=session)
    counts: List[int] = [0] * n_streams
    errors: List[BaseException] = []

    def consume(i: int) -> None:
        n = 0
        try:
            with client.stream_chat(MESSAGES, model="m") as stream:
                for chunk in stream:
                    if chunk.content:
                        n += 1
        except BaseException as exc:  # reported below; a benchmark thread must not die silently
            errors.append(exc)
        counts[i] = n

    with Sampler() as sampler:
        wall = run_consumers(n_streams, consume)
    threads_after = threading.active_count()
    late = None if threads_after <= threads_before else wait_for_threads(threads_before, 5.0)
    sockets_after = open_sockets()
    session.close()
    sockets_closed = open_sockets()
    extra = leftovers() if sockets_closed > sockets_before else ""

    total = sum(counts)
    print(f"\n1. {n_streams} streams of {n_chunks:,} chunks, consumed to the end")
    if errors:
        print(f"  {len(errors)} streams failed, e.g. {errors[0]!r}")
    print(f"  chunks: {total:,} of {n_streams * n_chunks:,} in {wall:.2f}s wall = {total / wall:,.0f} chunks/s in all "
          f"({total / wall / n_streams:,.0f} chunks/s per stream)"
          + (f", {total / wall / floor_rate:.2f}x the floor's" if floor_rate else ""))
    print(f"  threads: baseline {threads_before}, peak {sampler.peak_threads} (OS threads {sampler.peak_os_threads}), "
          f"after all streams ended {threads_after}"
          + ("" if threads_after <= threads_before else
             f" (baseline {'reached %.3fs later' % late if late is not None else 'NOT reached within 5s'})"))
    print(f"  sockets: before {sockets_before}, peak {sampler.peak_sockets}, "
          f"after {sockets_after} (before session.close(): the pool keeps kept-alive connections for reuse), "
          f"after session.close() {sockets_closed}{extra}")
    ok = (not errors and total == n_streams * n_chunks and threads_after == threads_before
          and sockets_closed == sockets_before)
    print(f"  {verdict(ok)}: every chunk arrived, threads back to the baseline ({threads_after} == {threads_before}), "
          f"no socket left after session.close() ({sockets_closed} == {sockets_before})")
    return ok


def early_close(base_url: str, n_streams: int, n_chunks: int, break_after: int) -> bool:
    threads_before, sockets_before = threading.active_count(), open_sockets()
    session = streamcoord.new_session()
    client = streamcoord.Client("openai", api_key="bench", base_url=base_url, max_retries=0, session=session)
    counts: List[int] = [0] * n_streams
    close_times: List[float] = [0.0] * n_streams
    errors: List[BaseException] = []

    def consume(i: int) -> None:
        n = 0
        try:
            stream = client.stream_chat(MESSAGES, model="m")
            for chunk in stream:
                if chunk.content:
                    n += 1
                    if n == break_after:
                        break
            started = time.perf_counter()
            stream.close()
            close_times[i] = time.perf_counter() - started
        except BaseException as exc:
            errors.append(exc)
        counts[i] = n

    with Sampler() as sampler:
        wall = run_consumers(n_streams, consume)
    # The consumers are joined; the workers should be gone (close() waits for them).
    to_baseline = wait_for_threads(threads_before, 5.0)
    threads_after = threading.active_count()
    sockets_after = open_sockets()
    session.close()
    sockets_closed = open_sockets()
    extra = leftovers() if sockets_closed > sockets_before else ""

    print(f"\n2. {n_streams} streams of {n_chunks:,} chunks, each closed after {break_after} chunks")
    if errors:
        print(f"  {len(errors)} streams failed, e.g. {errors[0]!r}")
    print(f"  chunks read: {sum(counts):,} ({break_after} x {n_streams}) in {wall:.2f}s wall; "
          f"slowest close() {max(close_times) * 1000:.1f} ms, median "
          f"{sorted(close_times)[len(close_times) // 2] * 1000:.1f} ms")
    reached = f"{to_baseline:.3f}s after the last consumer ended" if to_baseline is not None else "NOT within 5s"
    print(f"  threads: baseline {threads_before}, peak {sampler.peak_threads} (OS threads {sampler.peak_os_threads}), "
          f"after {threads_after} "
          f"(baseline reached {reached})")
    print(f"  sockets: before {sockets_before}, peak {sampler.peak_sockets}, after {sockets_after}, "
          f"after session.close() {sockets_closed}{extra}")
    # close() waits for its worker, so a worker outlives its close() call by at most what
    # the slowest close() took plus any wait after the consumers ended.
    worst = None if to_baseline is None else max(close_times) + to_baseline
    ok = (not errors and sum(counts) == n_streams * break_after and worst is not None
          and worst <= BASELINE_WITHIN and sockets_after == sockets_before)
    within = f"{worst:.3f}s" if worst is not None else "more than 5s"
    print(f"  {verdict(ok)}: threads back to the baseline within {BASELINE_WITHIN:.0f}s of each close() "
          f"(at worst {within}), no socket left even before session.close() ({sockets_after} == {sockets_before})")
    return ok


PACED_RATE = 20  # events/s per stream in the suite's runs: a fast model's pace


def rss_kb(field: str = "VmRSS") -> int:
    """This process's resident memory (``VmHWM``: its peak so far), in KiB, from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def paced_child(variant: str, base_url: str, n_streams: int, n_chunks: int) -> None:
    """One paced run in this (fresh) process, for the suite: ``n_streams`` consumer threads,
    plain requests or streamcoord; prints a JSON line of what ``rows`` reports."""
    threads_before, sockets_before = threading.active_count(), open_sockets()
    counts: List[int] = [0] * n_streams
    errors: List[BaseException] = []
    if variant == "requests":
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=n_streams))

        def consume(i: int) -> None:
            counts[i] = floor_stream(session, base_url)
    elif variant == "requests+queue":
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=n_streams))

        def consume(i: int) -> None:
            counts[i] = queued_floor_stream(session, base_url)
    else:
        session = streamcoord.new_session()
        client = streamcoord.Client("openai", api_key="bench", base_url=base_url, max_retries=0, session=session)

        def consume(i: int) -> None:
            n = 0
            with client.stream_chat(MESSAGES, model="m") as stream:
                for chunk in stream:
                    if chunk.content:
                        n += 1
            counts[i] = n

    def guarded(i: int) -> None:
        try:
            consume(i)
        except BaseException as exc:  # reported; a benchmark thread must not die silently
            errors.append(exc)

    rss_before = rss_kb()
    cpu_started = time.process_time()
    with Sampler() as sampler:
        wall = run_consumers(n_streams, guarded)
    cpu = time.process_time() - cpu_started
    peak_kb = rss_kb("VmHWM")
    wait_for_threads(threads_before, 5.0)
    session.close()
    print(json.dumps({
        "chunks": sum(counts), "expected": n_streams * n_chunks, "errors": len(errors), "wall": wall,
        "cpu_us": cpu / max(sum(counts), 1) * 1e6, "kb_per_stream": (peak_kb - rss_before) / n_streams,
        "peak_threads": sampler.peak_os_threads, "threads_back": threading.active_count() == threads_before,
        "sockets_back": open_sockets() == sockets_before,
    }))


CLIENTS = {
    "requests": "plain requests threads",
    "requests+queue": "requests threads + a queue.Queue reader thread each (the design's floor)",
    "streamcoord": "streamcoord",
}


def rows(quick: bool) -> List[Dict[str, str]]:
    """The suite's rows (benchmarks/run.py): 100, 300 and 1000 paced streams, plain
    requests threads, the same with a queue.Queue reader thread per stream (what DESIGN's
    thread and hand-off cost alone) and streamcoord, each run in a fresh process."""
    from benchmarks import _server

    n_chunks = 20 if quick else 100
    proc, origin = _server.start()
    out: List[Dict[str, str]] = []
    try:
        base_url = _server.url(origin, n=n_chunks, rate=PACED_RATE) + "/v1"
        for n_streams in (100, 300, 1000):
            got = {}
            for variant in ("requests", "requests+queue", "streamcoord"):
                run = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", variant, "--url", base_url,
                                      "--streams", str(n_streams), "--chunks", str(n_chunks)],
                                     stdout=subprocess.PIPE, check=True, text=True)
                got[variant] = json.loads(run.stdout.strip().splitlines()[-1])
            for variant, r in got.items():
                base, queued = got["requests"], got["requests+queue"]
                ok = (r["chunks"] == r["expected"] and not r["errors"] and r["threads_back"] and r["sockets_back"])
                out.append({
                    "bench": f"{n_streams} concurrent streams, {PACED_RATE} events/s each",
                    "client": CLIENTS[variant],
                    "figure": f"{r['kb_per_stream']:.0f} KB/stream, {r['peak_threads']} threads, {r['wall']:.1f}s wall",
                    "ratio": ("" if variant == "requests" else
                              f"{r['cpu_us'] / base['cpu_us']:.2f}x CPU, {r['kb_per_stream'] / base['kb_per_stream']:.2f}x "
                              "memory; ") + (
                        "" if variant != "streamcoord" else
                        f"{r['cpu_us'] / queued['cpu_us']:.2f}x CPU, {r['kb_per_stream'] / queued['kb_per_stream']:.2f}x "
                        "memory of requests+queue; ") + ("all delivered, threads+sockets back" if ok else
                                            f"FAIL: {r['chunks']}/{r['expected']} chunks, {r['errors']} errors, "
                                            f"threads back {r['threads_back']}, sockets back {r['sockets_back']}"),
                    "cpu": f"{r['cpu_us']:.1f} us/chunk"})
    finally:
        proc.kill()
        proc.wait()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=2000, help="chunks per stream")
    parser.add_argument("--break-after", type=int, default=10, help="chunks read before an early close")
    parser.add_argument("--framing", choices=["packed", "per-event"], default="packed")
    parser.add_argument("--connection", choices=["keep-alive", "close"], default="keep-alive")
    parser.add_argument("--no-floor", action="store_true", help="skip the plain-requests reference run")
    parser.add_argument("--child", choices=list(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        paced_child(args.child, args.url, args.streams, args.chunks)
        return
    if not 0 < args.break_after < args.chunks:
        parser.error("--break-after must be between 1 and --chunks - 1")

    proc, base_url = start_server(args.chunks, args.framing, args.connection)
    try:
        print(f"{args.streams} concurrent streams, {args.chunks:,} chunks each, {args.framing} HTTP chunks, "
              f"server connection {args.connection}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        floor_rate = None if args.no_floor else floor_reference(base_url, args.streams, args.chunks)
        ok = to_the_end(base_url, args.streams, args.chunks, floor_rate)
        ok = early_close(base_url, args.streams, args.chunks, args.break_after) and ok
    finally:
        proc.kill()
        proc.wait()
    print(f"\n{verdict(ok)}: {'all' if ok else 'not all'} thread and socket checks held")


if __name__ == "__main__":
    main()
