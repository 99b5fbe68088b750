"""Start a fresh mpiexec job from Python (tests, benchmarks) with a clean environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: The checkout (or install) root, put on the children's PYTHONPATH.
ROOT = Path(__file__).resolve().parents[1]

# Variables a launcher sets for its children; a nested mpiexec must not see them.
_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "HYDRA_", "MPIR_", "OMPI_", "MPICH_", "I_MPI_", "SLURM_")


def mpiexec() -> str:
    """The mpiexec next to this Python (the mpich wheel's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else (shutil.which("mpiexec") or "mpiexec")


def clean_env(extra: dict | None = None) -> dict:
    """os.environ without a launcher's variables, with hpcdist importable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCHER_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_mpi(
    n: int, args: list[str], timeout: float = 120, env: dict | None = None, cwd=None
) -> Result:
    """Run `mpiexec -n N python ARGS...`; TimeoutExpired if it outlives `timeout`."""
    cmd = [mpiexec(), "-n", str(n), sys.executable, *args]
    start = time.monotonic()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=clean_env(env), cwd=cwd or ROOT
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
