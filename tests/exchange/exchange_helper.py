"""Helper job for the exchange launcher tests: `python exchange_helper.py MODE [args]`.

Modes:
  check        every op/dtype/compression against a float64 reference; prints OK per rank
  error        relative error of fp16 and bf16 averages (rank 0 prints 'ERR name value')
  mismatch     rank 1 submits another shape; every rank prints the ExchangeError it got
  missing R K  rank R never calls synchronize (exchange with check_every=K); the others time out
  absent R F   rank R never makes its second call of F (grouped_allreduce or broadcast_parameters)
"""

import sys
import time

import numpy as np

import hpcdist
from hpcdist.errors import ExchangeError

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from exchange_data import node_of  # noqa: E402

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
        # the wire rule below is the hierarchical path's ("auto" may pick flat on one host)
        with hpcdist.AllreduceExchange(
            compression=comp, bucket_bytes=16 << 10, topology="hierarchical"
        ) as ex:
            grads = ex.attach([np.zeros(s, np.float32) for s in SHAPES])
            for step in range(3):
                for g, d in zip(grads, data(comm.rank, step), strict=True):
                    g[...] = d
                ex.synchronize()
                err = rel(grads, reference(comm.size, "average", step))
                assert err <= bound, f"exchange {comp} step {step}: {err}"
            _check_wire(comm, ex, comp)
    print(f"rank {comm.rank}: OK nodes={hpcdist.rank_info().num_nodes}", flush=True)


def _check_wire(comm, ex, comp: str) -> None:
    """The wire count on the runtime's pretend nodes, by the documented rule (shm buckets):
    16 bits between nodes only, whole buckets through the leaders (the job runs 2 + 1)."""
    n, m, leader = node_of(comm.rank, comm.size, None)
    between = 4 if comp == "none" else 2
    want = 0.0
    for b in ex.layout.buckets:
        shm = b.size * 4 >= ex.small_bytes
        if m > 1 and shm:
            want += 2 * (n - 1) * b.size * 4 / n
            want += 2 * (m - 1) * b.size * between / m if leader else 0
        else:
            width = between if m > 1 else 4
            want += 2 * (comm.size - 1) * b.size * width / comm.size
    calls = ex.stats.calls
    assert ex.stats.wire_bytes == calls * round(want), (ex.stats.wire_bytes, calls, want)


def error(comm) -> None:
    """16 bits forced everywhere (one node would keep full width by default)."""
    for comp in ("fp16", "bf16"):
        with hpcdist.AllreduceExchange(compression=comp, compress_within_node=True) as ex:
            grads = ex.attach([np.zeros(s, np.float32) for s in SHAPES])
            for g, d in zip(grads, data(comm.rank, 7), strict=True):
                g[...] = d
            ex.synchronize()
            err = rel(grads, reference(comm.size, "average", 7))  # before the window goes
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


def absent(comm, who: int, what: str) -> None:
    arrays = [np.full(s, comm.rank, np.float32) for s in SHAPES]
    for call in range(2):
        if comm.rank == who and call == 1:
            time.sleep(60)  # stuck elsewhere: never reaches the collective
        if what == "grouped_allreduce":
            hpcdist.grouped_allreduce(arrays)
        else:
            hpcdist.broadcast_parameters(arrays, root=0)
        print(f"rank {comm.rank}: {what} call {call} done", flush=True)


def main() -> None:
    hpcdist.init()
    comm = hpcdist.runtime.world_comm()
    mode = sys.argv[1]
    if mode == "missing":
        missing(comm, int(sys.argv[2]), int(sys.argv[3]))
    elif mode == "absent":
        absent(comm, int(sys.argv[2]), sys.argv[3])
    else:
        {"check": check, "error": error, "mismatch": mismatch}[mode](comm)


if __name__ == "__main__":
    main()
