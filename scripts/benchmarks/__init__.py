"""The benchmarks of `segsuite benchmark` (see scripts/benchmark.py), one module per suite: each measures real work
as a ratio in one run and prints its table."""
