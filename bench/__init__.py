"""Benchmarks of issue 7: ``python -m bench`` runs them all at full size and writes RESULTS.md.

Each ``bench/bench_<name>.py`` measures one figure through the project's real pieces beside a
bound measured in the same run; see :mod:`bench.common` for the shape a benchmark has.
"""
