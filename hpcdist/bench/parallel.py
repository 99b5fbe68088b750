"""`mpiexec -n K python -m hpcdist.bench parallel`: pipeline bubble, measured and (K-1)/(M+K-1).

Each of the K ranks is one stage of an MLP of equal Dense layers; every
micro-batch has the same number of rows, so each forward (and each backward)
costs the same on every stage, as GPipe's formula assumes. The measured
bubble is 1 - (time in forward and backward, summed over stages) / (K x the
step's wall time), over timed steps after warm-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mpiexec -n K python -m hpcdist.bench parallel")
    ap.add_argument("--micro", default="1,2,4,8", help="micro-batch counts M (default 1,2,4,8)")
    ap.add_argument("--schedules", default="gpipe,1f1b", help="schedules (default both)")
    ap.add_argument("--width", type=int, default=512, help="units of every layer (default 512)")
    ap.add_argument("--layers-per-stage", type=int, default=2, help="Dense layers per stage")
    ap.add_argument("--rows", type=int, default=64, help="rows per micro-batch (default 64)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads per rank (default 1)")
    return ap


def measure(guard, net, schedule: str, micro: int, rows: int, steps: int, warmup: int) -> dict:
    """One (schedule, M) point: the measured and the formula's bubble."""
    from hpcdist.parallel import PipelineModel

    model = PipelineModel(net, guard, micro_batches=micro, schedule=schedule)
    rng = np.random.default_rng(0)
    width = net.parameters()[0].data.shape[0]
    x = rng.standard_normal((rows * micro, width)).astype(np.float32)
    y = rng.integers(0, net.parameters()[-1].data.shape[-1], rows * micro)
    for _ in range(warmup):
        model.train_batch(x, y)
    guard.barrier(what="the timed steps' start")
    busy0, start = model.busy_s, time.perf_counter()
    for _ in range(steps):
        model.train_batch(x, y)
    wall = time.perf_counter() - start
    busy = guard.allreduce(np.array([model.busy_s - busy0]), what="the stages' busy time")[0]
    wall = guard.allreduce(np.array([wall]), op="max", what="the slowest stage's wall time")[0]
    k = guard.size
    return {
        "schedule": schedule,
        "micro": micro,
        "measured": 1.0 - busy / (k * wall),
        "formula": (k - 1) / (micro + k - 1),
        "step_ms": 1e3 * wall / steps,
    }


def main(argv=None) -> int:
    """Entry point: one line per (schedule, M) on rank 0."""
    import hpcdist
    from hpcdist import devices, nn
    from hpcdist.guard import Guard

    args = _parser().parse_args(argv)
    devices.limit_threads(args.threads, hpcdist.init())
    guard = Guard(name="bench parallel")
    k = guard.size
    sizes = [args.width] * (k * args.layers_per_stage + 1)
    net = nn.mlp(sizes, seed=0)
    rows = []
    for schedule in args.schedules.split(","):
        for micro in [int(m) for m in args.micro.split(",")]:
            rows.append(measure(guard, net, schedule, micro, args.rows, args.steps, args.warmup))
    if guard.rank == 0:
        print(
            f"# pipeline bubble: {k} stages x {args.layers_per_stage} Dense {args.width}, "
            f"{args.rows} rows per micro-batch, {args.steps} steps, {args.threads} thread(s) "
            f"per rank; {platform.node()}, {time.strftime('%Y-%m-%d %H:%M')}, load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        print("| schedule | M | measured bubble | (K-1)/(M+K-1) | step ms |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['schedule']} | {r['micro']} | {r['measured']:.3f} | {r['formula']:.3f} "
                f"| {r['step_ms']:.1f} |"
            )
    guard.free()
    return 0
