"""Instructions per chunk of bench_throughput's streamcoord clients, under cachegrind: the
figure that a shared, loaded machine hardly moves (wall time and CPU time swing +-20%).

    python benchmarks/bench_instructions.py [--workload NAME|all] [--clients off,metrics,all,callbacks]

Each client streams ``--short`` and then ``--long`` chunks in a fresh process under
``valgrind --tool=cachegrind --cache-sim=no`` (both threads counted); instructions per chunk
= the difference of the two totals over the difference in chunks, so start-up and imports
cancel out. About 20 s per client and workload on a 2-core machine. Not part of
``python -m benchmarks`` (it needs valgrind, and it is slow). Counts under valgrind run
~50x slower than native: anything paced by the wall clock (the once-a-second on_metrics
report, ~35k instructions each) weighs ~50x more per chunk here than in a real run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from typing import Dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import _server, bench_throughput  # noqa: E402

CLIENTS: Dict[str, str] = {
    "off": bench_throughput.OFF,
    "metrics": "streamcoord, track_metrics",
    "all": "streamcoord, all features",
    "callbacks": bench_throughput.CALLBACKS_FLOOR,
}


def run_one(origin: str, workload: str, client: str, n: int) -> None:
    """In the child: one stream of ``n`` chunks by one client."""
    options = bench_throughput.WORKLOADS[workload]
    fn = bench_throughput.clients(recovery=False, sdk=False)[CLIENTS[client]]
    got = fn(_server.url(origin, n=n, **options), options["provider"])
    assert got == n, (workload, client, got, n)


def instructions(origin: str, workload: str, client: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", sys.executable,
         os.path.abspath(__file__), "--child", origin, workload, client, str(n)],
        capture_output=True, text=True, check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    assert found, out.stderr[-2000:]
    return int(found.group(1).replace(",", ""))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        origin, workload, client, n = sys.argv[2:6]
        run_one(origin, workload, client, int(n))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=list(bench_throughput.WORKLOADS) + ["all"], default="all")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated: " + ", ".join(CLIENTS))
    parser.add_argument("--short", type=int, default=2_000)
    parser.add_argument("--long", type=int, default=22_000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    names = args.clients.split(",")
    for name in names:
        if name not in CLIENTS:
            sys.exit(f"unknown client {name!r}; choose from {', '.join(CLIENTS)}")
    proc, origin = _server.start()
    try:
        for workload in (bench_throughput.SUITE_WORKLOADS if args.workload == "all" else [args.workload]):
            print(f"\n{workload}: instructions per chunk ({args.long:,} - {args.short:,} chunks), "
                  f"Python {sys.version.split()[0]}")
            off = None
            for name in names:
                per_chunk = (instructions(origin, workload, name, args.long)
                             - instructions(origin, workload, name, args.short)) / (args.long - args.short)
                off = per_chunk if name == "off" else off
                vs = f"{per_chunk / off - 1:+.1%} vs off" if off is not None and name != "off" else ""
                print(f"  {CLIENTS[name]:48} {per_chunk:>10,.0f} instructions/chunk {vs:>14}", flush=True)
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
