"""SIGTERM to the job and SIGKILL of one rank, at 3 and 4 ranks: the job ends in seconds,
and the checkpoints it wrote resume."""

import os
import re
import signal
import time

import pytest
from jobs import interrupt, wait_for
from launch import processes, run_mpi, watchers_of

pytestmark = pytest.mark.launcher

TRAIN = ["-m", "hpcdist.train", "--hidden", "16", "--no-progress", "--timeout", "10"]


def rank_pids(run_dir) -> list[int]:
    """The pids of the training ranks writing to `run_dir` (not mpiexec, not its proxy)."""
    run = str(run_dir).encode()
    return processes(lambda c: b"hpcdist.train" in c and run in c and b"-n" not in c)


def rank_of(pid: int) -> int:
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
    return int(env[b"PMI_RANK"])


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
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("n", [3, 4])
def test_sigkill_of_one_rank_ends_the_job_and_its_checkpoints_resume(start, tmp_path, n):
    """Nothing can run on a rank killed with SIGKILL: its watcher names it (MPICH's own
    report names local rank 0's pid, whichever rank died), mpiexec ends the job, every
    checkpoint written before stays whole (the rename is atomic), the watchers leave, and
    the resumed run removes any half-written copy.
    Planted bug it catches: a watcher that speaks whenever its rank's pipe closes (then
    the first to wake, often one the launcher killed, was named)."""
    out, run = tmp_path / "out.txt", tmp_path / "run"
    cache = {"HPCDIST_CACHE": str(tmp_path / "cache")}
    args = [*TRAIN, "--epochs", "500", "--checkpoint-every", "1", "--run-dir", str(run)]
    proc = start(n, args, out, cache)
    wait_for(lambda: "epoch   3 " in out.read_text(), 120, proc)
    pids = rank_pids(run)
    assert len(pids) == n, pids
    victim = pids[len(pids) // 2]
    rank = rank_of(victim)
    os.kill(victim, signal.SIGKILL)
    seconds = interrupt(proc, signal.SIGCONT, limit=10 + 10)  # within the deadline + 10 s
    text = out.read_text()
    assert proc.returncode != 0 and seconds < 20, text[-3000:]
    named = re.findall(r"hpcdist: rank (\d+) of (\d+) \(pid (\d+) on .*without a word", text)
    assert named == [(str(rank), str(n), str(victim))], text[-3000:]
    deadline = time.monotonic() + 10
    while watchers_of(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not watchers_of(pids)
    newest = max((run / "checkpoints").glob("ckpt-*.h5"))
    assert f"hpcdist: resumed from {newest}" in resumes(n, run, cache)
    # a rank killed while rank 0 wrote can leave its half-written copy: the next run removes it
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
