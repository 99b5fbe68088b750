"""Parameter-server benchmark: shard balance, exchange time against allreduce, a slowed worker.

    python -m hpcdist.bench ps                       # all three parts (starts mpiexec itself)
    python -m hpcdist.bench ps --part balance        # (a) busiest / mean bytes, 2-4 ps
    mpiexec -n 4 python -m hpcdist.bench ps --part exchange --ps 1   # (b) one world size
    mpiexec -n 5 python -m hpcdist.bench ps --part straggler         # (c) 1 ps + 4 workers
    mpiexec -n 3 python -m hpcdist.bench ps --part transport         # (d) 1 ps + n - 1 workers

(a) greedy and round-robin placement of the ResNet-50-like list (161 tensors,
25.6M floats). (b) seconds per step of push + pull (PsSyncExchange, P ps and
n - P workers) against AllreduceExchange.synchronize() over all n ranks, on
the same list, in one job; the median over steps of the slowest worker. (c)
four workers "compute" a step by sleeping 20 ms (one sleeps 100 ms); the fast
workers' median step time under plain sync, sync with one backup
(replicas_to_aggregate 3) and async (staleness bound larger than the run),
relative to the same mode with no slow worker. (d) the transport alone, the
two designs side by side on rank 0 as the one ps and the list as one flat
float32 buffer per worker: two-sided (each worker Isends its gradient, the ps
receives with Mprobe/Mrecv, sums in float32 and Isends the sum back, as
hpcdist.ps.transport does) against one-sided RMA (each worker Accumulates its
gradient into the ps's window under a shared lock, the ps copies the sum out
after a barrier, each worker Gets it); the median over steps of the slowest
worker, every step's result checked exactly (integer-valued gradients).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from mpi4py import MPI

from .allreduce import resnet50_like

STEP_S, SLOW_FACTOR = 0.020, 5
#: float32 elements per MPI_Accumulate and MPI_Get in (d) (one 102 MB Get failed an
#: assertion in MPICH 5.0.2's yaksa unpack).
RMA_PIECE = 1 << 20


def balance() -> None:
    from ..ps.sharding import shard_plan

    shapes = [(n,) for n in resnet50_like()]
    print("(a) ResNet-50-like list: busiest ps / mean bytes")
    print(f"{'ps':>4} {'greedy':>8} {'round-robin':>12}")
    for nps in (2, 3, 4):
        g = shard_plan(shapes, nps).imbalance()
        r = shard_plan(shapes, nps, policy="round-robin").imbalance()
        print(f"{nps:>4} {g:>8.4f} {r:>12.4f}")


def _roles(nps: int):
    from .. import cluster

    return cluster.Cluster(cluster.ClusterSpec({"ps": nps, "worker": None}))


def _ps_exchange(roles, kind="sync", **kw):
    from ..ps import PsAsyncExchange, PsSyncExchange

    cls = PsSyncExchange if kind == "sync" else PsAsyncExchange
    return cls(roles, samples_per_step=1, **kw)


def _drive(ex, roles, sizes, steps: int, work_s: float, per_epoch: int) -> list[float]:
    """Workers: `steps` synchronize() calls after `work_s` of 'compute'; their times."""
    from .. import nn

    params = [nn.Parameter(f"p{i}", np.full(n, 0.01, np.float32)) for i, n in enumerate(sizes)]
    grads = ex.attach(params)
    for g in grads:
        g[...] = 1e-3
    ex.broadcast_parameters([p.data for p in params])
    ex.bind_optimizer(nn.SGD(params, 1e-3), nn.ConstantLR(1e-3), per_epoch)
    times = []
    for _ in range(steps):
        time.sleep(work_s)
        t = time.perf_counter()
        ex.synchronize()
        times.append(time.perf_counter() - t + work_s)
    return times


def _allreduce_step(comm, sizes, steps: int) -> float:
    """AllreduceExchange.synchronize() over every rank of comm on `sizes`: the median over
    steps (two warm-up steps left out) of the slowest rank's seconds."""
    import hpcdist

    with hpcdist.AllreduceExchange(comm) as ar:
        grads = ar.attach([np.zeros(n, np.float32) for n in sizes])
        for g in grads:
            g[...] = 1.0
        times = []
        for _ in range(steps + 2):
            comm.Barrier()
            t = time.perf_counter()
            ar.synchronize()
            times.append(time.perf_counter() - t)
    return _slowest(comm, float(np.median(times[2:])))


def exchange(nps: int, steps: int) -> None:
    comm = MPI.COMM_WORLD
    sizes = resnet50_like()
    ar_s = _allreduce_step(comm, sizes, steps)
    roles = _roles(nps)
    ex = _ps_exchange(roles)
    if roles.task.job == "ps":
        ex.serve()
        ps_s = 0.0
    else:
        ps_s = float(np.median(_drive(ex, roles, sizes, steps + 2, 0.0, steps + 2)[2:]))
        ex.close()
    ps_s = _slowest(comm, ps_s)
    if comm.rank == 0:
        w = comm.size - nps
        print(
            f"(b) {comm.size} ranks, 102 MB list: AllreduceExchange over {comm.size} ranks "
            f"{ar_s * 1e3:.1f} ms/step; ps-sync {nps} ps + {w} workers push+pull "
            f"{ps_s * 1e3:.1f} ms/step ({ps_s / ar_s:.2f}x)"
        )


def straggler(steps: int) -> None:
    comm = MPI.COMM_WORLD
    sizes = [65536, 65536, 4096, 256]  # a small model: the step is the compute
    modes = [("plain sync", "sync", {}), ("sync, 1 backup", "sync", {"replicas_to_aggregate": 3})]
    modes.append(("async", "async", {"staleness": 10 * steps}))
    rows = []
    for label, kind, kw in modes:
        rates = []
        for slow in (None, 1):
            roles = _roles(1)
            ex = _ps_exchange(roles, kind, **kw)
            me = roles.task
            if me.job == "ps":
                ex.serve()
                mine = np.nan
            else:
                work = STEP_S * (SLOW_FACTOR if me.index == slow else 1)
                mine = float(np.median(_drive(ex, roles, sizes, steps, work, steps)[:-1]))
                ex.close()
                mine = np.nan if me.index == slow else mine
            every = comm.allgather(mine)
            rates.append(1.0 / np.nanmax(every))  # the slowest of the fast workers
        rows.append((label, rates[0], rates[1]))
    if comm.rank == 0:
        print(
            f"(c) 4 workers, {STEP_S * 1e3:.0f} ms steps, worker 1 slowed {SLOW_FACTOR}x: "
            "the other workers' steps/s"
        )
        print(f"{'mode':<16} {'unslowed':>9} {'slowed':>8} {'ratio':>6}")
        for label, base, slowed in rows:
            print(f"{label:<16} {base:>9.1f} {slowed:>8.1f} {slowed / base:>6.2f}")


def _two_sided(comm, grad, out, steps: int) -> list[float]:
    """Rank 0 sums the workers' gradients (Mprobe/Mrecv) and sends the sum back."""
    times = []
    if comm.rank == 0:
        slot, total = np.empty(out.size, np.float32), np.empty(out.size, np.float32)
    for _ in range(steps):
        comm.Barrier()
        t = time.perf_counter()
        if comm.rank == 0:
            total[...] = 0.0
            for _ in range(comm.size - 1):
                msg = comm.mprobe(MPI.ANY_SOURCE, 7)
                msg.Recv(slot)
                total += slot
            MPI.Request.Waitall([comm.Isend(total, w, 8) for w in range(1, comm.size)])
        else:
            req = comm.Isend(grad, 0, 7)
            comm.Recv(out, 0, 8)
            req.Wait()
        times.append(time.perf_counter() - t)
    return times


def _one_sided(comm, grad, out, steps: int) -> list[float]:
    """Each worker Accumulates into rank 0's window; rank 0 copies the sum out; workers Get."""
    n = out.size if comm.rank == 0 else 0  # the window lives on rank 0
    acc_win = MPI.Win.Allocate(n * 4, 4, comm=comm)
    sum_win = MPI.Win.Allocate(n * 4, 4, comm=comm)
    acc = np.frombuffer(acc_win.tomemory(), np.float32)
    total = np.frombuffer(sum_win.tomemory(), np.float32)
    times = []
    for _ in range(steps):
        if comm.rank == 0:
            acc_win.Lock(0, MPI.LOCK_EXCLUSIVE)
            acc[...] = 0.0
            acc_win.Unlock(0)
        comm.Barrier()
        t = time.perf_counter()
        if comm.rank != 0:
            acc_win.Lock(0, MPI.LOCK_SHARED)
            for lo in range(0, grad.size, RMA_PIECE):
                piece = grad[lo : lo + RMA_PIECE]
                acc_win.Accumulate(piece, 0, target=(lo, piece.size, MPI.FLOAT), op=MPI.SUM)
            acc_win.Unlock(0)
        comm.Barrier()  # every gradient is in
        if comm.rank == 0:
            for win, lock in ((acc_win, MPI.LOCK_SHARED), (sum_win, MPI.LOCK_EXCLUSIVE)):
                win.Lock(0, lock)
            total[...] = acc
            sum_win.Unlock(0)
            acc_win.Unlock(0)
        comm.Barrier()  # the sum is out
        if comm.rank != 0:
            sum_win.Lock(0, MPI.LOCK_SHARED)
            for lo in range(0, out.size, RMA_PIECE):
                piece = out[lo : lo + RMA_PIECE]
                sum_win.Get(piece, 0, target=(lo, piece.size, MPI.FLOAT))
            sum_win.Unlock(0)
        times.append(time.perf_counter() - t)
    comm.Barrier()
    acc_win.Free()
    sum_win.Free()
    return times


def transport(steps: int) -> int:
    """(d): both designs on the same ranks, buffers and steps; 1 if a sum is wrong."""
    from .. import runtime

    runtime.init()  # an error on one rank ends the job
    comm = MPI.COMM_WORLD
    n = int(sum(resnet50_like()))
    workers = comm.size - 1
    grad = np.full(n if comm.rank else 0, float(comm.rank), np.float32)  # worker w sends w
    want = float(workers * (workers + 1) // 2)  # 1 + 2 + ... + W, exact in float32
    rows, bad = [], 0
    for label, run in (
        ("two-sided Mprobe/Mrecv", _two_sided),
        ("one-sided Accumulate/Get", _one_sided),
    ):
        out = np.zeros(n, np.float32)  # on rank 0: the size of the buffers it receives
        times = run(comm, grad, out, steps + 2)
        bad += int(comm.allreduce(int(comm.rank != 0 and not np.all(out == want))))
        rows.append((label, _slowest(comm, float(np.median(times[2:])))))
    ar_s = _allreduce_step(comm, resnet50_like(), steps)
    if comm.rank == 0:
        print(f"(d) transport, 1 ps + {workers} workers, {n * 4 / 1e6:.0f} MB per worker:")
        for label, sec in rows:
            print(
                f"    {label:<26} {sec * 1e3:8.1f} ms/step ({sec / rows[0][1]:.2f}x two-sided, "
                f"{sec / ar_s:.2f}x allreduce)"
            )
        print(f"    {'AllreduceExchange, list':<26} {ar_s * 1e3:8.1f} ms/step ({comm.size} ranks)")
        print(f"    sums checked on every worker: {'ok' if not bad else f'{bad} WRONG'}")
    return 1 if bad else 0


def _slowest(comm, seconds: float) -> float:
    return max(comm.allgather(seconds))


def _spawn(n: int, rest: list[str]) -> int:
    import subprocess

    from ..launcher import clean_env, mpiexec

    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", "hpcdist.bench", "ps", *rest]
    return subprocess.call(cmd, env=clean_env())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m hpcdist.bench ps", description=__doc__.split("\n")[0]
    )
    parts = ("all", "balance", "exchange", "straggler", "transport")
    p.add_argument("--part", choices=parts, default="all")
    p.add_argument("--ps", type=int, default=1, help="ps tasks for --part exchange")
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)
    if args.part in ("all", "balance") and MPI.COMM_WORLD.rank == 0:
        balance()
    if args.part == "all":
        codes = [
            _spawn(n, ["--part", "exchange", "--ps", str(nps), "--steps", str(args.steps)])
            for n, nps in ((3, 1), (4, 1), (4, 2))
        ]
        codes.append(_spawn(5, ["--part", "straggler", "--steps", str(args.steps)]))
        codes += [_spawn(n, ["--part", "transport", "--steps", str(args.steps)]) for n in (3, 4)]
        return max(codes, key=lambda rc: rc != 0)  # the first failure's exit status, else 0
    if args.part == "exchange":
        exchange(args.ps, args.steps)
    elif args.part == "straggler":
        straggler(args.steps)
    elif args.part == "transport":
        return transport(args.steps)
    return 0
