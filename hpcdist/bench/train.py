"""`python -m hpcdist.bench train {step,scaling}`: a training step vs PyTorch, and scaling."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m hpcdist.bench train")
    sub = ap.add_subparsers(dest="mode", required=True)
    st = sub.add_parser("step", help="samples/s of one training step on one rank, vs PyTorch CPU")
    st.add_argument("--sizes", default="784,1024,1024,10", help="MLP layer sizes")
    st.add_argument("--batch", type=int, default=256)
    st.add_argument("--optimizer", choices=("momentum", "sgd"), default="momentum")
    st.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    st.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    st.add_argument("--repeats", type=int, default=5, help="alternating hpcdist/torch repeats")
    st.add_argument("--threads", type=int, default=None, help="BLAS/torch threads (default: cores)")
    st.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    sc = sub.add_parser("scaling", help="weak scaling of python -m hpcdist.train over ranks")
    sc.add_argument("--ranks", default="1,2,4,8", help="world sizes to run (default 1,2,4,8)")
    sc.add_argument("--records-per-rank", type=int, default=8192)
    sc.add_argument("--features", type=int, default=784)
    sc.add_argument("--hidden", default="1024,1024", help="hidden sizes (default 1024,1024)")
    sc.add_argument("--batch", type=int, default=256, help="per-rank batch (default 256)")
    sc.add_argument("--epochs", type=int, default=3)
    sc.add_argument("--timeout", type=float, default=1200, help="seconds per world size")
    sc.add_argument(
        "--keep-runs",
        metavar="DIR",
        default=None,
        help="keep each run's directory (DIR/np<k>: metrics.jsonl, summary.json; DIR/cache: "
        "the data) instead of deleting them (default: a temporary directory, removed at the end)",
    )
    return ap


def main(argv=None) -> int:
    """Entry point for the `train` benchmark; returns the exit status."""
    args = _parser().parse_args(argv)
    return run_step(args) if args.mode == "step" else run_scaling(args)


# ---- step: one rank, hpcdist.nn against torch ------------------------------------------


def _hpcdist_step_fn(sizes, x, y, optimizer: str):
    """A zero-argument function doing forward, loss, backward and the update in hpcdist.nn."""
    from hpcdist import nn

    model = nn.mlp(sizes, seed=0)
    params = model.parameters()
    opt = (
        nn.Momentum(params, lr=0.01, momentum=0.9)
        if optimizer == "momentum"
        else nn.SGD(params, lr=0.01)
    )

    def step():
        _, dlogits = nn.softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits, input_grad=False)
        opt.step()

    return step


def _torch_step_fn(sizes, x, y, optimizer: str, threads: int):
    """The same step in PyTorch on the CPU, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    momentum = 0.9 if optimizer == "momentum" else 0.0
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=momentum)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(tx), ty).backward()
        opt.step()

    return step


def _time_steps(step, n: int) -> float:
    """Seconds per step, averaged over n consecutive steps."""
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def _blas_report() -> str:
    """numpy's BLAS as threadpoolctl sees it now: library, version, kernels and threads."""
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
    blas = blas or [i for i in threadpool_info() if i["user_api"] == "blas"]
    desc = ", ".join(f"{i['internal_api']} {i['version']} ({i.get('architecture')})" for i in blas)
    threads = ",".join(str(i["num_threads"]) for i in blas)
    core = os.environ.get("OPENBLAS_CORETYPE")
    return (
        f"numpy {np.__version__} BLAS: {desc or 'unknown'}; threads {threads or 'unknown'}; "
        f"OPENBLAS_CORETYPE={core if core is not None else '(unset)'}"
    )


def run_step(args) -> int:
    """Time the hpcdist step and the PyTorch step alternately; print samples/s and the ratio."""
    from threadpoolctl import threadpool_limits

    sizes = [int(s) for s in args.sizes.split(",")]
    threads = args.threads or os.cpu_count() or 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], size=args.batch).astype(np.int32)
    print(
        f"train step: MLP {'-'.join(map(str, sizes))}, batch {args.batch}, float32, "
        f"{args.optimizer}; {platform.node()} ({os.cpu_count()} cpus, "
        f"load {os.getloadavg()[0]:.2f})"
    )
    ours = _hpcdist_step_fn(sizes, x, y, args.optimizer)
    peer = None if args.no_torch else _torch_step_fn(sizes, x, y, args.optimizer, threads)
    if peer is None:
        print(
            "torch peer: skipped ("
            + ("--no-torch" if args.no_torch else "torch is not installed")
            + ")"
        )
    with threadpool_limits(limits=threads, user_api="blas"):
        print(_blas_report())  # the threads the BLAS reports under the limit
        if peer is not None:
            import torch

            print(f"torch {torch.__version__}: {torch.get_num_threads()} threads")
        times = {"hpcdist": [], "torch": []}
        for fn in (ours, peer):
            if fn is not None:
                _time_steps(fn, args.warmup)
        for _ in range(args.repeats):
            times["hpcdist"].append(_time_steps(ours, args.steps))
            if peer is not None:
                times["torch"].append(_time_steps(peer, args.steps))
    return _report(times, args.batch)


def _report(times: dict, batch: int) -> int:
    rates = {}
    for name, ts in times.items():
        if ts:
            rates[name] = batch / statistics.median(ts)
            best = batch / min(ts)
            print(
                f"{name:8s} {rates[name]:9.0f} samples/s median ({best:.0f} best, "
                f"{1e3 * statistics.median(ts):.2f} ms/step, {len(ts)} repeats)"
            )
    if "torch" in rates:
        ratio = rates["hpcdist"] / rates["torch"]
        print(f"ratio hpcdist/torch: {ratio:.2f}x (target >= 0.80x)")
    return 0


# ---- scaling: weak scaling of the full training loop -----------------------------------


def _scaling_run(k: int, args, workdir: str) -> dict:
    """One `mpiexec -n k python -m hpcdist.train` at a fixed per-rank load; its figures."""
    import json

    from ..launcher import run_mpi

    run_dir = os.path.join(workdir, f"np{k}")
    flags = [
        "-m", "hpcdist.train", "--synthetic", str(k * args.records_per_rank),
        "--synthetic-features", str(args.features), "--hidden", args.hidden,
        "--batch-size", str(args.batch), "--epochs", str(args.epochs), "--run-dir", run_dir,
        "--checkpoint-every", "0", "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    env = {"HPCDIST_CACHE": os.path.join(workdir, "cache")}
    res = run_mpi(k, flags, timeout=args.timeout, env=env)
    if res.returncode != 0:
        raise RuntimeError(
            f"train at {k} ranks failed (exit {res.returncode}):\n{res.output[-3000:]}"
        )
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        epochs = [json.loads(line) for line in f]
    timed = epochs[1:] or epochs  # the first epoch pays for start-up
    return {
        "samples_per_s": statistics.median(e["samples_per_s"] for e in timed),
        "exchange_share": statistics.median(e["exchange_share"] for e in timed),
        "data_wait_share": statistics.median(e["data_wait_share"] for e in timed),
    }


def run_scaling(args) -> int:
    """Samples/s of hpcdist.train at 1, 2, 4, 8 ranks with the same work per rank."""
    import tempfile

    ranks = [int(r) for r in args.ranks.split(",")]
    print(
        f"weak scaling of python -m hpcdist.train: {args.records_per_rank} synthetic records "
        f"x {args.features} features per rank, MLP {args.features},{args.hidden},10, "
        f"batch {args.batch} per rank, {args.epochs} epochs (median of epochs 2..); "
        f"{os.cpu_count()} cores on {platform.node()}"
    )
    print(f"{'ranks':>5} {'samples/s':>12} {'per rank':>10} {'efficiency':>10} "
          f"{'exchange':>9} {'data wait':>9}")  # fmt: skip
    base = None
    with tempfile.TemporaryDirectory(prefix="hpcdist-scaling-") as tmp:
        workdir = args.keep_runs or tmp
        for k in ranks:
            r = _scaling_run(k, args, workdir)
            base = base or r["samples_per_s"] / k
            eff = r["samples_per_s"] / (k * base)
            print(
                f"{k:>5} {r['samples_per_s']:>12,.0f} {r['samples_per_s'] / k:>10,.0f} "
                f"{eff:>10.2f} {r['exchange_share']:>9.0%} {r['data_wait_share']:>9.0%}",
                flush=True,
            )
    print(f"efficiency = samples/s at k ranks / (k x samples/s per rank at {ranks[0]} rank(s))")
    return 0
