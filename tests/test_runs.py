"""Run directories: a new one per run without --run-dir; another run's checkpoints are kept."""

import os

import pytest
from launch import run_mpi
from mpi4py import MPI

from hpcdist import runs
from hpcdist.guard import Guard

TRAIN = ["-m", "hpcdist.train", "--epochs", "1", "--hidden", "8", "--no-progress"]


def test_resolve_makes_a_new_run_each_time_and_points_latest_at_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    guard = Guard(MPI.COMM_SELF)
    first = runs.resolve(None, False, guard)
    second = runs.resolve(None, False, guard)
    assert first != second and first.parent == second.parent == runs.RUNS
    assert first.is_dir() and second.is_dir()
    assert os.readlink(tmp_path / "runs" / "latest") == second.name
    assert runs.resolve(None, True, guard) == second  # --resume: the newest
    assert runs.resolve("mine", False, guard) == runs.Path("mine")


def test_claim_refuses_another_runs_checkpoints_unless_overwrite(tmp_path):
    guard = Guard(MPI.COMM_SELF)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "ckpt-0000000010.h5"
    ckpt.write_bytes(b"x")
    (run / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(runs.RunDirError, match=r"earlier run \(newest ckpt-0000000010.h5\)"):
        runs.claim(run, run / "checkpoints", overwrite=False, guard=guard)
    assert ckpt.exists() and (run / "metrics.jsonl").exists()
    assert runs.claim(run, run / "checkpoints", overwrite=True, guard=guard) == 2
    assert not ckpt.exists() and not (run / "metrics.jsonl").exists()


def test_a_fresh_run_removes_the_half_written_files_a_killed_run_left(tmp_path):
    """Planted bug it catches: clear_outputs removing the outputs but not the temp copies a
    run killed mid-write left beside them (they piled up run after run). Files of the user's
    own are kept."""
    guard = Guard(MPI.COMM_SELF)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    left = [".summary-k2j4.tmp", ".curves-x9.tmp", ".metrics-a1.tmp", ".timeline-rank2-q.tmp"]
    for name in left:
        (run / name).write_text("half")
    (run / "checkpoints" / ".tmp-ckpt-0000000004.h5").write_bytes(b"half")
    mine = [run / "notes.txt", run / ".summary.bak", run / "checkpoints" / "best.h5"]
    for path in mine:
        path.write_text("the user's")
    assert runs.claim(run, run / "checkpoints", overwrite=False, guard=guard) == 5
    remaining = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    assert remaining == [".summary.bak", "checkpoints/best.h5", "notes.txt"]


@pytest.mark.launcher
def test_the_default_command_twice_keeps_both_runs(tmp_path):
    env = {"HPCDIST_CACHE": str(tmp_path / "cache")}
    for _ in range(2):
        res = run_mpi(2, TRAIN, 240, env, cwd=tmp_path)
        assert res.returncode == 0, res.output[-3000:]
    made = sorted(p for p in (tmp_path / "runs").iterdir() if not p.is_symlink())
    assert len(made) == 2 and all((p / "summary.json").exists() for p in made)
    assert (tmp_path / "runs" / "latest").resolve() == made[-1].resolve()


@pytest.mark.launcher
def test_a_fresh_run_into_another_runs_dir_is_refused_with_exit_2(tmp_path):
    env = {"HPCDIST_CACHE": str(tmp_path / "cache")}
    run = ["--run-dir", str(tmp_path / "run")]
    assert run_mpi(2, [*TRAIN, *run], 240, env).returncode == 0
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("ckpt-*.h5"))
    before = [p.stat().st_mtime_ns for p in ckpts]
    res = run_mpi(2, [*TRAIN, *run], 240, env)
    assert res.returncode == 2, res.output[-3000:]
    assert "holds the checkpoints of an earlier run" in res.stderr
    assert "--resume" in res.stderr and "--overwrite" in res.stderr
    assert [p.stat().st_mtime_ns for p in ckpts] == before
    res = run_mpi(2, [*TRAIN, *run, "--overwrite"], 240, env)
    assert res.returncode == 0, res.output[-3000:]
    assert "--overwrite: removed" in res.stdout
