"""Failure behaviour: one rank's uncaught exception brings the whole job down fast."""

import os
import signal
import subprocess
import sys
import time

import pytest
from launch import ROOT, clean_env, mpiexec, run_mpi

pytestmark = pytest.mark.launcher


def test_exception_on_one_rank_aborts_job_quickly():
    res = run_mpi(4, ["tests/scripts/raise_on_rank.py", "1"], timeout=60)
    assert res.returncode != 0
    assert res.seconds < 10, f"took {res.seconds:.1f} s"
    assert "rank 1 of 4" in res.stderr
    assert "boom from the test script" in res.stderr
    assert "unreachable" not in res.stdout


def test_too_many_roles_fails_on_every_rank_quickly():
    res = run_mpi(4, ["-m", "hpcdist.placement", "--ps", "1", "--workers", "4"], timeout=60)
    assert res.returncode != 0
    assert res.seconds < 10, f"took {res.seconds:.1f} s"
    for r in range(4):
        assert f"rank {r} of 4" in res.stderr, res.stderr
    assert res.stderr.count("asks for 5 roles") == 4


def test_unknown_job_name_fails_cleanly():
    res = run_mpi(
        2, ["-m", "hpcdist.placement", "--cluster", '{"ps": 1, "trainer": 1}'], timeout=60
    )
    assert res.returncode != 0 and res.seconds < 10
    assert res.stderr.count("unknown job name(s) ['trainer']") == 2


def test_placement_report_one_line_per_rank():
    res = run_mpi(4, ["-m", "hpcdist.placement", "--ps", "1", "--log-device-placement"], timeout=60)
    assert res.returncode == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 4
    assert [ln.split()[1] for ln in lines] == ["0", "1", "2", "3"]
    assert "/job:ps/task:0" in lines[0] and "device cpu:0" in lines[0]
    assert all(f"/job:worker/task:{i}" in lines[i + 1] for i in range(3))


def test_sigterm_reaches_handler_on_every_rank(tmp_path):
    proc = subprocess.Popen(
        [mpiexec(), "-n", "2", sys.executable, "tests/scripts/sigterm_checkpoint.py", tmp_path],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(list(tmp_path.glob("ready.*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(tmp_path.glob("ready.*"))) == 2
        os.killpg(proc.pid, signal.SIGTERM)  # like scancel: every process of the job
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert sorted(p.name for p in tmp_path.glob("saved.*")) == ["saved.0", "saved.1"], err
    assert (tmp_path / "saved.0").read_text() == "SIGTERM"
