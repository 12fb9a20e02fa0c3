"""The whole benchmark suite, one command, one table.

    python -m benchmarks [--quick] [--only NAME ...]

Runs every module of ``BENCHES`` in a fresh Python process of its own (so that one
benchmark's threads, memory and imports never weigh on the next), each against its
baselines in the same run, and prints one table. ``--quick`` is a smoke run of about two
minutes (smaller streams, fewer rounds); the full run takes about 15 minutes on a quiet
2-core machine.

A module in ``BENCHES`` has ``rows(quick: bool) -> list of dicts`` with the keys of
``COLUMNS``. A standalone script without ``rows`` may be listed too: it is then run as
``python -m MODULE`` (plus ``--quick`` if the suite is quick) and its output is printed
below the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The suite, in the order of the table. Add a module here to add it to the table.
BENCHES: List[str] = [
    "benchmarks.bench_throughput",
    "benchmarks.bench_latency",
    "benchmarks.bench_import",
    "benchmarks.bench_concurrency",
    "benchmarks.bench_memory",
    "benchmarks.bench_live_latency",
]
COLUMNS = {"bench": "benchmark", "client": "client", "figure": "figure", "ratio": "vs baseline", "cpu": "client CPU"}
_CHILD = ("import json, sys; sys.path.insert(0, {root!r}); import importlib; "
          "rows = importlib.import_module({module!r}).rows({quick}); print('\\n' + json.dumps(rows))")


def run_one(module: str, quick: bool) -> List[Dict[str, str]]:
    """The module's rows, from a fresh process; a standalone script's output as one row."""
    import importlib

    has_rows = hasattr(importlib.import_module(module), "rows")
    if not has_rows:
        cmd = [sys.executable, "-m", module] + (["--quick"] if quick else [])
        out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        print(out.stdout, flush=True)
        return []
    code = _CHILD.format(root=ROOT, module=module, quick=quick)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if out.returncode:
        return [{"bench": module, "client": "", "figure": f"FAILED (exit {out.returncode})", "ratio": "", "cpu": ""}]
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: List[Dict[str, str]]) -> str:
    """A markdown table; a benchmark's name is printed on its first row only."""
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    last = None
    for row in rows:
        cells = [row.get(key, "") for key in COLUMNS]
        if cells[0] == last:
            cells[0] = ""
        else:
            last = cells[0]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of about two minutes")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these modules (e.g. bench_latency)")
    args = parser.parse_args()
    started = time.perf_counter()
    rows: List[Dict[str, str]] = []
    loads = [load()]
    for module in BENCHES:
        if args.only and module.rsplit(".", 1)[-1] not in args.only:
            continue
        print(f"running {module} (load average {load()}) ...", file=sys.stderr, flush=True)
        rows += run_one(module, args.quick)
        loads.append(load())
    print(f"\nstreamcoord benchmarks{' (quick)' if args.quick else ''}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, {time.perf_counter() - started:.0f}s; load average (1, 5, 15 min) "
          f"at the start {loads[0]}, at the end {loads[-1]}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
