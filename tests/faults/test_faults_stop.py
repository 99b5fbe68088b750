"""A rank stopped (SIGSTOP) anywhere in training ends the job within the deadline, named."""

import subprocess
import sys

import pytest
from launch import clean_env, run_mpi

pytestmark = pytest.mark.launcher

FLAGS = ["--epochs", "2", "--hidden", "16", "--no-progress", "--timeout", "5"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The digits shards, built beforehand: building them on a loaded machine can take
    longer than the 5 s deadline, which would end the job before any rank stops."""
    env = {"HPCDIST_CACHE": str(tmp_path_factory.mktemp("cache"))}
    build = "from mpi4py import MPI; import hpcdist.datasets as d; d.digits(comm=MPI.COMM_SELF)"
    subprocess.run([sys.executable, "-c", build], env=clean_env(env), check=True, timeout=300)
    return env


@pytest.mark.parametrize(
    "where, awaited",
    [
        ("validation", "waiting for the validation loss and accuracy sums"),
        ("preempt", "waiting for the pre-emption check"),
        ("checkpoint", "checkpoint"),
        ("pipeline", "exchange call"),
    ],
)
def test_stopped_rank_ends_the_job_named(where, awaited, tmp_path, cache):
    args = ["tests/scripts/stop_rank.py", where, "2", "--run-dir", str(tmp_path / "run"), *FLAGS]
    res = run_mpi(3, args, timeout=90, env=cache)
    assert f"rank 2: stopping itself ({where})" in res.stdout, res.output[-3000:]
    assert res.returncode != 0
    assert res.seconds < 40, f"took {res.seconds:.1f} s"
    assert "rank(s) [2] of 3 never arrived" in res.stderr, res.stderr[-3000:]
    assert awaited in res.stderr, res.stderr[-3000:]
