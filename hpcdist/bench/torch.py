"""`python -m hpcdist.bench torch`: a torch model's gradient exchange, hpcdist against gloo.

    mpiexec -n 2 python -m hpcdist.bench torch                 # both models
    mpiexec -n 4 python -m hpcdist.bench torch --models cnn --budget 3

In one run, on the same ranks and the same gradients of a torch model:

- exchange alone (the gradients are final):
  hpcdist.torch's exchange (the gradients live in its buffers: start + synchronize);
  torch.distributed gloo per tensor (all_reduce each .grad, then divide);
  gloo DDP-style (copy into 25 MB buckets, all_reduce each, copy back).
- a whole backward with the exchange in it:
  hpcdist.torch (buckets start from the gradient hooks) against DistributedDataParallel
  with gloo (its own buckets and hooks), and backward alone.

Variants alternate round after round (hpcdist.bench.allreduce.interleaved); a time is
the median over rounds of the slowest rank's. gloo is initialised over TCP at rank 0's
host, on a port rank 0 picked.

Before timing, hpcdist.torch's averaged gradients (from the exchange and from the hooks)
are checked against the float64 numpy average of every rank's own gradients; a relative
error over CHECK_BOUND prints MISMATCH and the benchmark exits 1.
"""

from __future__ import annotations

import argparse
import socket

import numpy as np
from mpi4py import MPI

try:
    import torch
    import torch.distributed as dist
except ImportError as exc:  # torch is optional
    raise SystemExit("python -m hpcdist.bench torch needs PyTorch (pip install torch)") from exc

from .allreduce import interleaved

DDP_BUCKET_BYTES = 25 * 1024 * 1024

#: Largest relative error (2-norm over all gradients) of hpcdist.torch's average (float32).
CHECK_BOUND = 1e-5


def digits_cnn() -> torch.nn.Module:
    """The CNN of examples/torch_digits.py (about 6k parameters) on 1x8x8 images."""
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8, 8)),
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(128, 10),
    )  # fmt: skip


def wide_mlp() -> torch.nn.Module:
    """1024 -> 6 x 2048 -> 1000: 25.1M parameters (100 MB of float32 gradients)."""
    sizes = [1024] + [2048] * 6 + [1000]
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


MODELS = {"cnn": (digits_cnn, 64, 10), "mlp": (wide_mlp, 1024, 1000)}


def init_gloo(comm) -> None:
    """torch.distributed with gloo over the MPI ranks (rank 0's host, a free port)."""
    if dist.is_initialized():
        return
    hosts = comm.allgather(socket.gethostname())
    addr = "127.0.0.1" if len(set(hosts)) == 1 else hosts[0]
    port = None
    if comm.rank == 0:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
    port = comm.bcast(port)
    dist.init_process_group(
        "gloo", init_method=f"tcp://{addr}:{port}", rank=comm.rank, world_size=comm.size
    )


def _batch(comm, features: int, classes: int, n: int):
    g = torch.Generator().manual_seed(comm.rank)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def _backward(model, x, y) -> None:
    torch.nn.functional.cross_entropy(model(x), y).backward()


def average_error(comm, averaged: list, local: list) -> float:
    """Relative error of this rank's `averaged` gradients against the float64 numpy mean of
    every rank's `local` ones (allgathered tensor by tensor); the largest over the ranks."""
    num = den = 0.0
    for avg, mine in zip(averaged, local, strict=True):
        mine = np.ascontiguousarray(mine.detach().numpy(), dtype=np.float32).ravel()
        every = np.empty((comm.size, mine.size), np.float32)
        comm.Allgather(mine, every)
        ref = every.astype(np.float64).mean(axis=0)
        num += float(np.sum((avg.detach().numpy().astype(np.float64).ravel() - ref) ** 2))
        den += float(np.sum(ref**2))
    return max(comm.allgather((num / max(den, 1e-300)) ** 0.5))


def exchange_variants(comm, make, x, y) -> tuple[dict, list, float]:
    """The three exchange-only variants over one model's final gradients, and the error of
    hpcdist.torch's first average (average_error)."""
    import hpcdist.torch as hdt

    torch.manual_seed(0)
    ours = make()
    opt = hdt.DistributedOptimizer(torch.optim.SGD(ours.parameters(), 0.01), comm=comm)
    _backward(ours, x, y)
    opt.synchronize()

    def hpcdist_exchange():
        opt.exchange.start()
        opt.synchronize()

    torch.manual_seed(0)
    theirs = make()
    _backward(theirs, x, y)
    grads = [p.grad for p in theirs.parameters()]
    error = average_error(comm, [p.grad for p in ours.parameters()], grads)  # before gloo

    def gloo_per_tensor():
        for g in grads:
            dist.all_reduce(g)
            g.div_(comm.size)

    buckets = _buckets(grads)
    flats = [torch.empty(sum(g.numel() for g in b)) for b in buckets]

    def gloo_buckets():
        works = []
        for b, flat in zip(buckets, flats, strict=True):
            torch.cat([g.reshape(-1) for g in b], out=flat)
            works.append(dist.all_reduce(flat, async_op=True))
        for b, flat, w in zip(buckets, flats, works, strict=True):
            w.wait()
            flat.div_(comm.size)
            pos = 0
            for g in b:
                g.copy_(flat[pos : pos + g.numel()].view_as(g))
                pos += g.numel()

    variants = {
        "exchange: hpcdist.torch (gradients in its buffers)": hpcdist_exchange,
        "exchange: gloo all_reduce per tensor": gloo_per_tensor,
        "exchange: gloo 25 MB buckets (copy in/out)": gloo_buckets,
    }
    return variants, [opt], error


def _buckets(grads: list) -> list[list]:
    """Gradients in reverse order, cut into DDP-sized buckets."""
    out, size = [], 0
    for g in reversed(grads):
        if not out or size + g.numel() * 4 > DDP_BUCKET_BYTES:
            out.append([])
            size = 0
        out[-1].append(g)
        size += g.numel() * 4
    return out


def step_variants(comm, make, x, y) -> tuple[dict, list, float]:
    """Backward with the exchange in it: hpcdist.torch hooks, DDP gloo, neither; and the
    error of hpcdist.torch's average from the hooks against backward alone's gradients."""
    import hpcdist.torch as hdt

    torch.manual_seed(0)
    ours = make()
    opt = hdt.DistributedOptimizer(torch.optim.SGD(ours.parameters(), 0.01), comm=comm)

    def hpcdist_step():
        opt.zero_grad()
        _backward(ours, x, y)
        opt.synchronize()

    torch.manual_seed(0)
    ddp = torch.nn.parallel.DistributedDataParallel(make())

    def ddp_step():
        ddp.zero_grad(set_to_none=False)
        _backward(ddp, x, y)

    torch.manual_seed(0)
    alone = make()

    def backward_alone():
        alone.zero_grad(set_to_none=False)
        _backward(alone, x, y)

    hpcdist_step()
    backward_alone()
    error = average_error(
        comm, [p.grad for p in ours.parameters()], [p.grad for p in alone.parameters()]
    )
    variants = {
        "forward+backward: hpcdist.torch, buckets from the hooks": hpcdist_step,
        "forward+backward: DDP gloo": ddp_step,
        "forward+backward alone (no exchange)": backward_alone,
    }
    return variants, [opt], error


def bench_model(comm, name: str, batch: int, budget: float) -> tuple[list[tuple], list[tuple]]:
    """The timed rows of one model, and (model, part, error) of each check of the average."""
    make, features, classes = MODELS[name]
    x, y = _batch(comm, features, classes, batch)
    nparams = sum(p.numel() for p in make().parameters())
    rows, checks = [], []
    for part, build in (("exchange", exchange_variants), ("hooks", step_variants)):
        variants, closers, error = build(comm, make, x, y)
        checks.append((name, part, error))
        times = interleaved(comm, variants, budget)
        for c in closers:
            c.close()
        rows += [(name, nparams, k, v) for k, v in times.items()]
    return rows, checks


def report(comm, rows, batch: int) -> None:
    print(
        f"\n## torch models at {comm.size} ranks, batch {batch} per rank, torch {torch.__version__}"
    )
    print("| model | parameters | variant | time ms | x hpcdist |")
    print("|---|---|---|---|---|")
    for model in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == model]
        for group in ("exchange:", "forward+backward"):
            part = [r for r in mine if r[2].startswith(group)]
            base = part[0][3]  # hpcdist's row comes first in each group
            for _, n, variant, t in part:
                print(f"| {model} | {n:,} | {variant} | {t * 1e3:.2f} | {t / base:.2f} |")


def report_checks(comm, checks) -> None:
    print()
    for model, part, err in checks:
        verdict = (
            f"<= {CHECK_BOUND:.0e}: ok" if err <= CHECK_BOUND else f"> {CHECK_BOUND:.0e}: MISMATCH"
        )
        print(
            f"check {model} {part}: hpcdist.torch's averaged gradients vs the float64 numpy "
            f"average of {comm.size} ranks' gradients, relative error {err:.1e} {verdict}"
        )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hpcdist.bench torch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", default=",".join(MODELS), help=f"of {', '.join(MODELS)}")
    p.add_argument("--batch", type=int, default=32, help="per rank (default 32)")
    p.add_argument("--budget", type=float, default=2.0, help="seconds per variant (about)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (default 1)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; the models are {list(MODELS)}")
    import hpcdist

    hpcdist.init()
    torch.set_num_threads(args.threads)
    comm = MPI.COMM_WORLD
    init_gloo(comm)
    rows, checks = [], []
    for name in names:
        more, checked = bench_model(comm, name, args.batch, args.budget)
        rows, checks = rows + more, checks + checked
    if comm.rank == 0:
        report(comm, rows, args.batch)
        report_checks(comm, checks)
    dist.destroy_process_group()
    return 0 if all(err <= CHECK_BOUND for *_, err in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
