"""The suite's own set-up (tests/conftest.py): markers read as markers, other ranks' logs."""

import re
import subprocess
import sys

import pytest
from launch import ROOT, clean_env, run_mpi

pytestmark = pytest.mark.launcher

#: A test file for a 2-rank job: every rank says which it is, on stdout, under capture.
TALK = """
import pytest
from mpi4py import MPI

@pytest.mark.mpi
def test_talk():
    print(f"talk from rank {MPI.COMM_WORLD.rank}")
"""
#: The inner job's ranks print to its own output, not to the outer run_suite's rank logs.
NO_RANK_LOGS = {"HPCDIST_RANK_LOGS": ""}
SUMMARY = re.compile(r"^=* ?1 passed in [\d.]+s", re.M)


def test_a_parametrize_id_gpu_is_not_the_gpu_marker():
    """Planted bug it catches: conftest reading `"gpu" in item.keywords`, which skipped
    test_devices.py::test_parse_errors[gpu] (its id) as a GPU test on every machine."""
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_devices.py", "-k", "test_parse_errors",
         "-v", "-p", "no:cacheprovider"],
        capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:]
    assert re.search(r"test_parse_errors\[gpu\] PASSED", res.stdout), res.stdout[-3000:]


def test_other_ranks_write_their_output_and_summary_to_their_log(tmp_path):
    """Planted bugs it catches: the redirect of rank > 0's output to $HPCDIST_RANK_LOGS
    dropped (rank 1's summary lands on the terminal beside rank 0's), or done with a plain
    dup2 that pytest's capture undoes (rank1.log holds no summary; run_suite counts rank 0)."""
    (tmp_path / "test_talk.py").write_text(TALK)
    logs = tmp_path / "logs"
    env = {
        "HPCDIST_RANK_LOGS": str(logs),
        "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}",  # -p conftest: the suite's own conftest
    }
    args = ["-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "--with-mpi", "-rA"]
    res = run_mpi(2, [*args, str(tmp_path / "test_talk.py")], timeout=120, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.output[-3000:]
    assert len(SUMMARY.findall(res.stdout)) == 1, res.stdout[-3000:]  # rank 0's alone
    assert "talk from rank 0" in res.stdout and "talk from rank 1" not in res.output
    log = (logs / "rank1.log").read_text()
    assert len(SUMMARY.findall(log)) == 1, log[-3000:]
    assert "talk from rank 1" in log and "talk from rank 0" not in log
    assert sorted(p.name for p in logs.iterdir()) == ["rank1.log"]


#: A test whose parametrize id is spelled like the `hosts` marker.
HOSTS_ID = """
import pytest

@pytest.mark.mpi
@pytest.mark.parametrize("where", ["hosts", "files"])
def test_id(where):
    pass
"""


def test_a_parametrize_id_hosts_is_not_the_hosts_marker(tmp_path):
    """Planted bug it catches: tests/hosts/conftest.py reading `"hosts" in item.keywords`,
    which skips any multi-rank test with an id `hosts` as a host-bed job."""
    (tmp_path / "test_ids.py").write_text(HOSTS_ID)
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'hosts'}", **NO_RANK_LOGS}  # the bed's hook
    args = ["-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "--with-mpi", "-v"]
    res = run_mpi(2, [*args, str(tmp_path / "test_ids.py")], timeout=120, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.output[-3000:]
    assert re.search(r"test_id\[hosts\] PASSED", res.stdout), res.stdout[-3000:]
    assert "SKIPPED" not in res.stdout, res.stdout[-3000:]


#: A 2-rank test that ends the job from inside, as a deadline or a guard does.
ABORTS = """
import pytest
from mpi4py import MPI
from hpcdist import runtime

@pytest.mark.mpi
def test_ends_the_job():
    print(f"output before the abort from rank {MPI.COMM_WORLD.rank}")
    if MPI.COMM_WORLD.rank == 0:
        runtime.abort("the planted reason", grace_s=0.2)
    MPI.COMM_WORLD.Barrier()
"""


def test_an_abort_inside_a_test_names_the_test_and_shows_its_output(tmp_path):
    """Planted bug it catches: runtime.abort writing to a descriptor that pytest's capture
    holds (the job ended with no output at all: no test name, no reason)."""
    (tmp_path / "test_aborts.py").write_text(ABORTS)
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", **NO_RANK_LOGS}
    args = ["-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "--with-mpi", "-q"]
    res = run_mpi(2, [*args, str(tmp_path / "test_aborts.py")], timeout=120, env=env, cwd=tmp_path)
    assert res.returncode != 0, res.output[-3000:]
    assert "test_aborts.py::test_ends_the_job is ending the job on rank 0" in res.output
    assert "output before the abort from rank 0" in res.output, res.output[-3000:]
    assert "hpcdist: rank 0 of 2" in res.output and "the planted reason" in res.output


#: A 3-rank test that fails on rank 1 before a collective the other ranks then wait in.
ONE_FAILS = """
import pytest
from mpi4py import MPI

@pytest.mark.mpi
def test_one_rank_fails():
    print(f"output of rank {MPI.COMM_WORLD.rank}")
    assert MPI.COMM_WORLD.rank != 1, "the planted failure on rank 1"
    MPI.COMM_WORLD.allreduce(1)
"""


def test_a_rank_failing_a_test_ends_the_job_within_seconds(tmp_path):
    """Planted bugs it catches: the outcome agreement dropped (the other ranks wait in the
    test's allreduce until the 300 s timeout), or agreed through a Guard, whose diagnosis past
    the deadline added twice the wait (34 s in all). The failure and its rank are shown."""
    (tmp_path / "test_one.py").write_text(ONE_FAILS)
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", **NO_RANK_LOGS}
    args = ["-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "--with-mpi", "-q"]
    res = run_mpi(3, [*args, str(tmp_path / "test_one.py")], timeout=120, env=env, cwd=tmp_path)
    assert res.returncode != 0, res.output[-3000:]
    assert res.seconds < 25, (res.seconds, res.output[-3000:])  # the 10 s wait, then abort
    assert "test_one.py::test_one_rank_fails FAILED on this rank" in res.output
    assert "the planted failure on rank 1" in res.output, res.output[-3000:]
    assert "failed on rank 1, and the other ranks did not come" in res.output
