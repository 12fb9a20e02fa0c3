"""``python -m benchmarks``: the whole suite, one table (see benchmarks/run.py)."""

from benchmarks.run import main

main()
