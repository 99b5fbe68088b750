"""Gradient exchange benchmark: hpcdist against raw mpi4py Allreduce and torch gloo.

    mpiexec -n 2 python -m hpcdist.bench allreduce          # one world size
    python -m hpcdist.bench allreduce --ranks-hint 2,4      # starts mpiexec per size
    python -m hpcdist.bench allreduce --hosts 2 --link 5gbit  # 2 hosts x 2 ranks (root)
    python -m hpcdist.bench allreduce --ranks-hint 2,4 --workloads resnet50 \
        --sweep-buckets 1e6,4e6,16e6 --repeat 7   # bucket sizes: median and spread

Variants are timed in alternation, round after round (5-40 rounds); a time
is the median over rounds of the slowest rank's time (a barrier before each).
algbw = payload bytes / time; busbw = algbw * 2(n-1)/n.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
from mpi4py import MPI

from .bucketsweep import crossover, sweep, sweep_table  # noqa: F401  (re-exported)
from .workloads import MB, WORKLOADS, interleaved, resnet50_like, timed  # noqa: F401

NONE = "hpcdist AllreduceExchange none"


def raw_variants(comm, sizes):
    tensors = [np.zeros(s, np.float32) for s in sizes]
    flat = np.zeros(sum(sizes), np.float32)

    def per_tensor():
        for t in tensors:
            comm.Allreduce(MPI.IN_PLACE, t, MPI.SUM)

    def one_buffer():
        comm.Allreduce(MPI.IN_PLACE, flat, MPI.SUM)

    return {
        "mpi4py Allreduce per tensor": per_tensor,
        "mpi4py Allreduce one flat buffer": one_buffer,
    }


def hpcdist_variants(comm, sizes, bucket_bytes, within_node: bool = False):
    """The exchange with each compression (16 bits within the node too with within_node: what
    the casts cost where no link is saved) and the flat API."""
    import hpcdist

    rng = np.random.default_rng(comm.rank)
    variants, closers = {}, []
    for comp in ("none", "bf16", "fp16"):
        forced = within_node and comp != "none"
        ex = hpcdist.AllreduceExchange(
            comm, compression=comp, bucket_bytes=bucket_bytes, compress_within_node=forced
        )
        grads = ex.attach([np.empty(s, np.float32) for s in sizes])
        for g in grads:
            g[...] = rng.standard_normal(g.size).reshape(g.shape)
        where = ", 16 bits within the node" if forced else ""
        variants[f"{NONE[:-4]}{comp} (grads in window{where})"] = (ex.synchronize, ex)
        closers.append(ex)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in sizes]
    variants["hpcdist grouped_allreduce none (copy in/out)"] = (
        lambda: hpcdist.grouped_allreduce(inputs, comm=comm),
        None,
    )
    return variants, closers


def gloo_variant(comm, sizes):
    """torch.distributed gloo, DDP-style: 25 MB buckets the gradients are views of."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        return None
    if not dist.is_initialized():
        port = comm.bcast(29500 + os.getpid() % 2000 if comm.rank == 0 else None)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=comm.rank, world_size=comm.size)
    limit = 25 * 1024 * 1024 // 4
    buckets, current = [], 0
    for s in reversed(sizes):
        if not buckets or current + s > limit:
            buckets.append(0)
            current = 0
        buckets[-1] += s
        current += s
    flats = [torch.zeros(n) for n in buckets]

    def run():
        works = [dist.all_reduce(f, async_op=True) for f in flats]
        for w, f in zip(works, flats, strict=True):
            w.wait()
            f.div_(comm.size)

    return run


def bench_size(
    comm, names, bucket_bytes, budget_s: float, gloo: bool = True, within_node: bool = False
) -> list[dict]:
    rows = []
    for wl in names:
        sizes = WORKLOADS[wl]()
        nbytes = 4 * sum(sizes)
        variants = {k: (v, None) for k, v in raw_variants(comm, sizes).items()}
        more, closers = hpcdist_variants(comm, sizes, bucket_bytes, within_node)
        variants.update(more)
        run_gloo = gloo_variant(comm, sizes) if gloo else None
        if run_gloo is not None:
            variants["torch gloo, DDP-style 25 MB buckets"] = (run_gloo, None)
        times = interleaved(comm, {k: v[0] for k, v in variants.items()}, budget_s)
        for name, (_, ex) in variants.items():
            wire = ex.stats.wire_bytes // max(ex.stats.calls, 1) if ex is not None else None
            rows.append(
                dict(workload=wl, variant=name, seconds=times[name], nbytes=nbytes, wire=wire)
            )
        for ex in closers:
            ex.close()
        from hpcdist.exchange.flat import clear_pools

        clear_pools()
    return rows


def report(comm, rows, label: str = "") -> None:
    n = comm.size
    where = f", {label}" if label and not label.isdigit() else ""
    print(f"\n## world size {n}{where} ({MPI.Get_library_version().splitlines()[0].strip()})")
    print(
        "| workload | variant | time ms | algbw GB/s | busbw GB/s | x best raw MPI "
        "| x MPI per tensor | x hpcdist none | wire MB/rank |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for wl in dict.fromkeys(r["workload"] for r in rows):
        mine = [r for r in rows if r["workload"] == wl]
        best = min(r["seconds"] for r in mine if r["variant"].startswith("mpi4py"))
        per = [r["seconds"] for r in mine if r["variant"] == "mpi4py Allreduce per tensor"][0]
        none = [r["seconds"] for r in mine if r["variant"].startswith(NONE)][0]
        for r in mine:
            alg = r["nbytes"] / r["seconds"] / 1e9
            wire = f"{r['wire'] / MB:.1f}" if r["wire"] is not None else ""
            x_none = f"{r['seconds'] / none:.2f}" if r["variant"].startswith("hpcdist") else ""
            print(
                f"| {wl} | {r['variant']} | {r['seconds'] * 1e3:.2f} | {alg:.2f} | "
                f"{alg * 2 * (n - 1) / n:.2f} | {r['seconds'] / best:.2f} | "
                f"{r['seconds'] / per:.2f} | {x_none} | {wire} |"
            )
    sys.stdout.flush()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hpcdist.bench allreduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--ranks-hint",
        default="",
        help="world sizes (e.g. 2,4): started with mpiexec from a 1-rank run; else a label",
    )
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--bucket-bytes", type=int, default=None)
    p.add_argument("--budget", type=float, default=1.5, help="seconds per variant (about)")
    p.add_argument("--crossover", action="store_true", help="one small tensor: window vs library")
    p.add_argument(
        "--hosts",
        type=int,
        default=0,
        help="run across this many namespace hosts (tests/hosts/bed.sh; root), "
        "--ranks-hint ranks on each (default 2)",
    )
    p.add_argument("--link", default="5gbit", help="the hosts' link rate (tc syntax)")
    p.add_argument("--no-gloo", action="store_true", help="leave out torch gloo")
    p.add_argument(
        "--compress-within-node",
        action="store_true",
        help="bf16/fp16 in 16 bits between the ranks of a node too (the casts' cost)",
    )
    p.add_argument(
        "--sweep-buckets",
        default="",
        help="bucket sizes (e.g. 1e6,4e6): time AllreduceExchange none on the first workload",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="with --sweep-buckets: time the sizes in alternation this many rounds and print "
        "each size's median and spread",
    )
    return p


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    unknown = sorted(set(args.workloads.split(",")) - set(WORKLOADS))
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; the workloads are {list(WORKLOADS)}")
    if args.repeat < 1:
        ap.error(f"--repeat must be at least 1, got {args.repeat}")
    comm = MPI.COMM_WORLD
    sizes = [int(s) for s in args.ranks_hint.split(",") if s.isdigit()]
    if args.hosts and comm.size == 1:
        return _across_hosts(args, sizes)
    if comm.size == 1 and sizes and sizes != [1]:
        rest = [f"--workloads={args.workloads}", f"--budget={args.budget}"]
        rest += [f"--sweep-buckets={args.sweep_buckets}"] if args.sweep_buckets else []
        rest += [f"--repeat={args.repeat}"] if args.repeat != 1 else []
        rest += ["--crossover"] if args.crossover else []
        rest += [f"--bucket-bytes={args.bucket_bytes}"] if args.bucket_bytes else []
        rest += ["--compress-within-node"] if args.compress_within_node else []
        return _spawn(sizes, rest)
    import hpcdist

    hpcdist.init()
    if args.crossover:
        return crossover(comm)
    if args.sweep_buckets:
        return sweep(
            comm, args.workloads.split(",")[0], args.sweep_buckets, args.budget, args.repeat
        )
    names = args.workloads.split(",")
    rows = bench_size(
        comm,
        names,
        args.bucket_bytes,
        args.budget,
        gloo=not args.no_gloo,
        within_node=args.compress_within_node,
    )
    if comm.rank == 0:
        report(comm, rows, args.ranks_hint)
    return 0


def _across_hosts(args, sizes: list[int]) -> int:
    """Run the table across `--hosts` namespace hosts joined by `--link` links."""
    from .hostbed import HostBed, check_rate

    if len(sizes) > 1:
        raise SystemExit("--hosts takes one --ranks-hint (ranks per host), e.g. --ranks-hint 2")
    per_host = sizes[0] if sizes else 2
    check_rate(args.link)
    rest = [f"--workloads={args.workloads}", f"--budget={args.budget}"]
    rest += [f"--bucket-bytes={args.bucket_bytes}"] if args.bucket_bytes else []
    rest += ["--compress-within-node"] if args.compress_within_node else []
    rest += [f"--ranks-hint={args.hosts}x{per_host} hosts, {args.link} links", "--no-gloo"]
    with HostBed(args.hosts, args.link) as bed:
        cmd = bed.command(per_host, ["-m", "hpcdist.bench", "allreduce", *rest])
        print(f"$ {' '.join(cmd)}", flush=True)
        from ..launcher import ROOT, clean_env

        return subprocess.call(cmd, env=clean_env(bed.env), cwd=ROOT)


def _spawn(sizes: list[int], rest: list[str]) -> int:
    """Run this benchmark under mpiexec once per world size."""
    from hpcdist.launcher import mpiexec

    rc = 0
    for n in sizes:
        args = ["allreduce", f"--ranks-hint={n}", *rest]
        print(f"$ mpiexec -n {n} python -m hpcdist.bench {' '.join(args)}", flush=True)
        rc |= subprocess.call(
            [mpiexec(), "-n", str(n), sys.executable, "-m", "hpcdist.bench", *args]
        )
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
