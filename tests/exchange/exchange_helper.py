"""Helper job for the exchange launcher tests: `python exchange_helper.py MODE [args]`.

Modes:
  check        every op/dtype/compression against a float64 reference; prints OK per rank
  error        relative error of fp16 and bf16 averages (rank 0 prints 'ERR name value')
  mismatch     rank 1 submits another shape; every rank prints the ExchangeError it got
  missing R K  rank R never calls synchronize (exchange with check_every=K); the others time out
"""

import sys
import time

import numpy as np

import hpcdist
from hpcdist.errors import ExchangeError

SHAPES = [(33, 7), (0,), (5000,), (3, 4, 5), (1,), (40000,)]


def data(rank: int, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(1000 * seed + rank)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def reference(size: int, op: str, seed: int = 0, dtype=np.float32):
    every = [data(r, seed, dtype) for r in range(size)]
    sums = [sum(e[i].astype(np.float64) for e in every) for i in range(len(SHAPES))]
    return [s / size for s in sums] if op == "average" else sums


def rel(out, ref) -> float:
    num = sum(float(np.sum((o.astype(np.float64) - r) ** 2)) for o, r in zip(out, ref, strict=True))
    den = sum(float(np.sum(r**2)) for r in ref)
    return (num / den) ** 0.5


def check(comm) -> None:
    bounds = {"none": 1e-6, "fp16": 2e-3, "bf16": 1.6e-2}
    for comp, bound in bounds.items():
        for op in ("sum", "average"):
            out = hpcdist.grouped_allreduce(data(comm.rank), op=op, compression=comp)
            err = rel(out, reference(comm.size, op))
            assert err <= bound, f"grouped {comp} {op}: {err}"
        with hpcdist.AllreduceExchange(compression=comp, bucket_bytes=16 << 10) as ex:
            grads = ex.attach([np.zeros(s, np.float32) for s in SHAPES])
            for step in range(3):
                for g, d in zip(grads, data(comm.rank, step), strict=True):
                    g[...] = d
                ex.synchronize()
                err = rel(grads, reference(comm.size, "average", step))
                assert err <= bound, f"exchange {comp} step {step}: {err}"
    print(f"rank {comm.rank}: OK nodes={hpcdist.rank_info().num_nodes}", flush=True)


def error(comm) -> None:
    for comp in ("fp16", "bf16"):
        out = hpcdist.grouped_allreduce(data(comm.rank, 7), op="average", compression=comp)
        err = rel(out, reference(comm.size, "average", 7))
        if comm.rank == 0:
            print(f"ERR {comp} {err:.6e}", flush=True)


def mismatch(comm) -> None:
    shapes = [(10,), (4, 4)] if comm.rank != 1 else [(10,), (4, 5)]
    start = time.monotonic()
    try:
        hpcdist.grouped_allreduce([np.ones(s, np.float32) for s in shapes])
    except ExchangeError as exc:
        print(f"rank {comm.rank} after {time.monotonic() - start:.1f} s: {exc}", flush=True)
        sys.exit(3)
    print(f"rank {comm.rank}: no error", flush=True)


def missing(comm, who: int, check_every: int) -> None:
    ex = hpcdist.AllreduceExchange(check_every=check_every, bucket_bytes=8 << 10)
    grads = ex.attach([np.zeros(s, np.float32) for s in SHAPES])
    for step in range(3):
        if comm.rank == who and step == 2:
            time.sleep(60)  # stuck elsewhere: never reaches the exchange
        for g in grads:
            g[...] = 1.0
        ex.synchronize()
        print(f"rank {comm.rank}: step {step} done", flush=True)


def main() -> None:
    hpcdist.init()
    comm = hpcdist.runtime.world_comm()
    mode = sys.argv[1]
    if mode == "missing":
        missing(comm, int(sys.argv[2]), int(sys.argv[3]))
    else:
        {"check": check, "error": error, "mismatch": mismatch}[mode](comm)


if __name__ == "__main__":
    main()
