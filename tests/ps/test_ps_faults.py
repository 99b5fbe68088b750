"""A stopped worker and a stopped ps task each end the job within the deadline, named."""

import pytest
from launch import run_mpi

pytestmark = pytest.mark.launcher

JOB = "tests/ps/ps_job.py"
TIMEOUT_S = 3


@pytest.mark.parametrize(
    "mode, index, named",
    [
        ("stop-worker", 1, "no gradient from /job:worker/task:1 (world rank 2)"),
        ("stop-ps", 0, "waiting for ps task(s) /job:ps/task:0 (world rank 0)"),
    ],
)
def test_a_stopped_task_ends_the_job_naming_it(mode, index, named):
    res = run_mpi(3, [JOB, mode, str(index)], timeout=90, env={"HPCDIST_TIMEOUT": str(TIMEOUT_S)})
    assert res.returncode != 0, res.output[-3000:]
    assert "stopping itself" in res.output, res.output[-3000:]
    assert named in res.output, res.output[-3000:]
    assert "finished" not in res.output
    # the deadline (a worker waits 1.25x + 1 s), start-up and the abort's grace, not more
    assert res.seconds < 40, res.seconds
