"""Benchmarks: `python -m hpcdist.bench {allreduce,reader,train} ...` (see docs/benchmarks.md)."""
