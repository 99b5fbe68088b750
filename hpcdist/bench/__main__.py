"""Dispatch `python -m hpcdist.bench NAME [args]` to hpcdist.bench.NAME.main(args).

The first rank prints what the run is on (commit, CPU, cores, load, MPI) before
the benchmark and the load after it (context.py).
"""

import os
import sys
from importlib import import_module

from .context import footer, header

#: Variables launchers set to a process's rank (MPICH/hydra, Open MPI, SLURM's srun).
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")

BENCHMARKS = {
    "allreduce": "gradient exchange against raw mpi4py (and torch gloo when installed)",
    "reader": "input pipeline samples/s against a raw h5py read of the same shards",
    "train": "one training step against PyTorch, and weak scaling of the full loop",
    "overlap": "how much of the gradient exchange backward hides (hpcdist.train --overlap or not)",
    "parallel": "the pipeline bubble measured over K stage ranks, beside (K-1)/(M+K-1)",
    "ps": "parameter servers: shard balance, push+pull against allreduce, a slowed worker",
    "torch": "a torch model's gradient exchange and backward: hpcdist.torch against gloo, DDP",
    "casts": "the 16-bit wire casts: hpcdist's C loops against numpy's casts",
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        lines = [f"  {name:<10} {what}" for name, what in BENCHMARKS.items()]
        print("usage: python -m hpcdist.bench NAME [options]\n\nbenchmarks:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    first = all(os.environ.get(v, "0") == "0" for v in _RANK_VARS)
    if first:
        print(header(" ".join(argv)), flush=True)
    rc = import_module(f"hpcdist.bench.{argv[0]}").main(argv[1:]) or 0
    if first:
        print(footer(), flush=True)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
