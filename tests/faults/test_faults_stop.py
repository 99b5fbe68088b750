"""A rank stopped (SIGSTOP) anywhere in training ends the job within twice the deadline plus
10 s (the deadline, then rank 0 waits up to one more for the others' arrival reports),
named, at 3 and 4 ranks; no checkpoint is lost and nothing hpcdist made is left behind."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from launch import clean_env, run_mpi

from hpcdist.ckptfile import load_checkpoint

pytestmark = pytest.mark.launcher

DEADLINE = 5
FLAGS = ["--epochs", "2", "--hidden", "16", "--no-progress", "--timeout", str(DEADLINE)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The digits shards, built beforehand: building them on a loaded machine can take
    longer than the 5 s deadline, which would end the job before any rank stops."""
    env = {"HPCDIST_CACHE": str(tmp_path_factory.mktemp("cache"))}
    build = "from mpi4py import MPI; import hpcdist.datasets as d; d.digits(comm=MPI.COMM_SELF)"
    subprocess.run([sys.executable, "-c", build], env=clean_env(env), check=True, timeout=300)
    return env


def reader_segments() -> set[str]:
    """The shared memory of hpcdist's reader processes (Python's psm_ names)."""
    return {p.name for p in Path("/dev/shm").glob("psm_*")}


@pytest.mark.parametrize(
    "where, n, awaited",
    [
        ("validation", 3, "waiting for the validation loss and accuracy sums"),
        ("preempt", 4, "waiting for the pre-emption check"),
        ("checkpoint:2", 3, "checkpoint"),
        ("exchange", 3, "exchange call"),
        ("exchange", 4, "exchange call"),
        ("pipeline", 4, "exchange call"),
    ],
)
def test_stopped_rank_ends_the_job_named(where, n, awaited, tmp_path, cache):
    """Planted bugs it catches: a guarded call or exchange without its deadline (the job
    runs to the test's limit), a deadline message without the missing rank, old checkpoints
    pruned before the next one is whole (the stop at the second checkpoint's gather then
    leaves none)."""
    run, stamp, victim = tmp_path / "run", tmp_path / "stopped", n - 1
    args = ["tests/scripts/stop_rank.py", where, str(victim), "--run-dir", str(run), *FLAGS]
    before = reader_segments()
    res = run_mpi(n, args, timeout=90, env={**cache, "STOP_STAMP": str(stamp)})
    ended = time.time()
    assert f"rank {victim}: stopping itself ({where.split(':')[0]}" in res.stdout, res.output
    assert res.returncode != 0
    # The deadline, the diagnosis (rank 0 waits up to one more deadline for the reports of
    # ranks that time out later than it), then the abort's teardown: 11 s here, 16 s seen in CI.
    assert ended - float(stamp.read_text()) < 2 * DEADLINE + 10, res.output[-3000:]
    assert f"rank(s) [{victim}] of {n} never arrived" in res.stderr, res.stderr[-3000:]
    assert awaited in res.stderr, res.stderr[-3000:]
    assert "without a word" not in res.stderr  # the abort explained itself: no watcher spoke
    if where.startswith("checkpoint"):  # the first checkpoint stays whole, on every rank
        (first,) = (run / "checkpoints").glob("ckpt-*.h5")
        for r in range(n):
            assert load_checkpoint(first, rank=r, world_size=n).epoch == 1
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    assert reader_segments() <= before
