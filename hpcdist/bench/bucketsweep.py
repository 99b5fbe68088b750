"""The bucket-size sweep (median and spread per size, in one run) and the small-bucket
crossover table of `python -m hpcdist.bench allreduce`."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from .workloads import WORKLOADS, timed


def sweep(comm, workload: str, spec: str, budget: float, repeat: int = 1) -> int:
    """Time the uncompressed exchange at several bucket sizes (to choose the default).

    repeat > 1: every size's exchange is built once, then the sizes are timed in
    alternation `repeat` times (one sample = the median of a few calls, the slowest
    rank's), so a burst of load from other processes hits every size alike; a row
    gives the median over the samples and their spread (min-max and quartiles)."""
    import hpcdist

    sizes = WORKLOADS[workload]()
    buckets = [int(float(x)) for x in spec.split(",")]
    if repeat > 1:
        return _sweep_repeated(comm, sizes, workload, buckets, budget, repeat)
    if comm.rank == 0:
        print(f"\n## bucket sweep, {workload}, world size {comm.size}")
        print("| bucket bytes | time ms |\n|---|---|")
    for bb in buckets:
        with hpcdist.AllreduceExchange(comm, bucket_bytes=bb) as ex:
            ex.attach([np.zeros(s, np.float32) for s in sizes])
            t = timed(comm, ex.synchronize, int(max(5, budget / 0.02)))
        if comm.rank == 0:
            print(f"| {bb} | {t * 1e3:.2f} |", flush=True)
    return 0


def _sweep_repeated(comm, sizes, workload: str, buckets: list, budget: float, repeat: int):
    import hpcdist

    exchanges = []
    try:
        for bb in buckets:
            ex = hpcdist.AllreduceExchange(comm, bucket_bytes=bb)
            exchanges.append(ex)
            ex.attach([np.zeros(s, np.float32) for s in sizes])
            ex.synchronize()  # warm-up
        first = timed(comm, exchanges[0].synchronize, 1, warmup=0)
        iters = int(max(1, min(20, budget / max(first, 1e-6) / repeat)))
        samples = np.empty((repeat, len(buckets)))
        for r in range(repeat):
            for j, ex in enumerate(exchanges):
                samples[r, j] = timed(comm, ex.synchronize, iters, warmup=0)
    finally:
        for ex in exchanges:
            ex.close()
    if comm.rank == 0:
        print(sweep_table(workload, comm.size, buckets, samples, iters), flush=True)
    return 0


def sweep_table(workload: str, n: int, buckets: list, samples: np.ndarray, iters: int) -> str:
    """The repeated sweep's markdown table: per size, median and spread of samples[:, j] (s)."""
    ms = samples * 1e3
    med = np.median(ms, axis=0)
    best = int(np.argmin(med))
    lines = [
        f"\n## bucket sweep, {workload}, world size {n}, {len(ms)} alternating rounds "
        f"(a sample: median of {iters} calls, slowest rank)",
        "| bucket bytes | median ms | min-max ms | IQR ms | x best median |",
        "|---|---|---|---|---|",
    ]
    for j, bb in enumerate(buckets):
        q1, q3 = np.percentile(ms[:, j], [25, 75])
        lines.append(
            f"| {bb} | {med[j]:.2f} | {ms[:, j].min():.2f}-{ms[:, j].max():.2f} | "
            f"{q1:.2f}-{q3:.2f} | {med[j] / med[best]:.2f} |"
        )
    lines.append(f"best median: {buckets[best]} bytes")
    return "\n".join(lines)


def crossover(comm) -> int:
    """One small tensor: shared-window path against the library's Iallreduce inside the
    exchange (small_bytes), and a bare blocking Allreduce, in microseconds."""
    import hpcdist

    rows = []
    for nbytes in (1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20):
        row = [nbytes]
        for small in (0, 1 << 30):
            with hpcdist.AllreduceExchange(comm, small_bytes=small, check_every=0) as ex:
                ex.attach([np.zeros(nbytes // 4, np.float32)])
                row.append(timed(comm, ex.synchronize, 200, warmup=20) * 1e6)
        buf = np.zeros(nbytes // 4, np.float32)
        row.append(timed(comm, lambda b=buf: comm.Allreduce(MPI.IN_PLACE, b), 200, 20) * 1e6)
        rows.append(row)
    if comm.rank == 0:
        print(f"\n## small-bucket crossover, world size {comm.size} (microseconds)")
        print("| bytes | exchange, shared window | exchange, Iallreduce | bare Allreduce |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} |", flush=True)
    return 0
