"""Trainers on disjoint groups of one job equal separate jobs; ranks that disagree fail fast."""

import json
import subprocess
import sys
import time

import pytest
from launch import ROOT, clean_env, mpiexec, run_mpi
from test_train import final_params

pytestmark = pytest.mark.launcher


def test_two_groups_equal_two_separate_jobs(tmp_path):
    env = {"HPCDIST_CACHE": str(tmp_path / "cache")}
    both = run_mpi(4, ["tests/scripts/two_groups.py", str(tmp_path / "both"), "3", "11"], 240, env)
    assert both.returncode == 0, both.output[-4000:]
    for group, seed in ((0, 3), (1, 11)):
        alone = tmp_path / f"alone{seed}"
        args = ["-m", "hpcdist.train", "--seed", str(seed), "--epochs", "2"]
        res = run_mpi(2, [*args, "--run-dir", str(alone), "--no-progress"], 240, env)
        assert res.returncode == 0, res.output[-4000:]
        run = tmp_path / "both" / f"group{group}"
        for name in ("metrics.jsonl", "summary.json", "curves.png", "checkpoints"):
            assert (run / name).exists(), name
        summary = json.loads((run / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["config"]["seed"] == seed
        a, b = final_params(run), final_params(alone)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].tobytes() == b[key].tobytes(), (seed, key)


def test_one_rank_with_another_setting_fails_every_rank_fast(tmp_path):
    env = {"HPCDIST_CACHE": str(tmp_path / "cache")}
    common = ["-m", "hpcdist.train", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    cmd = [mpiexec(), "-n", "1", sys.executable, *common, "--lr", "0.1"]
    cmd += [":", "-n", "2", sys.executable, *common, "--lr", "0.2"]
    start = time.monotonic()
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env=clean_env(env), cwd=ROOT
    )
    assert res.returncode != 0
    assert time.monotonic() - start < 10
    for r in range(3):
        assert f"rank {r} of 3" in res.stderr, res.stderr[-3000:]
    assert "ConfigMismatchError" in res.stderr
    assert "lr: rank(s) [0] have 0.1, rank(s) [1, 2] have 0.2" in res.stderr, res.stderr
