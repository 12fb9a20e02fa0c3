"""Benchmarks of DESIGN.md's "Performance" section: ``python -m benchmarks`` (see README.md)."""
