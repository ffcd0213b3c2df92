"""Benchmark harness: ``python -m perf SUITE [--quick]`` (see perf/README.md)."""
