"""Where recovery's extra CPU per chunk goes: features off against recovery on (DiskStore),
the same flood, in one process.

    python benchmarks/profile_recovery.py [--chunks 30000] [--rounds 3] [--workload NAME]

A profile, not a benchmark for the table (bench_throughput has the ratios). Per chunk,
for each client: the process's CPU; the time in the cyclic garbage collector
(``gc.callbacks``) and its collections per generation; and the worker thread's CPU
(``time.thread_time``) in the store writes (``Recovery.persist``, one per hand-over), in
the network reads and in ``Transport.wait_ready`` (the hold's look for more bytes), with
how many of each a stream made. What is left of the difference is the parse and the
hand-over, which both clients do alike, and what the store's checkpoint thread and the
consumer spend. On a busy machine, compare medians over several runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _server  # noqa: E402
from benchmarks.bench_throughput import WORKLOADS, disk_store, streamcoord_client  # noqa: E402
from streamcoord import _recovery, _transport  # noqa: E402

TIMED = {"store writes": (_recovery.Recovery, "persist"), "reads": (_transport.Transport, "read"),
         "wait_ready": (_transport.Transport, "wait_ready")}


class Counters:
    """Calls and thread CPU of the TIMED methods, and the collector's time and collections."""

    def __init__(self) -> None:
        self.calls: Dict[str, List[float]] = {}
        self.gc_seconds = 0.0
        self.collections = [0, 0, 0]
        self._gc_started = 0.0
        self.reset()

    def reset(self) -> None:
        self.calls = {name: [0, 0.0] for name in TIMED}
        self.gc_seconds = 0.0
        self.collections = [0, 0, 0]

    def wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                entry = self.calls[name]
                entry[0] += 1
                entry[1] += time.thread_time() - started

        return timed

    def on_gc(self, phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_seconds += time.perf_counter() - self._gc_started
            self.collections[info["generation"]] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workload", choices=list(WORKLOADS), default="OpenAI SSE, one HTTP chunk per event")
    args = parser.parse_args()
    counters = Counters()
    for name, (cls, attr) in TIMED.items():
        setattr(cls, attr, counters.wrap(name, getattr(cls, attr)))
    clients = {"features off": streamcoord_client(),
               "recovery on (DiskStore)": streamcoord_client({"recovery_store": disk_store()}, stream_recovery=True)}
    options = WORKLOADS[args.workload]
    proc, origin = _server.start()
    try:
        base = _server.url(origin, n=args.chunks, **options)
        for run in clients.values():  # warm-up
            run(base, options["provider"])
        figures: Dict[str, List[Dict[str, float]]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, run in clients.items():  # interleaved: a busy moment hits both
                gc.collect()
                counters.reset()
                gc.callbacks.append(counters.on_gc)
                cpu = time.process_time()
                got = run(base, options["provider"])
                cpu = time.process_time() - cpu
                gc.callbacks.remove(counters.on_gc)
                row = {"cpu": cpu / got, "gc": counters.gc_seconds / got}
                row.update({f"gen{i}": n for i, n in enumerate(counters.collections)})
                for timed, (calls, seconds) in counters.calls.items():
                    row[timed] = seconds / got
                    row[timed + " calls"] = calls
                figures[name].append(row)
    finally:
        proc.kill()
        proc.wait()
    print(f"{args.workload}: {args.chunks:,} chunks per stream, {args.rounds} rounds (medians), "
          f"Python {sys.version.split()[0]}; us per chunk")
    for name, rows in figures.items():
        med = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        parts = [f"CPU {med['cpu'] * 1e6:5.2f}", f"gc {med['gc'] * 1e6:4.2f} "
                 f"({med['gen0']:.0f}/{med['gen1']:.0f}/{med['gen2']:.0f} collections)"]
        parts += [f"{timed} {med[timed] * 1e6:4.2f} ({med[timed + ' calls']:.0f})" for timed in TIMED]
        print(f"  {name:24} " + ", ".join(parts))


if __name__ == "__main__":
    main()
