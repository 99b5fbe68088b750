"""Which run directory a run writes, and what a fresh run may replace there.

    run_dir = runs.resolve(cfg.run_dir, cfg.resume, guard)   # collective
    runs.claim(run_dir, ckpt_dir, resume=..., overwrite=..., guard=guard)

With no --run-dir every run gets a new directory, runs/<UTC date>-<time>[-k],
and runs/latest is pointed at it (so the README's command can be run twice
and both results stay); --resume without --run-dir continues the run
runs/latest points at. A fresh run into a directory that holds another run's
checkpoints is refused unless --overwrite is given: a run never destroys
another's results by accident. Rank 0 decides and the others follow, so
every rank gets the same directory or the same error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import metrics, rundir
from .errors import HpcdistError

#: Where runs without --run-dir go, and the link to the newest of them.
RUNS, LATEST = Path("runs"), "latest"


class RunDirError(HpcdistError, ValueError):
    """The run directory cannot be used as asked (names it and says what to do)."""


def resolve(run_dir: str | None, resume: bool, guard) -> Path:
    """The run directory: `run_dir`; else, resuming, the run runs/latest points at; else a new
    runs/<time> with runs/latest pointed at it. Collective over `guard`."""
    if run_dir is not None:
        return Path(run_dir)
    chosen, error = None, None
    if guard.rank == 0:
        try:
            chosen = str(_latest() if resume else _new_run())
        except OSError as e:
            error = f"cannot make a run directory under {RUNS.resolve()}: {e}"
    chosen, error = guard.bcast((chosen, error), root=0, what="rank 0 to name the run directory")
    if error:
        raise RunDirError(error)
    return Path(chosen)


def _latest() -> Path:
    link = RUNS / LATEST
    return RUNS / os.readlink(link) if link.is_symlink() else link


def _new_run() -> Path:
    RUNS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for k in range(1000):
        name = stamp if k == 0 else f"{stamp}-{k}"
        try:
            (RUNS / name).mkdir()
        except FileExistsError:
            continue
        _point_latest(name)
        return RUNS / name
    raise OSError(f"1000 runs started in the second {stamp}")


def _point_latest(name: str) -> None:
    """runs/latest -> name, replaced atomically (a new link renamed over the old one)."""
    link, tmp = RUNS / LATEST, RUNS / f".{LATEST}-{os.getpid()}"
    if link.exists() and not link.is_symlink():
        return  # a real directory called latest (an older hpcdist's default): leave it be
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(name)
    os.replace(tmp, link)


def claim(run_dir: Path, checkpoints: Path, *, overwrite: bool, guard) -> int:
    """A fresh run's hold on `run_dir`: refuse another run's checkpoints there unless
    `overwrite`; else remove the earlier run's outputs. Returns how many files went."""
    removed, error = 0, None
    if guard.rank == 0 and run_dir.is_dir():
        found = sorted(Path(checkpoints).glob("ckpt-*.h5"))
        error = rundir.refusal(run_dir)  # before anything in it is removed
        if error is None and found and not overwrite:
            error = (
                f"{run_dir} holds the checkpoints of an earlier run (newest {found[-1].name}): "
                "add --resume to continue it, --overwrite to replace it, or pick another "
                "--run-dir (with none, each run gets a new runs/<time>)"
            )
        elif error is None:
            removed = metrics.clear_outputs(run_dir, checkpoints)
    removed, error = guard.bcast((removed, error), root=0, what="rank 0 to prepare the run dir")
    if error:
        raise RunDirError(error)
    if removed and guard.rank == 0:
        why = "--overwrite: " if overwrite else ""
        print(f"hpcdist: {why}removed {removed} file(s) of the earlier run in {run_dir}")
    return removed
