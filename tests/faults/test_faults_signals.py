"""SIGTERM to the job and SIGKILL of one rank, at 3 and 4 ranks: the job ends in seconds,
and the checkpoints it wrote resume."""

import os
import re
import signal

import pytest
from jobs import interrupt, wait_for
from launch import run_mpi

pytestmark = pytest.mark.launcher

TRAIN = ["-m", "hpcdist.train", "--hidden", "16", "--no-progress", "--timeout", "10"]


def rank_pids(run_dir) -> list[int]:
    """The pids of the training ranks writing to `run_dir` (not mpiexec, not its proxy)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if b"hpcdist.train" in cmd and str(run_dir).encode() in cmd and b"-n" not in cmd:
            pids.append(int(pid))
    return pids


def resumes(n: int, run, cache) -> str:
    """Resume at the same world size (a checkpoint is refused at another) for one more epoch."""
    args = [*TRAIN, "--run-dir", str(run), "--resume", "--epochs", "500", "--max-steps", "1"]
    res = run_mpi(n, args, timeout=120, env=cache)
    assert res.returncode == 0, res.output[-3000:]
    return res.stdout


@pytest.mark.parametrize("n", [3, 4])
def test_sigterm_checkpoints_and_ends_the_job(start, tmp_path, n):
    out, run = tmp_path / "out.txt", tmp_path / "run"
    cache = {"HPCDIST_CACHE": str(tmp_path / "cache")}
    proc = start(n, [*TRAIN, "--epochs", "500", "--run-dir", str(run)], out, cache)
    wait_for(lambda: "epoch   2 " in out.read_text(), 120, proc)
    seconds = interrupt(proc, signal.SIGTERM, limit=20)
    text = out.read_text()
    assert proc.returncode == 3 and seconds < 20, text[-3000:]
    step = int(re.search(r"pre-empted by SIGTERM at epoch \d+, step (\d+)", text).group(1))
    assert (run / "checkpoints" / f"ckpt-{step:010d}.h5").is_file()


@pytest.mark.parametrize("n", [3, 4])
def test_sigkill_of_one_rank_ends_the_job_and_its_checkpoints_resume(start, tmp_path, n):
    """Nothing can run on a rank killed with SIGKILL: mpiexec ends the job, and every
    checkpoint written before stays whole (the rename is atomic)."""
    out, run = tmp_path / "out.txt", tmp_path / "run"
    cache = {"HPCDIST_CACHE": str(tmp_path / "cache")}
    args = [*TRAIN, "--epochs", "500", "--checkpoint-every", "1", "--run-dir", str(run)]
    proc = start(n, args, out, cache)
    wait_for(lambda: "epoch   3 " in out.read_text(), 120, proc)
    pids = rank_pids(run)
    assert len(pids) == n, pids
    os.kill(pids[-1], signal.SIGKILL)
    seconds = interrupt(proc, signal.SIGCONT, limit=10 + 10)  # within the deadline + 10 s
    assert proc.returncode != 0, out.read_text()[-3000:]
    assert seconds < 20
    newest = max((run / "checkpoints").glob("ckpt-*.h5"))
    assert f"hpcdist: resumed from {newest}" in resumes(n, run, cache)
