"""Fixtures of the fault tests: jobs started like a terminal's foreground process group."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from launch import ROOT, clean_env, mpiexec


@pytest.fixture
def start():
    """start(n, args, out): mpiexec in a session of its own (like a terminal's foreground
    process group); whatever is still running when the test ends is killed."""
    procs = []

    def _start(n: int, args: list, out: Path, env=None) -> subprocess.Popen:
        with open(out, "w") as log:
            procs.append(
                subprocess.Popen(
                    [mpiexec(), "-n", str(n), sys.executable, *args],
                    cwd=ROOT,
                    env=clean_env(env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        return procs[-1]

    yield _start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
