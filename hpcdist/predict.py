"""Replicated inference: `mpirun -n N python -m hpcdist.predict --checkpoint CKPT --output OUT.h5`.

The model (a checkpoint or an int8 file from hpcdist.quantize) is loaded on
every rank, each on its own device (one BLAS thread by default); the input
is split into N contiguous blocks of whole 64-row chunks, one per rank, and
rank 0 gathers the blocks back in input order and writes OUT.h5:
`probabilities` (N, C) float32, `labels` (N,) int64 and, where known,
`targets`. Offline: samples/s over the whole input (the slowest rank's time,
--repeat passes). --server --qps Q: Q queries per second arrive as a Poisson
process, handed to the ranks in turn; each rank answers its queries one at a
time in arrival order, and the latency of a query (arrival to answer,
queueing included) gives p50/p90/p95/p99, as MLPerf LoadGen's Server scenario.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import h5py
import numpy as np

from . import devices, inference, runtime
from .errors import CheckpointError
from .guard import Guard

PERCENTILES = (50, 90, 95, 99)


def read_input(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(features (N, D) float32, targets or None) from X.h5 (x, y), X.npy or X.npz (x, y)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--input: no such file {path}")
    if path.suffix == ".npy":
        x, y = np.load(path), None
    elif path.suffix == ".npz":
        with np.load(path) as z:
            if "x" not in z:
                raise ValueError(f"--input {path}: no array 'x' (has {sorted(z.files)})")
            x, y = z["x"], (z["y"] if "y" in z else None)
    elif path.suffix in (".h5", ".hdf5"):
        with h5py.File(path, "r") as f:
            if "x" not in f:
                raise ValueError(f"--input {path}: no dataset 'x' (has {sorted(f)})")
            x, y = f["x"][...], (f["y"][...] if "y" in f else None)
    else:
        raise ValueError(f"--input {path}: expected a .h5, .npy or .npz file")
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    if y is not None and len(y) != len(x):
        raise ValueError(f"--input {path}: {len(x)} rows of x but {len(y)} of y")
    return x, None if y is None else np.asarray(y).astype(np.int64)


def block(n: int, rank: int, size: int, chunk: int = 1) -> tuple[int, int]:
    """This rank's contiguous block [lo, hi) of n rows, in whole chunks of `chunk` rows.

    The chunks are split as evenly as they go (the first ranks get one more). A
    chunk is one forward pass wherever it runs, so every row sees the same
    matrix shapes, and the same bits, at any number of ranks.
    """
    chunks = -(-n // chunk)
    per, extra = divmod(chunks, size)
    lo = rank * per + min(rank, extra)
    hi = lo + per + (rank < extra)
    return min(lo * chunk, n), min(hi * chunk, n)


def offline(guard: Guard, net, x: np.ndarray, repeat: int, chunk: int) -> tuple[np.ndarray, float]:
    """(this rank's probabilities, samples/s of all ranks together) over `repeat` passes."""
    guard.barrier(what="every rank to be ready for the offline pass")
    start = time.perf_counter()
    for _ in range(repeat):
        probs = inference.probabilities(net, x, batch=chunk)
    elapsed = time.perf_counter() - start
    slowest = guard.allreduce(np.array([elapsed]), op="max", what="the offline times")[0]
    total = guard.allreduce(np.array([len(x)]), what="the offline sample counts")[0]
    return probs, float(total * repeat / slowest) if slowest > 0 else float("inf")


def server(guard: Guard, net, x: np.ndarray, qps: float, queries: int, seed: int) -> dict:
    """Latency percentiles (ms) and the achieved QPS under Poisson arrivals at `qps`."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / qps, queries))  # the same draw on every rank
    mine = np.arange(guard.rank, queries, guard.size)
    inference.probabilities(net, x[:1])  # warm-up
    latencies = np.empty(len(mine))
    guard.barrier(what="every rank to start the server run")
    t0 = time.perf_counter()
    for k, i in enumerate(mine):
        wait = arrivals[i] - (time.perf_counter() - t0)
        if wait > 0:
            time.sleep(wait)
        row = i % len(x)
        inference.probabilities(net, x[row : row + 1])
        latencies[k] = time.perf_counter() - t0 - arrivals[i]
    every = guard.gather((mine, latencies), what="the server latencies")
    if guard.rank != 0:
        return {}
    index = np.concatenate([i for i, _ in every])
    lat = np.concatenate([v for _, v in every])
    span = float((arrivals[index] + lat).max())  # the last answer
    out = {f"p{p}_ms": float(np.percentile(lat * 1e3, p)) for p in PERCENTILES}
    return {**out, "target_qps": qps, "achieved_qps": queries / span, "queries": queries}


def write_output(path: Path, probs: np.ndarray, targets: np.ndarray | None) -> None:
    """OUT.h5: probabilities, labels (argmax) and targets, in input order (atomic rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as f:
        # no timestamps in the file: the same predictions give the same bytes
        kw = {"track_times": False}
        f.create_dataset("probabilities", data=probs.astype(np.float32), **kw)
        f.create_dataset("labels", data=probs.argmax(axis=1).astype(np.int64), **kw)
        if targets is not None:
            f.create_dataset("targets", data=targets, **kw)
    tmp.replace(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hpcdist.predict", description=__doc__.split("\n")[0]
    )
    p.add_argument("--checkpoint", required=True, help="a checkpoint or an int8 file (Q.h5)")
    p.add_argument("--output", help="OUT.h5 to write")
    p.add_argument("--input", help="X.h5 (datasets x, y), X.npy or X.npz (arrays x, y)")
    p.add_argument("--data", help="a data directory (train/, val/); default: the checkpoint's")
    p.add_argument("--split", default="val", help="the split of --data (or the checkpoint's data)")
    p.add_argument("--repeat", type=int, default=1, help="offline passes timed")
    p.add_argument("--chunk", type=int, default=64, help="rows per forward pass")
    p.add_argument("--server", action="store_true", help="also run the Server scenario")
    p.add_argument("--qps", type=float, default=200.0, help="target queries per second")
    p.add_argument("--queries", type=int, default=1000, help="queries in the server run")
    p.add_argument("--seed", type=int, default=0, help="seeds the arrivals")
    p.add_argument(
        "--latency-bound-ms", type=float, help="the run is VALID when p99 stays under this"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, gpu or a device string")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads per rank (1: the same bits at any rank count; a GEMM split over "
        "threads rounds differently)",
    )
    return p


def load_rows(args, model, guard) -> tuple[np.ndarray, np.ndarray | None]:
    if args.input:
        return read_input(args.input)
    directory = Path(args.data) if args.data else model.data_directory(guard)
    return inference.split_arrays(directory, args.split)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    info = runtime.init()
    guard = Guard(runtime.world_comm(), name="predict")
    placement = devices.pin_device(args.device, threads=args.threads)
    error = None
    try:
        if min(args.repeat, args.queries, args.chunk, args.threads) < 1 or args.qps <= 0:
            raise ValueError("--repeat, --queries, --chunk, --threads must be >= 1, --qps > 0")
        model = inference.load_model(args.checkpoint, placement.xp)
        x, targets = load_rows(args, model, guard)
        if x.shape[1] != model.num_features:
            raise ValueError(f"the input has {x.shape[1]} features, the model {model.num_features}")
    except (ValueError, CheckpointError, FileNotFoundError) as exc:
        error = f"rank {info.rank}: {exc}"
    if inference.refused(guard, error, "every rank's input check", "hpcdist.predict"):
        return 2
    lo, hi = block(len(x), guard.rank, guard.size, args.chunk)
    probs, rate = offline(guard, model.net, x[lo:hi], args.repeat, args.chunk)
    parts = guard.gather(probs, what="every rank's block of probabilities")
    if info.is_root:
        full = np.concatenate(parts)
        if args.output:
            write_output(Path(args.output), full, targets)
        acc = f", accuracy {np.mean(full.argmax(1) == targets):.4f}" if targets is not None else ""
        print(
            f"hpcdist.predict: {len(full)} samples on {guard.size} rank(s){acc}; "
            f"Offline {rate:,.0f} samples/s" + (f"; wrote {args.output}" if args.output else "")
        )
    if args.server:
        stats = server(guard, model.net, x, args.qps, args.queries, args.seed)
        if info.is_root:
            print(server_line(stats, args.latency_bound_ms))
    return 0


def server_line(stats: dict, bound_ms: float | None) -> str:
    """The Server result; with a bound, VALID when p99 stays under it (MLPerf LoadGen's rule)."""
    text = (
        f"hpcdist.predict: Server at {stats['target_qps']:g} QPS ({stats['achieved_qps']:.1f} "
        "achieved): latency " + ", ".join(f"p{p} {stats[f'p{p}_ms']:.3f} ms" for p in PERCENTILES)
    )
    if bound_ms is None:
        return text
    ok = stats["p99_ms"] <= bound_ms
    return text + f"; {'VALID' if ok else 'INVALID'} for a p99 bound of {bound_ms:g} ms"


if __name__ == "__main__":
    raise SystemExit(main())
