"""Input pipeline samples/s against a raw sequential h5py read of the same shards."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
from mpi4py import MPI


def make_shards(
    directory: str, shards: int, records: int, dim: int, chunk_rows: int, compression=None
) -> None:
    """Random float32 features, int64 labels, one manifest (written by rank 0)."""
    from hpcdist.data.convert import write_shards

    rng = np.random.default_rng(0)
    x = rng.random((shards * records, dim), dtype=np.float32)
    y = rng.integers(0, 10, shards * records)
    write_shards(x, y, directory, shards, chunk_rows, compression=compression)


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


def make_pipeline(source, comm, args, readers: str):
    from hpcdist.data import InputPipeline

    return InputPipeline(
        source,
        args.batch,
        seed=0,
        comm=comm,
        shuffle_buffer=args.shuffle_buffer,
        num_threads=args.threads,
        block_size=args.block,
        readers=readers,
    )


def pipeline_read(pipe, comm, guard, epoch: int) -> tuple[float, int, float]:
    """One epoch of InputPipeline: readers -> shuffle -> batches."""
    n = 0
    comm.Barrier()
    start = time.perf_counter()
    for x, _ in pipe.epoch(epoch):
        n += len(x)
    seconds, total = _finish(comm, start, n)
    wait = pipe.stats.reduced(guard)["wait_s"] / comm.size
    return seconds, total, wait


def _finish(comm, start: float, n: int) -> tuple[float, int]:
    seconds = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    return seconds, comm.allreduce(n)


def _args(argv):
    from hpcdist.data.pipeline import READERS

    ap = argparse.ArgumentParser(prog="python -m hpcdist.bench reader", description=__doc__)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--records", type=int, default=25000, help="records per shard")
    ap.add_argument("--dim", type=int, default=784)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--shuffle-buffer", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=2, help="reader threads per rank")
    ap.add_argument("--block", type=int, default=4096, help="rows per read (plan block, raw)")
    ap.add_argument(
        "--readers",
        default="auto",
        help=f"a read path, or several comma-separated, run in turn ({', '.join(READERS)})",
    )
    ap.add_argument("--chunk-rows", type=int, default=1024)
    ap.add_argument("--compression", help="compress the generated shards (gzip, lzf)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="reuse shards here (made if missing); default a temp dir")
    args = ap.parse_args(argv)
    args.paths = args.readers.split(",")
    bad = [r for r in args.paths if r not in READERS]
    if bad:
        ap.error(f"--readers: {bad} not among {READERS}")
    return args


def main(argv=None) -> int:
    from hpcdist.data import HDF5Source
    from hpcdist.guard import Guard

    args = _args(argv)
    comm = MPI.COMM_WORLD
    guard = Guard(comm, name="bench reader")
    own = args.dir is None
    directory = comm.bcast(
        tempfile.mkdtemp(prefix="hpcdist-bench-") if own and comm.rank == 0 else args.dir, root=0
    )
    if comm.rank == 0 and not os.path.exists(os.path.join(directory, "manifest.json")):
        make_shards(
            directory, args.shards, args.records, args.dim, args.chunk_rows, args.compression
        )
    comm.Barrier()
    source = HDF5Source(directory)
    args.compression = _filters(source.paths[0])
    raw_read(source, comm, args.block)  # warm the page cache
    pipes, firsts = {}, {}
    for name in args.paths:  # first epochs: process start-up, cold memory
        start = time.perf_counter()
        pipes[name] = make_pipeline(source, comm, args, name)
        pipeline_read(pipes[name], comm, guard, epoch=0)
        firsts[name] = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    raws, runs = [], {name: [] for name in args.paths}
    for r in range(args.repeat):
        raws.append(raw_read(source, comm, args.block))
        for name, pipe in pipes.items():
            runs[name].append(pipeline_read(pipe, comm, guard, epoch=r + 1))
    used = {name: pipe.read_path for name, pipe in pipes.items()}
    for pipe in pipes.values():
        pipe.close()
    source.close()
    guard.free()
    if comm.rank == 0:
        _report(args, comm.size, raws, runs, used, firsts)
        if own:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


def _filters(path: str) -> str | None:
    """The compression filter of a shard's features, as the report names it."""
    import h5py

    with h5py.File(path, "r") as f:
        return f["features"].compression


def _report(args, size: int, raws, runs: dict, used: dict, firsts: dict) -> None:
    mb = args.dim * 4 / 1e6
    print(
        f"reader benchmark: {size} rank(s), {args.shards} shards x {args.records} x "
        f"{args.dim} float32{f' ({args.compression})' if args.compression else ''}, batch "
        f"{args.batch}, shuffle buffer {args.shuffle_buffer}, {args.threads} reader(s)/rank, "
        f"blocks of {args.block} rows"
    )
    best_raw = max(n / s for s, n in raws)
    for name, pipes in runs.items():
        print(f"readers={name} (read path {used[name]}):")
        print(f"{'run':>4} {'raw h5py':>18} {'pipeline':>18} {'ratio':>6} {'trainer wait':>13}")
        for i, ((rs, rn), (ps, pn, wait)) in enumerate(zip(raws, pipes, strict=True)):
            print(
                f"{i:>4} {rn / rs / 1e6:8.3f} M/s {rn / rs * mb / 1e3:4.2f} GB/s "
                f"{pn / ps / 1e6:8.3f} M/s {pn / ps * mb / 1e3:4.2f} GB/s "
                f"{(pn / ps) / (rn / rs):6.2f} {wait:11.2f} s"
            )
        best_pipe = max(n / s for s, n, _ in pipes)
        print(
            f"best: raw {best_raw / 1e6:.3f} M samples/s, pipeline ({name}) {best_pipe / 1e6:.3f} "
            f"M samples/s, ratio {best_pipe / best_raw:.2f}; first epoch {firsts[name]:.3f} s"
        )
