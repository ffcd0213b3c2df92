"""Benchmark suites: each module ``perf.suites.<name>`` defines ``run(quick=False) -> dict``."""
