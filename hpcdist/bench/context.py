"""What a benchmark ran on, printed at its start and end: figures mean nothing without it.

    from .context import header, footer
    print(header("allreduce"))     # commit, CPU model, cores, load, MPI, Python, numpy
    ...
    print(footer())                # load at the end and the wall time

The load averages matter on shared machines: a ratio measured at load 9 on
two cores is a different experiment from one at load 1.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

_START = time.monotonic()


def commit() -> str:
    """The git commit of the hpcdist source (with '+changes' when the tree is dirty)."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return rev + ("+changes" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mpi_version() -> str:
    from mpi4py import MPI

    return MPI.Get_library_version().splitlines()[0].strip()


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def header(name: str) -> str:
    """Lines saying what `python -m hpcdist.bench NAME` runs on, to print first."""
    import numpy as np

    return "\n".join(
        [
            f"# hpcdist.bench {name}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
            f"# commit {commit()}, host {platform.node()}",
            f"# CPU {cpu_model()}, {os.cpu_count()} cores; load average {load()} at the start",
            f"# {mpi_version()}; Python {platform.python_version()}, numpy {np.__version__}",
        ]
    )


def footer() -> str:
    """The line to print last: load at the end and the wall time."""
    return f"# load average {load()} at the end, {time.monotonic() - _START:.0f} s in all"
