"""`mpirun -n N python -m hpcdist.search [--space FILE.toml] --run-dir D [options]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import runtime
from . import prune, space
from .run import SearchError, run
from .scheduler import Search


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hpcdist.search",
        description="Hyperparameter search: the ranks split into groups of --ranks-per-trial, "
        "each group trains one trial at a time (handed out dynamically through the journal in "
        "--run-dir) and the best --top-k are kept. Writes results.csv, top.json, search.png and "
        "trials/<trial>/. Run the same command again to continue a killed search.",
    )
    p.add_argument(
        "--space",
        metavar="TOML",
        help="the space file (default: a built-in space of 8 configurations on the digits)",
    )
    p.add_argument("--run-dir", default="runs/search", help="the search directory")
    p.add_argument(
        "--ranks-per-trial",
        type=int,
        default=1,
        metavar="K",
        help="ranks per trial (a data-parallel group when K > 1)",
    )
    p.add_argument("--top-k", type=int, default=3, help="trials kept in top.json")
    p.add_argument("--seed", type=int, default=0, help="random draws and every trial's seed")
    p.add_argument("--prune", default="none", choices=prune.names(), help="early stopping")
    p.add_argument("--max-retries", type=int, default=0, help="reruns of a failed trial")
    p.add_argument(
        "--poll",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="how often an idle group asks again while others still run",
    )
    return p


def make_search(args) -> Search:
    """The Search the flags describe (the same on every rank); ValueError names a bad one."""
    for name in ("top_k", "ranks_per_trial"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_retries < 0 or args.seed < 0 or args.poll <= 0:
        raise ValueError("--max-retries and --seed must be >= 0 and --poll > 0")
    sp = space.load(args.space)
    plan = sp.trials(args.seed)
    return Search(
        sp,
        Path(args.run_dir),
        plan,
        ranks_per_trial=args.ranks_per_trial,
        prune=args.prune,
        max_retries=args.max_retries,
        top_k=args.top_k,
        seed=args.seed,
        poll_s=args.poll,
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    info = runtime.init()
    try:
        search = make_search(args)  # the same on every rank: each raises the same error
        run(search)
    except (SearchError, ValueError) as exc:
        if info.is_root:
            print(f"hpcdist.search: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
