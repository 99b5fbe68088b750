"""The main job: `mpirun -n 8 python -m hpcdist.train [--config run.toml] [flags]`."""

from __future__ import annotations

import argparse
import sys

from . import config, runtime
from .datasets import DataSetError
from .runs import RunDirError
from .trainer import PREEMPTED_EXIT_CODE, Trainer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hpcdist.train",
        description="Data-parallel training of an MLP over MPI ranks. With no --data it trains "
        "on the handwritten digits scikit-learn ships (8x8, 10 classes). Writes metrics.jsonl, "
        "summary.json, curves.png and checkpoints into --run-dir. SIGTERM, SIGUSR1 or Ctrl-C "
        f"checkpoints and exits with status {PREEMPTED_EXIT_CODE}; --resume continues exactly.",
    )
    config.add_arguments(p)
    return p


def exit_status(summary: dict) -> int:
    """0 for a finished run (or one stopped at --max-steps), 3 for a pre-empted one."""
    return PREEMPTED_EXIT_CODE if summary["status"] == "preempted" else 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    info = runtime.init()
    try:
        cfg = config.from_args(args)
    except ValueError as e:  # same on every rank: rank 0 says it, every rank exits 2
        if info.is_root:
            print(f"hpcdist.train: error: {e}", file=sys.stderr)
        return 2
    try:
        trainer = Trainer(cfg)
    except (RunDirError, DataSetError) as e:  # the same on every rank: every rank exits 2
        return refuse(info, e)
    try:
        with trainer:
            return exit_status(trainer.fit())
    except RunDirError as e:  # decided by rank 0 and shared: every rank exits 2
        return refuse(info, e)


def refuse(info, error: Exception) -> int:
    """Say `error` in one line tagged with the rank; 2, the exit status of a refused run."""
    # One write per line: the ranks' lines must not interleave in the launcher's output.
    sys.stderr.write(f"hpcdist.train: error (rank {info.rank} of {info.size}): {error}\n")
    sys.stderr.flush()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
