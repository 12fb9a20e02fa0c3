"""Import time: ``import streamcoord`` against ``import requests`` and the official SDKs.

    python benchmarks/bench_import.py [--times 15]

Each import runs in a fresh interpreter (``python -c``), timed inside it from just before
the import to just after, so the interpreter's own start-up is not counted; the modules are
interleaved and the median of ``--times`` runs is reported. The figure against requests is
the median of each round's difference (streamcoord's import minus requests' in the same
round, run one after the other), so a load that comes and goes on the machine shifts both
imports of a round alike instead of whichever median it happened to land in (so it may
differ by a few ms from the difference of the two time figures printed).
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ["requests", "streamcoord", "openai", "anthropic"]
_TIMED = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"


def compile_checkout() -> None:
    """Byte-compile this checkout's packages first. An installed package has its .pyc files
    (pip writes them); a checkout run with PYTHONDONTWRITEBYTECODE=1 (as some CI images set)
    has none, and would be timed compiling itself from source: +100 ms that no user pays."""
    for package in ("streamcoord", "adapters", "recovery_store"):
        compileall.compile_dir(os.path.join(ROOT, package), quiet=1)


def import_seconds(module: str) -> float:
    out = subprocess.run([sys.executable, "-c", _TIMED.format(module)], cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, text=True)
    return float(out.stdout)


def rows(quick: bool, times: int = 0) -> List[Dict[str, str]]:
    times = times or (5 if quick else 15)
    compile_checkout()
    got: Dict[str, List[float]] = {m: [] for m in MODULES}
    for _ in range(times):
        for module in MODULES:
            got[module].append(import_seconds(module))
    out = []
    for module in MODULES:
        ms = statistics.median(got[module]) * 1000
        over = statistics.median(t - base for t, base in zip(got[module], got["requests"])) * 1000
        out.append({"bench": "import time (fresh interpreter)", "client": f"import {module}", "figure": f"{ms:.0f} ms",
                    "ratio": "" if module == "requests" else f"requests {over:+.0f} ms", "cpu": ""})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", type=int, default=15)
    args = parser.parse_args()
    for row in rows(False, args.times):
        print(f"{row['client']:24} {row['figure']:>8}  {row['ratio']}")


if __name__ == "__main__":
    main()
