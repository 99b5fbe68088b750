"""Input pipeline samples/s against a raw sequential h5py read of the same shards."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
from mpi4py import MPI


def make_shards(directory: str, shards: int, records: int, dim: int, chunk_rows: int) -> None:
    """Random float32 features, int64 labels, one manifest (written by rank 0)."""
    from hpcdist.data.convert import write_shards

    rng = np.random.default_rng(0)
    x = rng.random((shards * records, dim), dtype=np.float32)
    y = rng.integers(0, 10, shards * records)
    write_shards(x, y, directory, shards, chunk_rows)


def raw_read(source, comm, block: int, rdcc_nbytes: int = 1 << 20) -> tuple[float, int]:
    """Each rank reads whole shards (round robin) in `block`-row slices, in order."""
    import h5py

    n = 0
    comm.Barrier()
    start = time.perf_counter()
    for i in range(comm.rank, len(source.paths), comm.size):
        with h5py.File(source.paths[i], "r", rdcc_nbytes=rdcc_nbytes) as f:
            x, y = f["features"], f["labels"]
            for a in range(0, len(x), block):
                n += len(x[a : a + block]) + 0 * len(y[a : a + block])
    return _finish(comm, start, n)


def make_pipeline(source, comm, args):
    from hpcdist.data import InputPipeline

    return InputPipeline(
        source,
        args.batch,
        seed=0,
        comm=comm,
        shuffle_buffer=args.shuffle_buffer,
        num_threads=args.threads,
        block_size=args.block,
    )


def pipeline_read(pipe, comm, epoch: int) -> tuple[float, int, float]:
    """One epoch of InputPipeline: readers -> shuffle queue -> batches."""
    n = 0
    comm.Barrier()
    start = time.perf_counter()
    for x, _ in pipe.epoch(epoch):
        n += len(x)
    seconds, total = _finish(comm, start, n)
    wait = pipe.stats.reduced()["wait_s"] / comm.size
    return seconds, total, wait


def _finish(comm, start: float, n: int) -> tuple[float, int]:
    seconds = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    return seconds, comm.allreduce(n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hpcdist.bench reader", description=__doc__)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--records", type=int, default=25000, help="records per shard")
    ap.add_argument("--dim", type=int, default=784)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--shuffle-buffer", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=2, help="reader threads per rank")
    ap.add_argument("--block", type=int, default=4096, help="rows per read (plan block, raw)")
    ap.add_argument("--readers", default="auto", choices=["auto", "threads", "processes"])
    ap.add_argument("--chunk-rows", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="reuse shards here (made if missing); default a temp dir")
    args = ap.parse_args(argv)

    from hpcdist.data import HDF5Source

    comm = MPI.COMM_WORLD
    own = args.dir is None
    directory = comm.bcast(
        tempfile.mkdtemp(prefix="hpcdist-bench-") if own and comm.rank == 0 else args.dir, root=0
    )
    if comm.rank == 0 and not os.path.exists(os.path.join(directory, "manifest.json")):
        make_shards(directory, args.shards, args.records, args.dim, args.chunk_rows)
    comm.Barrier()
    source = HDF5Source(directory)
    raw_read(source, comm, args.block)  # warm the page cache
    start = time.perf_counter()
    pipe = make_pipeline(source, comm, args)
    pipeline_read(pipe, comm, epoch=0)  # starts the reader processes; warms the queue memory
    first = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    raws, pipes = [], []
    for r in range(args.repeat):
        raws.append(raw_read(source, comm, args.block))
        pipes.append(pipeline_read(pipe, comm, epoch=r + 1))
    pipe.close()
    source.close()
    if comm.rank == 0:
        _report(args, comm.size, raws, pipes)
        print(f"first epoch (process start-up, cold queue memory): {first:.2f} s")
        if own:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


def _report(args, size: int, raws, pipes) -> None:
    mb = args.dim * 4 / 1e6
    print(
        f"reader benchmark: {size} rank(s), {args.shards} shards x {args.records} x "
        f"{args.dim} float32, batch {args.batch}, shuffle buffer {args.shuffle_buffer}, "
        f"{args.threads} reader(s)/rank ({args.readers}), blocks of {args.block} rows"
    )
    print(f"{'run':>4} {'raw h5py':>18} {'pipeline':>18} {'ratio':>6} {'trainer wait':>13}")
    for i, ((rs, rn), (ps, pn, wait)) in enumerate(zip(raws, pipes, strict=True)):
        print(
            f"{i:>4} {rn / rs / 1e6:8.3f} M/s {rn / rs * mb / 1e3:4.2f} GB/s "
            f"{pn / ps / 1e6:8.3f} M/s {pn / ps * mb / 1e3:4.2f} GB/s "
            f"{(pn / ps) / (rn / rs):6.2f} {wait:11.2f} s"
        )
    best_raw = max(n / s for s, n in raws)
    best_pipe = max(n / s for s, n, _ in pipes)
    print(
        f"best: raw {best_raw / 1e6:.3f} M samples/s, pipeline {best_pipe / 1e6:.3f} "
        f"M samples/s, ratio {best_pipe / best_raw:.2f}"
    )
