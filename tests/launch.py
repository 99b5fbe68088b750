"""Start a separate mpiexec job from a test and return what it did (see hpcdist.launcher),
and find the processes a job started."""

import os

from hpcdist.launcher import ROOT, Result, clean_env, mpiexec, run_mpi

__all__ = ["ROOT", "Result", "clean_env", "mpiexec", "run_mpi", "processes", "watchers_of"]


def processes(match) -> list[int]:
    """The pids of the processes whose command line (a list of bytes) `match` accepts."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if match(cmd):
            pids.append(int(pid))
    return pids


def watchers_of(rank_pids) -> list[int]:
    """hpcdist.watcher processes still watching any of `rank_pids` (their command line:
    python -I watcher.py RANK SIZE PID ...)."""
    wanted = {str(p).encode() for p in rank_pids}
    return processes(lambda c: len(c) > 5 and c[2].endswith(b"watcher.py") and c[5] in wanted)
