"""What the exchange benchmarks time and how: the tensor lists, and interleaved timing.

A time is the median over rounds of the slowest rank's time (a barrier before
each), variants timed in alternation so they meet the same load.
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

MB = 1e6


def resnet50_like(seed: int = 0) -> list[int]:
    """161 tensor sizes, log-uniform in 64..2.4M, rescaled to 25.6M floats in total."""
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(64), np.log(2.4e6), 161))
    for _ in range(50):
        sizes = np.clip(sizes * 25.6e6 / sizes.sum(), 64, 2.4e6)
    return [int(s) for s in sizes]


WORKLOADS = {
    "resnet50": resnet50_like,
    "small2000": lambda: [256] * 2000,
    "flat100MB": lambda: [25_000_000],
}


def timed(comm, fn, iters: int, warmup: int = 2) -> float:
    """Median over iterations of the slowest rank's seconds for fn()."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        comm.Barrier()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    worst = np.array(times)
    comm.Allreduce(MPI.IN_PLACE, worst, op=MPI.MAX)
    return float(np.median(worst))


def interleaved(comm, fns: dict, budget_s: float) -> dict:
    """Median seconds per call of each fn, timed in alternation (round after round), so a
    burst of load from other processes hits every variant alike. A sample repeats a fast
    fn until it lasts about 5 ms; its time is the slowest rank's."""
    reps, first = {}, {}
    for name, fn in fns.items():
        fn()  # warm-up: windows, caches, connections
        t = np.array([time.perf_counter()])
        fn()
        t = np.array([time.perf_counter() - t[0]])
        comm.Allreduce(MPI.IN_PLACE, t, op=MPI.MAX)
        first[name], reps[name] = t[0], max(1, int(0.005 / max(t[0], 1e-7)))
    per_round = sum(first[k] * reps[k] for k in fns)
    rounds = int(max(5, min(40, len(fns) * budget_s / max(per_round, 1e-6))))
    samples = {k: np.empty(rounds) for k in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            comm.Barrier()
            t = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            samples[name][r] = (time.perf_counter() - t) / reps[name]
    out = {}
    for name, v in samples.items():
        comm.Allreduce(MPI.IN_PLACE, v, op=MPI.MAX)
        out[name] = float(np.median(v))
    return out
